"""`make install` installs every Debian tool the tests, demo and bench use.

A tool missing from the Makefile's DEB_TOOLS is installed by nobody on a fresh
machine, and the tests that need it are skipped instead of run (issue 12: the
systemd service tests). And the container tests install what they lack
before asking what is missing, not after.
"""

from __future__ import annotations

import re
from pathlib import Path

from integration import demo, demo_overlay, nspawn
from integration.bench import runner

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"


def deb_tools() -> dict[str, str]:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    m = re.search(r"^DEB_TOOLS\s*:=(.*)$", text, re.M)
    assert m, "no DEB_TOOLS in the Makefile"
    return dict(pair.split(":", 1) for pair in m.group(1).split())


def test_deb_tools_has_every_tool_the_tests_need():
    have = deb_tools()
    for who, tools in (("integration/nspawn.py", dict(nspawn.TOOLS)),
                       ("integration/bench", runner.TOOLS), ("integration/demo.py", demo.TOOLS),
                       ("integration/demo_overlay.py", demo_overlay.TOOLS)):
        missing = {tool: pkg for tool, pkg in tools.items() if have.get(tool) != pkg}
        assert not missing, f"{who} needs {missing}, which the Makefile's DEB_TOOLS does not install"


def test_ready_installs_before_it_asks(monkeypatch):
    """With the tools missing, ready() runs apt-get and then finds nothing missing."""
    installed: set[str] = set()
    commands: list[list[str]] = []
    owner = {tool: pkg for tool, pkg in nspawn.TOOLS}

    def which(tool):
        if tool in owner and owner[tool] not in installed and tool != "nsenter":
            return None
        return f"/usr/bin/{tool}"

    def run(cmd, **kw):
        commands.append(cmd)
        if cmd[:2] == ["apt-get", "install"]:
            installed.update(cmd[4:])

    monkeypatch.setattr(nspawn.shutil, "which", which)
    monkeypatch.setattr(nspawn, "_run", run)
    monkeypatch.setattr(nspawn.os, "geteuid", lambda: 0)
    monkeypatch.setattr(nspawn.os.path, "exists", lambda path: True)
    monkeypatch.setattr(nspawn, "_cgroup2_mount", lambda: Path("/sys/fs/cgroup"))
    assert nspawn.ready() is None
    assert commands[-1] == ["apt-get", "install", "-y", "-q", "debootstrap", "systemd-container"]
    assert installed == {"debootstrap", "systemd-container"}
