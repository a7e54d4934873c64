"""Report: the text table, the results JSON and the PNG chart.

Design: results are plain dicts (one per case: name, group, label, params,
metrics, notes, error), so the JSON is the source of truth and both the
table and the chart are drawn from it. Each figure is printed with its ratio
to the Linux bridge and to OVS (this / reference) taken from the core rows
of the same run; a ratio above 1 is better for throughput and rate and
worse for latency, CPU and memory. Missing figures print as n/a (the Linux
bridge has no process, so no CPU or RSS).
"""

from __future__ import annotations

import json
import os

from . import latpairs, overlay, targets

METRICS: dict[str, tuple[str, str, float, str]] = {
    # key: (label, unit, scale, format)
    "tcp1_gbps": ("TCP, 1 stream", "Gbit/s", 1, ".2f"),
    "tcp4_gbps": ("TCP, 4 streams", "Gbit/s", 1, ".2f"),
    "rate_fps": ("64 B delivered", "kframes/s", 1e-3, ".1f"),
    "offered_fps": ("64 B offered", "kframes/s", 1e-3, ".1f"),
    "lat_p50_us": ("RTT p50", "us", 1, ".0f"),
    "lat_p99_us": ("RTT p99", "us", 1, ".0f"),
    # Pinned: ping on the first CPU, the switch's threads on the same one or the next.
    "lat_same_p50_us": ("RTT p50, same CPU", "us", 1, ".0f"),
    "lat_same_p99_us": ("RTT p99, same CPU", "us", 1, ".0f"),
    "lat_cross_p50_us": ("RTT p50, cross CPU", "us", 1, ".0f"),
    "lat_cross_p99_us": ("RTT p99, cross CPU", "us", 1, ".0f"),
    "cpu_s_per_mframe": ("CPU per 1M frames", "s", 1, ".2f"),
    "cpu_util": ("switch CPU in 64 B run", "cores", 1, ".2f"),
    # overlay: each host's switch processes while one TCP stream ran from a to b
    "tcp1_cpu_a": ("switch CPU during TCP 1 stream, host a", "cores", 1, ".2f"),
    "tcp1_cpu_b": ("switch CPU during TCP 1 stream, host b", "cores", 1, ".2f"),
    "rss_peak_mib": ("peak RSS", "MiB", 1, ".1f"),
    "fdb_entries": ("fdb entries", "", 1, ",.0f"),
    # one MAC table aging pass (agingcost.py): none / 1,000 of them expiring, entries
    # refreshed since filed (steady, and all learned in one second: the worst pass)
    "aging_none_us": ("aging pass, 0 expire", "us", 1, ",.0f"),
    "aging_none_visited": ("  entries looked at", "", 1, ",.0f"),
    "aging_1000_us": ("aging pass, 1,000 expire", "us", 1, ",.0f"),
    "aging_1000_visited": ("  entries looked at", "", 1, ",.0f"),
    "aging_refile_us": ("aging pass, 0 expire, all refreshed", "us", 1, ",.0f"),
    "aging_refile_visited": ("  entries looked at", "", 1, ",.0f"),
    "aging_burst_us": ("aging pass, same, learned in 1 s", "us", 1, ",.0f"),
    "aging_burst_visited": ("  entries looked at", "", 1, ",.0f"),
    "fdb_show_s": ("ovslite-ctl fdb-show, end to end", "s", 1, ".2f"),
    "fdb_show_json_s": ("fdb-show --format json", "s", 1, ".2f"),
    **latpairs.metrics(),
}
NO_RATIO = {"fdb_entries", "fdb_show_s", "fdb_show_json_s",
            *(k for k in METRICS if k.startswith("aging_"))}
REFERENCES = ("linux", "ovs")
CHAIN_LINES = (("lat_p50_us", "-"), ("lat_p99_us", ":"), ("lat_same_p50_us", "--"),
               ("lat_cross_p50_us", "-."))
GROUP_TITLES = {
    "core": "Core: h1 -> switch -> h2",
    "scale-fdb": "Scaling (ovslite): 64-byte rate vs MACs in the fdb",
    "scale-ports": "Scaling (ovslite): 64-byte rate vs ports on the bridge",
    "scale-chain": "Scaling (ovslite): latency across a chain of bridges (patch ports vs veth pairs)",
    "scale-target": "Scaling (ovslite): issue #5 target, ports and MACs on one bridge together",
    "scale-aging": "Scaling (ovslite): one MAC table aging pass (the timer runs one a second)",
    "scale-tools": "Scaling (ovslite): the MAC table's tools with a full table",
    overlay.GROUP: "Overlay: container -> switch -> tunnel -> switch -> container, two hosts",
    latpairs.GROUP: "Latency, interleaved: 4 topologies up at once, ping blocks alternated",
}
#: the interleaved table's ratio columns: (label, numerator topology, denominator topology)
PAIR_RATIOS = (("ovslite/ovs", "ovslite", "ovs"), ("8 patched/ovslite", "chain8", "ovslite"))


