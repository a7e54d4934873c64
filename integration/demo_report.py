"""The demo's results: side-by-side table, a reading generated from the numbers, PNG chart.

The reading is built from the measured figures only: every sentence that
says one link was faster is chosen by comparing the two numbers it quotes,
so a run where the machine was busy, or where the links came out even,
says so instead of repeating what the seeds predict.
"""

from __future__ import annotations

#: key: (label, unit, scale, format, which way is better; "" for context figures)
ROWS: dict[str, tuple[str, str, float, str, str]] = {
    "tcp_gbps": ("TCP throughput (iperf3, 1 stream)", "Gbit/s", 1, ".2f", "higher"),
    "rate_fps": ("64-byte frames delivered to h2", "kframes/s", 1e-3, ".1f", "higher"),
    "offered_fps": ("64-byte frames offered by trafgen", "kframes/s", 1e-3, ".1f", ""),
    "lat_p50_us": ("ping round trip, median (p50)", "us", 1, ".0f", "lower"),
    "lat_p99_us": ("ping round trip, p99", "us", 1, ".0f", "lower"),
    "cpu_s_per_mframe": ("ovslited CPU per delivered frame", "us", 1, ".2f", "lower"),
    "cpu_util": ("ovslited CPU use during the 64 B run", "cores", 1, ".2f", ""),
}
#: the figures the test requires present and positive (offered and CPU use are context)
FIGURES = ("tcp_gbps", "rate_fps", "lat_p50_us", "lat_p99_us", "cpu_s_per_mframe")
LINKS = ("patch", "veth")


def fmt(key: str, value) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    _, _, scale, spec, _ = ROWS[key]
    return format(value * scale, spec)


def ratios(links: dict[str, dict]) -> dict[str, float | None]:
    p, v = links.get("patch", {}), links.get("veth", {})
    out = {}
    for key in ROWS:
        a, b = p.get(key), v.get(key)
        out[key] = a / b if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    return out


def table(links: dict[str, dict]) -> list[str]:
    r = ratios(links)
    labels = {k: f"{ROWS[k][0]}, {ROWS[k][1]}" for k in ROWS}
    first = max(len(s) for s in labels.values()) + 2
    head = "".ljust(first) + "patch link".rjust(12) + "veth link".rjust(12) + "patch/veth".rjust(12) + "  better"
    lines = [head, "-" * (len(head) + 4)]
    for key in ROWS:
        better = ROWS[key][4]
        ratio = "n/a" if r[key] is None else f"{r[key]:.2f}x"
        lines.append(labels[key].ljust(first) + fmt(key, links.get("patch", {}).get(key)).rjust(12)
                     + fmt(key, links.get("veth", {}).get(key)).rjust(12) + ratio.rjust(12)
                     + f"  {better}".rstrip())
    return lines


def _num(x) -> bool:
    return isinstance(x, int | float)


