"""`--keep` and `--teardown`: leave the demo's topology up, and remove it later.

--keep writes DIR/state.json (the run's tag, namespaces, links, the daemon's
pid and socket) and prints how to explore and how to tear down; --teardown DIR
reads it back, stops that ovslited (only if its command line still names the
run's socket, so a recycled pid is left alone) and removes the rest with the
bench's Resources.close(), which also sweeps every name with the run's prefix.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys

from integration.demo_bench import PREFIX, DemoResources, cmdline, demo_names_left, stop_pid

STATE = "state.json"


def keep(demo, demo_py: str, ctl_path: str) -> str:
    """Leave it all up: write DIR/state.json, print how to explore and how to tear down."""
    pid = demo.daemon.proc.pid
    nm, h1, h2 = demo.names, demo.h1, demo.h2
    state = {"kind": "ovslite-demo", "tag": demo.tag, "dir": demo.dir, "socket": demo.socket,
             "daemon_pid": pid, "namespaces": list(demo.res.namespaces),
             "links": sorted(set(demo.res.links))}
    with open(os.path.join(demo.dir, STATE), "w") as f:
        json.dump(state, f, indent=2)
    teardown = shlex.join([sys.executable, demo_py, "--teardown", demo.dir])
    ctl = shlex.join([ctl_path, "--socket", demo.socket])
    demo.say("\n== Kept: the topology and ovslited are still up (the veth link is in place) ==")
    demo.say("  Explore:")
    for c in (f"ip netns exec {h1.ns} ping -c 3 {h2.ip}",
              f"{ctl} show",
              f"{ctl} fdb-show {nm['br_a']}",
              f"{ctl} dump-ports {nm['br_a']}",
              f"{ctl} capture {nm['veth_a']} -c 10        # while pinging",
              f"tcpdump -n -i {nm['veth_a']} icmp",
              f"ip netns exec {h2.ns} iperf3 -s -1 & ip netns exec {h1.ns} iperf3 -c {h2.ip} -t 5"):
        demo.say(f"    {c}")
    demo.say("  Back to the patch link (remove the veth ports first: both links at once would be a")
    demo.say("  loop, and ovslite has no spanning tree):")
    for c in (f"{ctl} del-port {nm['br_a']} {nm['veth_a']}", f"{ctl} del-port {nm['br_b']} {nm['veth_b']}",
              f"{ctl} add-port {nm['br_a']} {nm['patch_a']} --type patch --peer {nm['patch_b']}",
              f"{ctl} add-port {nm['br_b']} {nm['patch_b']} --type patch --peer {nm['patch_a']}",
              f"{ctl} capture {nm['patch_a']} -c 10"):
        demo.say(f"    {c}")
    demo.say("  Tear everything down:")
    demo.say(f"    {teardown}")
    demo.say("  or by hand:")
    for c in manual_teardown(state):
        demo.say(f"    {c}")
    return teardown


def manual_teardown(state: dict) -> list[str]:
    links = [x for x in state["links"] if not x.endswith(("-br-a", "-br-b", "-veth-b"))]
    return ([f"kill {state['daemon_pid']}      # ovslited: it removes its bridges' internal ports itself"]
            + [f"ip link del {x}" for x in links if x.endswith(("-port", "-veth-a"))]
            + [f"ip netns del {ns}" for ns in state["namespaces"]]
            + [f"rm -r {state['dir']}"])


def leftovers(tag: str, workdir: str) -> list[str]:
    """Namespaces, links, processes and the directory of demo run `tag` that still exist."""
    found = demo_names_left(tag)
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            cmd = cmdline(pid)
            if workdir in cmd and "--teardown" not in cmd:
                found.append(f"process {pid}: {cmd.strip()[:120]}")
    if os.path.exists(workdir):
        found.append(workdir)
    return found


def teardown(workdir: str) -> int:
    """Remove what `--keep` left: stop the daemon, delete links, namespaces and the directory."""
    path = os.path.join(workdir, STATE)
    try:
        with open(path) as f:
            state = json.load(f)
        assert state.get("kind") == "ovslite-demo"
    except (OSError, ValueError, AssertionError):
        print(f"demo: {path} is not a kept ovslite demo's state file", file=sys.stderr)
        return 2
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)  # half a teardown helps nobody
    problems = []
    msg = stop_pid(int(state["daemon_pid"]), state["socket"])
    if msg:
        problems.append(msg)
    res = DemoResources(state["tag"])
    res.namespaces, res.links, res.dirs = list(state["namespaces"]), list(state["links"]), [state["dir"]]
    problems += res.close()
    problems += leftovers(state["tag"], state["dir"])
    for p in problems:
        print(f"demo teardown: {p}", file=sys.stderr)
    if not problems:
        print(f"demo {state['tag']}: stopped ovslited, removed {PREFIX}{state['tag']}-* and {state['dir']}")
    return 1 if problems else 0