def fmt_value(key: str, value) -> str:
    if value is None:
        return "n/a"
    _, _, scale, spec = METRICS[key]
    return format(value * scale, spec)


def references(results: list[dict]) -> dict[str, dict]:
    """The core rows' references (name -> metrics) in REFERENCES' order, if they ran."""
    by_name = {r["name"]: r for r in results}
    return {n: by_name[n]["metrics"] for n in REFERENCES if n in by_name and not by_name[n].get("error")}


def ratio(value, ref) -> float | None:
    if value is None or not ref:
        return None
    return value / ref


def table(results: list[dict], group: str, refs: dict[str, dict]) -> list[str]:
    cols = [r for r in results if r["group"] == group]
    if not cols:
        return []
    keys = [k for k in METRICS if any(k in c["metrics"] for c in cols)]
    labels = [f"{METRICS[k][0]}, {METRICS[k][1]}".rstrip(", ") for k in keys]
    first = max([len(s) for s in labels] + [12]) + 2
    widths = [max(len(c["label"]), 9) + 2 for c in cols]
    lines = [GROUP_TITLES.get(group, group), ""]
    lines.append("".ljust(first) + "".join(c["label"].rjust(w) for c, w in zip(cols, widths, strict=True)))
    lines.append("-" * (first + sum(widths)))
    for key, label in zip(keys, labels, strict=True):
        cells = ["error" if c.get("error") else fmt_value(key, c["metrics"].get(key)) for c in cols]
        lines.append(label.ljust(first) + "".join(v.rjust(w) for v, w in zip(cells, widths, strict=True)))
        if key in NO_RATIO:
            continue
        for ref_name, ref_metrics in refs.items():
            ref = ref_metrics.get(key)
            if not ref:  # not measured, or 0 (OVS moved no TCP): a line of n/a says nothing
                continue
            cells = []
            for c in cols:
                r = ratio(c["metrics"].get(key), ref)
                cells.append("" if c.get("error") else ("n/a" if r is None else f"{r:.2f}x"))
            lines.append(f"  / {ref_name}".ljust(first) + "".join(v.rjust(w) for v, w in zip(cells, widths, strict=True)))
    lines.append("")
    return lines


def _pair_row(m: dict, placement: str, pct: str) -> list[str]:
    cells = [fmt_value(latpairs.key(t, placement, pct), m.get(latpairs.key(t, placement, pct)))
             for t in latpairs.TOPOS]
    for _, num, den in PAIR_RATIOS:
        r = ratio(m.get(latpairs.key(num, placement, pct)), m.get(latpairs.key(den, placement, pct)))
        cells.append("n/a" if r is None else f"{r:.2f}x")
    return cells


def pairs_table(results: list[dict], group: str, refs: dict[str, dict]) -> list[str]:
    """latency-pairs: one case with a figure per topology and placement, so placements are
    the rows and topologies the columns, with the two ratios the targets judge."""
    r = next((r for r in results if r["group"] == group), None)
    if r is None:
        return []
    m = r["metrics"]
    head = [GROUP_TITLES[group]]
    if m.get("rounds"):
        head[0] += f" ({m['rounds']} rounds x {m['pings_per_block']} pings per topology)"
    if r.get("error"):
        return [*head, "  error (see Errors below)", ""]
    cols = [label for label, _, _ in latpairs.TOPOS.values()] + [label for label, _, _ in PAIR_RATIOS]
    widths = [max(len(c), 9) + 2 for c in cols]
    first = 16

    def row(label: str, cells: list[str]) -> str:
        return label.ljust(first) + "".join(v.rjust(w) for v, w in zip(cells, widths, strict=True))

    lines = [*head, "", row("RTT, us", cols), "-" * (first + sum(widths))]
    for placement, where in latpairs.PLACEMENTS.items():
        lines += [row(f"{pct} {where}", _pair_row(m, placement, pct)) for pct in latpairs.PCTS]
    return [*lines, ""]


def overlay_table(results: list[dict], group: str, refs: dict[str, dict]) -> list[str]:
    """The overlay rows with their own references: the kernel's vxlan and OVS's."""
    lines = table(results, group, overlay.references(results))
    return [*lines, *overlay.ovs_tcp_lines(results), *overlay.LEGEND, ""] if lines else []


RENDERERS = {latpairs.GROUP: pairs_table, overlay.GROUP: overlay_table}