def reading(links: dict[str, dict], names: dict[str, str], machine: dict,
            capture: dict | None = None) -> list[str]:
    """Plain-language paragraphs, each chosen by the figures it quotes."""
    p, v = links["patch"], links["veth"]
    va, vb, pa = names["veth_a"], names["veth_b"], names["patch_a"]
    out = []

    # 64-byte frames: the per-frame cost, where the link type matters most.
    rp, rv = p.get("rate_fps"), v.get("rate_fps")
    if _num(rp) and _num(rv) and rv > 0:
        r = rp / rv
        if r >= 1.1:
            out.append(
                f"The patch link forwarded {r:.1f}x the 64-byte frames per second of the veth link "
                f"({rp / 1e3:.0f}k vs {rv / 1e3:.0f}k frames/s) because each frame crossing the veth "
                f"pair makes a round trip through the kernel: {_round_trip(va, vb)} Across the patch "
                f"pair br-a hands the frame to br-b inside ovslited, in the same loop pass: a function "
                f"call, no syscall, no copy, no kernel network stack (seed 001, section 3.1); and once "
                f"the first frames have set up a flow, the next ones go from h1's port straight to "
                f"h2's, both bridges' decisions taken from the flow cache, as OVS's datapath flows do.")
        elif r > 1 / 1.1:
            out.append(
                f"The two links forwarded about the same 64-byte rate this run ({rp / 1e3:.0f}k vs "
                f"{rv / 1e3:.0f}k frames/s, {r:.2f}x): something other than the link limited both, "
                f"so the veth pair's extra syscalls and copies did not show in the rate.")
        else:
            out.append(
                f"The veth link forwarded more 64-byte frames per second than the patch link this run "
                f"({rv / 1e3:.0f}k vs {rp / 1e3:.0f}k, {1 / r:.2f}x), the opposite of what the extra "
                f"kernel round trip predicts; a short run on a busy machine can be disturbed: run the "
                f"demo again before drawing a conclusion.")

    # CPU per frame: the same cost seen from the daemon's side.
    cp, cv = p.get("cpu_s_per_mframe"), v.get("cpu_s_per_mframe")
    up, uv = p.get("cpu_util"), v.get("cpu_util")
    if _num(cp) and _num(cv) and cp > 0:
        c = cv / cp
        text = (f"ovslited spent {cp:.2f} us of CPU per delivered frame with the patch link and "
                f"{cv:.2f} us with the veth link")
        if c >= 1.1:
            text += (f": {c:.1f}x, the extra {cv - cp:.2f} us being the kernel round trip (out through "
                     f"{va}, back in through {vb}) and the second event-loop pass for each frame.")
        elif c > 1 / 1.1:
            text += ", about the same."
        else:
            text += f": the veth link cost less CPU per frame this run ({1 / c:.2f}x)."
        if _num(up) and _num(uv):
            if min(up, uv) >= 0.85:
                text += (f" The daemon was busy {up:.0%} and {uv:.0%} of a core during the two floods: "
                         f"one Python thread at its limit, so its CPU per frame sets the frame rate.")
            else:
                text += (f" The daemon used {up:.0%} and {uv:.0%} of a core during the two floods, "
                         f"short of a full core: the sender or the machine's other load also limited "
                         f"the rate.")
        out.append(text)

    # TCP: GSO super-frames amortise the per-frame round trip.
    tp, tv = p.get("tcp_gbps"), v.get("tcp_gbps")
    if _num(tp) and _num(tv) and tv > 0:
        t = tp / tv
        r = rp / rv if _num(rp) and _num(rv) and rv > 0 else None
        text = f"TCP: {tp:.2f} vs {tv:.2f} Gbit/s ({t:.2f}x). "
        if max(tp, tv) < 0.05:
            text += ("Bulk TCP barely moved on either link: that is not the link's doing but a fault "
                     "in this switch or machine (look for drops in `ovslite-ctl dump-ports` and "
                     "errors in ovslited's log); the TCP figures say nothing about patch vs veth.")
        elif t < 1 / 1.1:
            text += "The veth link carried more TCP this run; one short run can be disturbed."
        else:
            text += ("The patch link is faster for bulk TCP too" if t >= 1.1
                     else "Bulk TCP came out about even")
            if r is not None and r >= 1.1 and t < r - 0.1:
                text += (f", {'but by less than' if t >= 1.1 else 'unlike'} the {r:.1f}x for 64-byte "
                         f"frames: offloads are on, so TCP crosses the switch as GSO super-frames of up "
                         f"to 64 KB and the veth round trip is paid once per super-frame, not once per "
                         f"1500-byte segment.")
            else:
                text += "."
        out.append(text)

    # Latency: a ping crosses the link twice; the CPU figures say how much that should cost.
    lp, lv = p.get("lat_p50_us"), v.get("lat_p50_us")
    lp99, lv99 = p.get("lat_p99_us"), v.get("lat_p99_us")
    if _num(lp) and _num(lv):
        d = lv - lp
        expect = 2 * (cv - cp) if _num(cp) and _num(cv) else None
        tail = (f" At p99: {lp99:.0f} vs {lv99:.0f} us." if _num(lp99) and _num(lv99) else "")
        if expect is not None and abs(d - expect) <= max(5.0, 0.5 * abs(expect)):
            text = (f"Latency: the veth link added {d:.0f} us to the median round trip ({lv:.0f} vs "
                    f"{lp:.0f} us), about what the CPU figures predict: a ping crosses the link twice "
                    f"(request and reply), 2 x {cv - cp:.1f} us.{tail}")
        else:
            text = f"Latency: median round trip {lp:.0f} us (patch) vs {lv:.0f} us (veth)"
            if expect is not None:
                diff = (f"{abs(d):.0f} us {'more' if d > 0 else 'less'} on the veth link" if round(d)
                        else "the same on both links")
                text += (f", {diff}, where the "
                         f"CPU figures predict about {expect:.0f} us more (a ping crosses the link twice, "
                         f"2 x {cv - cp:.1f} us). At one ping every 5 ms ovslited sleeps between frames, "
                         f"so a round trip is mostly wake-ups and scheduling on the machine's cores, "
                         f"which vary from run to run by more than the link costs.")
            else:
                text += "."
            text += tail
        out.append(text)

    cp_ = (capture or {}).get("patch") or {}
    if cp_.get("ip_link_rc"):
        text = (f"What the patch link costs: no kernel device, so nothing for tcpdump to open "
                f"(`ip link show {pa}` failed)")
        n = len(cp_.get("ctl_lines", []))
        text += (f"; `ovslite-ctl capture` tapped the port inside ovslited instead and showed {n} "
                 f"frames (shown above, summed up below)." if n else "; `ovslite-ctl capture` showed no frames this run.")
        out.append(text)
    busy, cpus = machine.get("busy_start"), machine.get("cpus") or 1
    if _num(busy) and busy > 0.25:
        out.append(f"Note: other work kept {busy:.0%} of the machine's {cpus} CPUs busy just before "
                   f"the demo started; the figures may be disturbed (run it again on a quieter "
                   f"machine to compare).")
    return out


