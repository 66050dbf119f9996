"""Reports of the cluster benchmark: every strategy at its best encoding, the headline ratios,
the tables, the plots and the REPRODUCTION.md section.

Every baseline at its best
--------------------------
The benchmark (:mod:`lcp.sw.cluster.bench`) measures each *group* (one strategy on one model
variant and one set of nodes) once per wire encoding (:data:`lcp.sw.cluster.wire.ENCODINGS`),
labelled ``group/encoding``. A group's *best run* is the one that sends the fewest bytes per
inference (TCP payload of the data plane, counted by the kernel) among its runs whose every
answer equals the golden reference. A *baseline* is any strategy other than ``single`` serving
the original (unsplit) model (today ``data``, ``pipeline`` and ``hidp``; a strategy added
later, such as model parallelism, joins without a change here); its best run is the cheapest
exact run over all of its groups. The headline compares each LCP group (:data:`LCP_GROUPS`)
at its best with every baseline at its best, against the target of :data:`TARGET` times fewer
bytes, and says plainly where the target is missed or LCP sends more.

Rows written before encodings were swept (no ``group`` field) count as groups of one run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from rich.table import Table

from .wire import ENCODINGS

__all__ = ["TARGET", "LCP_GROUPS", "group_of", "best_runs", "baseline_best", "comparisons",
           "headline_lines", "render_table", "summary_lines", "plots", "markdown"]

#: The promised factor: LCP sends at least this many times fewer bytes per inference.
TARGET = 8.0
#: Groups that are LCP itself, headline first.
LCP_GROUPS = ("lcp-split8", "lcp-split4")


def group_of(row: dict) -> str:
    """The group of a run row (its label when it has none)."""
    return row.get("group") or row["label"]


def _exact(row: dict) -> bool:
    return row.get("answers", 0) > 0 and row.get("wrong", 1) == 0


def _bytes(row: dict) -> float:
    return row["tcp_bytes_per_inference"]["total"]


def _cheapest(rows):
    ok = [r for r in rows if _exact(r)]
    return min(ok, key=_bytes) if ok else None


def best_runs(rows: list[dict]) -> dict[str, dict]:
    """Group -> its cheapest exact run (groups without an exact run are left out)."""
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(group_of(r), []).append(r)
    return {g: b for g, rs in groups.items() if (b := _cheapest(rs)) is not None}


def baseline_best(rows: list[dict]) -> dict[str, dict]:
    """Baseline strategy -> its cheapest exact run (see the module doc)."""
    by: dict[str, list] = {}
    for r in rows:
        if r["variant"] == "original" and r["strategy"] != "single":
            by.setdefault(r["strategy"], []).append(r)
    return {s: b for s, rs in by.items() if (b := _cheapest(rs)) is not None}


def _params(row: dict) -> int | None:
    """Largest parameter bytes held by one node in a run."""
    mem = row.get("memory") or {}
    return max((v["param_bytes"] for v in mem.values()), default=None)


def _ratio(base: dict, lcp: dict) -> dict:
    bb, lb = base["tcp_bytes_per_inference"], lcp["tcp_bytes_per_inference"]
    c = {"label": base["label"], "encoding": base["encoding"], "bytes": bb["total"],
         "max_param_bytes_per_node": _params(base),
         "total_ratio": bb["total"] / lb["total"],
         "max_link_ratio": bb["max_link"] / lb["max_link"]}
    if "link_bytes_per_inference" in base and "link_bytes_per_inference" in lcp:
        c["veth_total_net_ratio"] = (base["link_bytes_per_inference"]["total_net"]
                                     / lcp["link_bytes_per_inference"]["total_net"])
    c["meets_target_total"] = c["total_ratio"] >= TARGET
    return c


def comparisons(rows: list[dict]) -> dict:
    """The figures of one family derived from its rows: ``best`` (per group: the cheapest
    encoding and the bytes of every encoding), ``headline`` (per LCP group at its best: the
    ratio against every baseline at its best), latency, throughput and memory ratios."""
    out: dict = {"target": TARGET}
    best = best_runs(rows)
    out["best"] = {}
    for r in rows:
        g = group_of(r)
        e = out["best"].setdefault(g, {"strategy": r["strategy"], "variant": r["variant"],
                                       "by_encoding": {}})
        e["by_encoding"][r["encoding"]] = _bytes(r) if _exact(r) else None
        if best.get(g) is r:
            e.update(label=r["label"], encoding=r["encoding"], bytes=_bytes(r))
    bases = baseline_best(rows)
    out["headline"] = {}
    for g in LCP_GROUPS:
        lcp = best.get(g)
        if lcp is None:
            continue
        out["headline"][g] = {"label": lcp["label"], "encoding": lcp["encoding"],
                              "bytes": _bytes(lcp),
                              "max_param_bytes_per_node": _params(lcp),
                              "vs": {s: _ratio(b, lcp) for s, b in bases.items()}}
    base = next((r for r in rows if r["label"] == "original@1"), None)
    if base:
        out["latency / original@1"] = {
            r["label"]: r["latency_per_image_ms"] / base["latency_per_image_ms"] for r in rows}
        out["throughput / original@1"] = {
            r["label"]: r["throughput_images_s"] / base["throughput_images_s"] for r in rows}
        mem_base = max(v["rss_mb"] for v in base["memory"].values())
        mem = {}
        for g in ("original@1", *reversed(LCP_GROUPS)):
            r = best.get(g)
            if r:
                mem[g] = {"label": r["label"],
                          "max_rss_mb": max(v["rss_mb"] for v in r["memory"].values()),
                          "max_rss_over_base_mb": max(v["rss_mb"] - v["base_rss_mb"]
                                                      for v in r["memory"].values()),
                          "max_param_bytes": max(v["param_bytes"]
                                                 for v in r["memory"].values())}
        for v in mem.values():
            v["rss_ratio_vs_original"] = v["max_rss_mb"] / mem_base
        out["memory per node"] = mem
    return out


def _times(t: float) -> str:
    return f"{t:.2f}x fewer" if t >= 1 else f"{1 / t:.2f}x MORE"


def _verdict(vs: dict) -> str:
    """The plain sentence about the target."""
    met = [s for s, c in vs.items() if c["meets_target_total"]]
    under = [f"{s} ({c['total_ratio']:.2f}x)" for s, c in vs.items()
             if 1 <= c["total_ratio"] < TARGET]
    more = [f"{s} ({1 / c['total_ratio']:.2f}x more)" for s, c in vs.items()
            if c["total_ratio"] < 1]
    parts = []
    if met:
        parts.append(f"the >= {TARGET:g}x target is met against {', '.join(met)}")
    if under:
        parts.append(f"LCP's advantage is under {TARGET:g}x against {', '.join(under)}")
    if more:
        parts.append(f"LCP sends MORE bytes than {', '.join(more)}")
    return "; ".join(parts) if parts else "no baseline measured"


def headline_lines(result: dict, groups=LCP_GROUPS[:1]) -> list[str]:
    """The README headline: per family, LCP at its best against every baseline at its best."""
    lines = []
    for fam, entry in result["families"].items():
        head = comparisons(entry["rows"])["headline"]
        for g in groups:
            h = head.get(g)
            if not h:
                continue
            vs = ", ".join(f"{s} ({c['encoding']}, {c['bytes'] / 1e3:.1f} kB) "
                           f"{_times(c['total_ratio'])}" for s, c in h["vs"].items())
            mem = ""
            if h.get("max_param_bytes_per_node") is not None:
                mem = "; parameters on the busiest node: LCP " + ", ".join(
                    [f"{h['max_param_bytes_per_node'] / 1e3:.1f} kB"]
                    + [f"{s} {c['max_param_bytes_per_node'] / 1e3:.1f} kB"
                       for s, c in h["vs"].items()
                       if c.get("max_param_bytes_per_node") is not None])
            lines.append(f"- cluster, {fam}: LCP {g.removeprefix('lcp-')} at its cheapest "
                         f"encoding ({h['encoding']}, {h['bytes'] / 1e3:.1f} kB per inference) "
                         f"against each baseline at its cheapest: {vs}; {_verdict(h['vs'])}"
                         f"{mem}")
    return lines


def _conditions(result: dict) -> str:
    links = result["config"].get("links")
    return (f"conditions: {result['workers']} worker processes on {os.cpu_count()} CPU cores "
            f"shared with everything else on the machine (load average "
            f"{result['loadavg_before'][0]:.1f} before, {result['loadavg_after'][0]:.1f} after); "
            + (f"emulated links {links['bandwidth']} per device (tbf, no netem), app delay "
               f"{result['config']['delay_ms']} ms" if links else
               "loopback, no link emulation"))


def summary_lines(result: dict) -> list[str]:
    """The headline figures as plain lines (also written to ``summary.txt``)."""
    lines = [_conditions(result)]
    for fam, entry in result["families"].items():
        lines.append(f"== {fam} ==")
        lines += [f"  note: {n}" for n in entry["notes"]]
        rows = entry["rows"]
        comp = comparisons(entry["rows"])
        exp = entry.get("expected_payload_bytes", {})
        lines.append("  bytes per inference (TCP payload of the data plane, kernel counters) by "
                     "encoding; * marks each group's cheapest exact run, ! a run with a wrong "
                     "answer:")
        for g, b in comp["best"].items():
            cells = []
            for enc in [*ENCODINGS, *sorted(set(b["by_encoding"]) - set(ENCODINGS))]:
                if enc not in b["by_encoding"]:
                    continue
                v = b["by_encoding"][enc]
                cells.append(f"{enc} " + ("!" if v is None else
                                          f"{v:.0f}" + ("*" if enc == b.get("encoding") else "")))
            lines.append(f"    {g} ({b['strategy']}, {b['variant']}): {', '.join(cells)}")
        if "lcp-split8" in exp:
            lines.append(f"  IR payload alone (packed, computed): lcp-split8 {exp['lcp-split8']} "
                         f"B, pipeline {exp.get('pipeline', exp.get('pipeline-int'))} B")
        for g, h in comp["headline"].items():
            lines.append(f"  {g} at its best ({h['label']}, {h['bytes']:.0f} B) against each "
                         f"baseline at its best:")
            for s, c in h["vs"].items():
                vr = (f", veth frames net of idle {c['veth_total_net_ratio']:.2f}"
                      if "veth_total_net_ratio" in c else "")
                lines.append(f"    {s}: {c['label']} {c['bytes']:.0f} B -> {g} sends "
                             f"{_times(c['total_ratio'])} bytes in total (ratio "
                             f"{c['total_ratio']:.2f}{vr}; busiest link ratio "
                             f"{c['max_link_ratio']:.2f}); >= {TARGET:g}x: "
                             f"{'MET' if c['meets_target_total'] else 'NOT MET'}")
            lines.append(f"    in short: {_verdict(h['vs'])}")
        if exp.get("pipeline_stages"):
            lines.append(f"  pipeline stages: {', '.join(exp['pipeline_stages'])}")
        best = best_runs(rows)
        if "latency / original@1" in comp:
            keep = {r["label"] for r in best.values()}
            lines.append("  latency per image / original@1 (p50), each group's cheapest run: "
                         + ", ".join(f"{k} {v:.2f}"
                                     for k, v in comp["latency / original@1"].items()
                                     if k in keep))
            lines.append("  throughput / original@1, each group's cheapest run: " + ", ".join(
                f"{k} {v:.2f}" for k, v in comp["throughput / original@1"].items()
                if k in keep))
        for g, v in comp.get("memory per node", {}).items():
            lines.append(f"  memory per node {v['label']}: max RSS {v['max_rss_mb']:.1f} MB "
                         f"({v['rss_ratio_vs_original']:.3f}x original@1), "
                         f"+{v['max_rss_over_base_mb']:.1f} MB over the idle worker, "
                         f"parameters {v['max_param_bytes']} B")
        for name, acc in entry.get("accuracy_missing_branches", {}).items():
            lines.append(f"  accuracy {name} with k branches missing (zeroed): " + ", ".join(
                f"k={k}: {v:.4f}" for k, v in acc.items()))
        shown = [best.get("lcp-split8"), best.get("pipeline"),
                 next((r for r in rows if r["strategy"] == "pipeline"
                       and r["encoding"] == "zfp-lz4"), None)]
        for r in dict.fromkeys(r["label"] for r in shown if r):
            row = next(x for x in rows if x["label"] == r)
            lines.append(f"  {r} bytes per inference per link (a->b / b->a): " + ", ".join(
                f"{k} {v['a_to_b']:.0f}/{v['b_to_a']:.0f}"
                for k, v in row["tcp_bytes_per_inference"]["links"].items()))
        for r in best.values():
            h = r.get("plan", {}).get("hidp")
            if h:
                what = h.get("assignment") or r["placement"]
                opts = h.get("options")
                lines.append(f"  {r['label']} plan: {h['kind']}, estimate "
                             f"{1e3 * h['estimate_s']:.1f} ms, {what}"
                             + (", estimates " + ", ".join(f"{k} {1e3 * v:.1f} ms"
                                                           for k, v in opts.items())
                                if opts else ""))
        bad = [r["label"] for r in rows if not _exact(r)]
        lines.append("  every answer equal to golden: " + ("yes" if not bad else
                                                           f"NO ({', '.join(bad)})")
                     + " (zfp-lz4 is DEFER's codec in ZFP's reversible, lossless mode)")
    return lines


def _row_cells(r: dict, best_labels: set) -> list[str]:
    tb = r["tcp_bytes_per_inference"]
    return [r["label"], r["strategy"], r["encoding"], str(r["nodes_used"]),
            f"{r['latency_ms']['p50'] / r['batch']:.2f}",
            f"{r['latency_ms']['p95'] / r['batch']:.2f}", f"{r['throughput_images_s']:.1f}",
            f"{tb['total'] / 1e3:.2f}", f"{tb['max_link'] / 1e3:.2f}",
            f"{max(v['rss_mb'] for v in r['memory'].values()):.0f}",
            f"{r['answers'] - r['wrong']}/{r['answers']}",
            "*" if r["label"] in best_labels else ""]


def render_table(result: dict):
    """A :class:`rich.table.Table` per family."""
    tables = []
    for fam, entry in result["families"].items():
        t = Table(title=f"{fam}: {result['workers']} workers"
                  + (f", links {result['config']['links']['bandwidth']}"
                     if result["config"].get("links") else ", no link emulation")
                  + "; * = the group's cheapest exact encoding")
        cols = ["run", "strategy", "enc", "nodes", "p50 ms", "p95 ms", "img/s", "kB/inf",
                "max link kB", "RSS MB max", "exact", "best", "veth kB net"]
        for c in cols:
            t.add_column(c, justify="left" if c in ("run", "strategy", "enc") else "right")
        best = {r["label"] for r in best_runs(entry["rows"]).values()}
        for r in entry["rows"]:
            veth = r.get("link_bytes_per_inference", {}).get("total_net")
            t.add_row(*_row_cells(r, best), "-" if veth is None else f"{veth / 1e3:.2f}")
        tables.append(t)
    return tables


def _grouped(rows: list[dict]):
    """Groups in order of first appearance and the encodings seen."""
    groups = list(dict.fromkeys(group_of(r) for r in rows))
    encs = [e for e in ENCODINGS if any(r["encoding"] == e for r in rows)]
    encs += sorted({r["encoding"] for r in rows} - set(encs))
    return groups, encs


def plots(result: dict, out: Path) -> list[Path]:
    """Per family: latency and bytes per group and encoding (the cheapest run of each group
    outlined), memory per node of each group's cheapest run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    paths = []
    for fam, entry in result["families"].items():
        rows = entry["rows"]
        groups, encs = _grouped(rows)
        best = {r["label"] for r in best_runs(rows).values()}
        x = np.arange(len(groups))
        w = 0.8 / max(1, len(encs))

        def grouped(ax, value, err=None):
            for k, e in enumerate(encs):
                for i, g in enumerate(groups):
                    r = next((r for r in rows if group_of(r) == g and r["encoding"] == e), None)
                    if r is None:
                        continue
                    pos = x[i] - 0.4 + w * (k + 0.5)
                    ax.bar(pos, value(r), w, color=f"C{k}",
                           edgecolor="k" if r["label"] in best else "none",
                           linewidth=1.5 if r["label"] in best else 0)
                    if err:
                        lo, hi = err(r)
                        ax.errorbar(pos, lo, yerr=[[0], [hi - lo]], fmt="none", ecolor="k",
                                    capsize=2)
            ax.legend(handles=[Patch(facecolor=f"C{k}", label=e) for k, e in enumerate(encs)]
                      + [Patch(facecolor="none", edgecolor="k", linewidth=1.5,
                               label="cheapest of its group")], fontsize=8)
            ax.set_xticks(x, groups, rotation=30, ha="right")

        fig, ax = plt.subplots(figsize=(10, 4))
        grouped(ax, lambda r: r["latency_ms"]["p50"] / r["batch"],
                lambda r: (r["latency_ms"]["p50"] / r["batch"],
                           r["latency_ms"]["p95"] / r["batch"]))
        ax.set_ylabel("latency per image (ms), p50 bar, p95 whisker")
        ax.set_title(f"{fam}: latency per strategy and encoding")
        fig.tight_layout()
        p = out / f"{fam}_latency.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)

        fig, ax = plt.subplots(figsize=(10, 4))
        grouped(ax, lambda r: r["tcp_bytes_per_inference"]["total"] / 1e3)
        ax.set_yscale("log")
        ax.set_ylabel("kB per inference (TCP payload)")
        ax.set_title(f"{fam}: bytes per inference; outlined: each group's cheapest encoding")
        fig.tight_layout()
        p = out / f"{fam}_bytes.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)

        fig, ax = plt.subplots(figsize=(10, 4))
        brs = list(best_runs(rows).values())
        xb = np.arange(len(brs))
        rss = [max(v["rss_mb"] for v in r["memory"].values()) for r in brs]
        base = [max(v["base_rss_mb"] for v in r["memory"].values()) for r in brs]
        ax.bar(xb, base, label="idle worker")
        ax.bar(xb, np.subtract(rss, base), bottom=base, label="with its parts, after requests")
        ax.set_xticks(xb, [r["label"] for r in brs], rotation=30, ha="right")
        ax.set_ylabel("max RSS per node (MB)")
        ax.set_title(f"{fam}: memory per node (each group's cheapest run)")
        ax.legend()
        fig.tight_layout()
        p = out / f"{fam}_memory.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths


def markdown(results_dir, runs=Path("runs")) -> str:
    """REPRODUCTION.md section (:mod:`lcp.benchmarks.reproduce`): the newest ``bench.json`` of
    ``RESULTS/cluster/`` (written by ``lcp bench --only cluster``), else of
    ``RUNS/cluster-emulate/`` or ``RUNS/cluster-bench/``, as tables and headline lines."""
    found = [p for p in (Path(results_dir) / "cluster" / "bench.json",
                         Path(runs) / "cluster-emulate" / "bench.json",
                         Path(runs) / "cluster-bench" / "bench.json") if p.exists()]
    if not found:
        return ("_Not measured yet: run `make bench` (or `lcp cluster emulate` as root, "
                "`lcp cluster bench` otherwise), which writes `bench.json`._")
    path = max(found, key=lambda p: p.stat().st_mtime)
    result = json.loads(path.read_text())
    cmd = "lcp cluster emulate" if result["config"].get("links") else "lcp cluster bench"
    parts = [f"Produced by `{cmd}` (through `lcp bench --only cluster`; plots next to "
             f"`{path.name}` in its folder). Latency per image (p50/p95 of sequential "
             "requests), throughput with requests in flight, bytes per inference counted by "
             "the kernel (TCP payload of every connection of the data plane), memory = max RSS "
             "of a node's worker process. Every strategy runs with every wire encoding "
             "(`packed`, `packed-lz4`, `float32`, `zfp-lz4` = DEFER's float32 + ZFP "
             "reversible + LZ4, per image); the headline compares each strategy at its "
             f"cheapest exact encoding (marked *), against the target of {TARGET:g}x fewer "
             "bytes.", ""]
    parts += [*headline_lines(result, LCP_GROUPS), ""]
    for fam, entry in result["families"].items():
        best = {r["label"] for r in best_runs(entry["rows"]).values()}
        parts += [f"**{fam}**", "",
                  "| run | strategy | encoding | nodes | p50 ms | p95 ms | images/s | "
                  "kB / inference | busiest link kB | max RSS MB | exact | cheapest |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        parts += ["| " + " | ".join(_row_cells(r, best)) + " |" for r in entry["rows"]]
        parts.append("")
    parts += ["```", *summary_lines(result), "```"]
    return "\n".join(parts)