def render(doc: dict) -> str:
    results = doc["results"]
    refs = references(results)
    out = [f"ovslite bench {doc['run_id']} ({'quick' if doc['quick'] else 'full'}), "
           f"{doc['started']}, {doc['elapsed_s']:.0f} s"]
    mach = doc.get("machine", {})
    if "loadavg_start" in mach:
        # The figures are only as steady as the machine: say how busy it was.
        load = ", ".join(f"{x:.1f}" for x in mach["loadavg_start"][:1] + mach.get("loadavg_end", [])[:1])
        out.append(f"{mach.get('cpus')} CPUs, kernel {mach.get('kernel')}, 1-min load average at start/end: {load}")
    out.append("")
    for group in GROUP_TITLES:
        out += RENDERERS.get(group, table)(results, group, refs)
    out += targets.lines(results)
    if not refs and any(r["group"] not in RENDERERS for r in results):
        out.append("(no Linux bridge or OVS row in this run: no ratios)")
    out.append("Ratios are this figure / the reference's: above 1 is better for TCP and 64 B rate,")
    out.append("worse for latency, CPU and RSS. 64 B = 60-byte frames + FCS; CPU = switch process")
    out.append("utime+stime over the 64 B window per million frames delivered to h2. RTT same/cross CPU:")
    out.append("ping on one CPU, the switch's threads on that CPU / another (Linux bridge: ping only).")
    notes = [(r["name"], n) for r in results for n in r.get("notes", [])]
    errors = [(r["name"], r["error"]) for r in results if r.get("error")]
    if notes:
        out += ["", "Notes:"] + [f"  {name}: {n}" for name, n in notes]
    if errors:
        out += ["", "Errors:"] + [f"  {name}: {e}" for name, e in errors]
    return "\n".join(out) + "\n"


def write_json(doc: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def write_png(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in doc["results"] if not r.get("error")]
    core = [r for r in results if r["group"] == "core"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(f"ovslite bench {doc['run_id']} ({'quick' if doc['quick'] else 'full'}, {doc['started']})")

    def empty(ax, title):
        ax.set_title(title)
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])

    def bars(ax, keys, names, title, ylabel, scale=1.0, log=False):
        rows = [r for r in core if any(r["metrics"].get(k) is not None for k in keys)]
        if not rows:
            return empty(ax, title)
        width = 0.8 / max(len(keys), 1)
        for i, key in enumerate(keys):
            xs = [j + i * width for j in range(len(rows))]
            ys = [(r["metrics"].get(key) or 0) * scale for r in rows]
            ax.bar(xs, ys, width, label=names[i])
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:.3g}", (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(rows))])
        ax.set_xticklabels([r["label"] for r in rows], rotation=20, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend(fontsize=8)

    bars(axes[0][0], ["tcp1_gbps", "tcp4_gbps"], ["1 stream", "4 streams"], "TCP throughput", "Gbit/s")
    bars(axes[0][1], ["offered_fps", "rate_fps"], ["offered", "delivered"], "64-byte frames",
         "kframes/s", 1e-3)
    bars(axes[0][2], ["lat_p50_us", "lat_same_p50_us", "lat_cross_p50_us", "lat_p99_us"],
         ["p50", "p50 same CPU", "p50 cross CPU", "p99"], "Round-trip latency", "us", log=True)
    bars(axes[1][0], ["cpu_s_per_mframe"], ["CPU"], "Switch CPU per 1M frames (64 B)", "CPU seconds")

    ax = axes[1][1]
    scale_rows = [r for r in results if r["group"] in ("scale-fdb", "scale-ports", "scale-target")]
    if not scale_rows:
        empty(ax, "ovslite 64-byte rate scaling")
    else:
        colors = {"scale-fdb": "tab:blue", "scale-ports": "tab:green", "scale-target": "tab:purple"}
        ys = [(r["metrics"].get("rate_fps") or 0) / 1e3 for r in scale_rows]
        ax.bar([r["label"] for r in scale_rows], ys, color=[colors[r["group"]] for r in scale_rows])
        for i, y in enumerate(ys):
            ax.annotate(f"{y:.3g}", (i, y), ha="center", va="bottom", fontsize=7)
        ax.set_title("ovslite 64-byte rate: MACs in fdb (blue), ports (green), both (purple)")
        ax.set_ylabel("kframes/s delivered")
        ax.tick_params(axis="x", labelsize=8, rotation=20)

    ax = axes[1][2]
    chain = [r for r in results if r["group"] == "scale-chain"]
    if not chain:
        empty(ax, "ovslite latency vs bridges in a chain")
    for link, color in (("patch", "tab:blue"), ("veth", "tab:red")):
        rows = sorted([r for r in chain if r["params"].get("link") in (link, "")],
                      key=lambda r: r["params"]["bridges"])
        for key, style in CHAIN_LINES:
            if rows:
                ax.plot([r["params"]["bridges"] for r in rows], [r["metrics"].get(key) for r in rows],
                        style, marker="o", color=color, label=f"{link} {METRICS[key][0][4:]}")
    if ax.lines:
        ax.set_title("ovslite latency vs bridges in a chain")
        ax.set_xlabel("bridges")
        ax.set_ylabel("RTT, us")
        ax.set_xscale("log", base=2)
        ticks = sorted({r["params"]["bridges"] for r in chain})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