def system_port_io() -> str:
    """How the installed ovslite's `system` ports move frames: "rings" (PACKET_MMAP) or "socket"."""
    try:
        from ovslite.netdev import system
    except Exception:
        return "unknown"
    mro = " ".join(c.__name__ for c in system.SystemNetdev.__mro__)
    return "rings" if "Ring" in mro else "socket"


def _round_trip(va: str, vb: str) -> str:
    """What a frame crossing the veth pair costs, for the system-port I/O this ovslite has."""
    io = system_port_io()
    kernel = (f"the kernel's veth driver hands it to {vb} and runs its receive path there (with the "
              f"packet taps tcpdump uses)")
    if io == "rings":
        return (f"ovslited copies it into {va}'s PACKET_MMAP transmit ring and kicks the kernel (one "
                f"sendto() per batch), {kernel}, the kernel copies it into {vb}'s receive ring, and "
                f"ovslited picks it up from there (a second copy, one more event-loop wake-up) before "
                f"br-b can forward it.")
    if io == "socket":
        return (f"ovslited writes it to {va}'s AF_PACKET socket (a send() syscall and a copy into a "
                f"kernel buffer), {kernel}, and ovslited reads it back from {vb}'s socket (a recv() "
                f"syscall, a second copy, one more event-loop wake-up) before br-b can forward it.")
    return (f"ovslited hands it to the kernel on {va}, {kernel}, and ovslited takes it back from "
            f"{vb} (a copy each way, one more event-loop wake-up) before br-b can forward it.")


def write_png(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = doc["links"]
    colors = {"patch": "tab:blue", "veth": "tab:orange"}
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    fig.suptitle(f"ovslite demo {doc['tag']} ({'quick' if doc['quick'] else 'full'}, {doc['started']}): "
                 f"h1 - br-a - [patch pair | veth pair] - br-b - h2")
    panels = [
        ("TCP throughput (1 stream)", "Gbit/s", [("tcp_gbps", "", 1)]),
        ("64-byte frames delivered", "kframes/s", [("rate_fps", "", 1e-3)]),
        ("ping round trip", "us", [("lat_p50_us", "p50", 1), ("lat_p99_us", "p99", 1)]),
        ("ovslited CPU per frame (64 B)", "us of CPU", [("cpu_s_per_mframe", "", 1)]),
    ]
    for ax, (title, unit, series) in zip(axes, panels, strict=True):
        width = 0.8 / len(series)
        for i, (key, sub, scale) in enumerate(series):
            for j, link in enumerate(LINKS):
                value = links.get(link, {}).get(key)
                y = value * scale if _num(value) else 0
                x = j + (i - (len(series) - 1) / 2) * width
                bar = ax.bar(x, y, width * 0.95, color=colors[link], alpha=1.0 if i == 0 else 0.55)
                ax.bar_label(bar, [f"{y:.3g}" + (f"\n{sub}" if sub else "")], fontsize=8)
        ax.set_xticks(range(len(LINKS)))
        ax.set_xticklabels([f"{link} link" for link in LINKS])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.margins(y=0.2)
    axes[0].annotate("higher is better", (0.5, -0.16), xycoords="axes fraction", ha="center", fontsize=8)
    axes[1].annotate("higher is better", (0.5, -0.16), xycoords="axes fraction", ha="center", fontsize=8)
    axes[2].annotate("lower is better", (0.5, -0.16), xycoords="axes fraction", ha="center", fontsize=8)
    axes[3].annotate("lower is better", (0.5, -0.16), xycoords="axes fraction", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
