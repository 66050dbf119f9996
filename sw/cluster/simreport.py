"""REPRODUCTION.md section of the cluster simulator (:mod:`lcp.benchmarks.reproduce`): the simulator
against measurements on this machine, the LCP paper's Raspberry Pi table predicted beside the
paper's, and the dynamic re-planning experiment, from the JSON files under ``RESULTS/cluster/``:

``sim_check.json``  ``lcp cluster calibrate --results results/cluster/sim_check.json`` (root)
``paper_rpi.json``  ``lcp cluster paper -o results/cluster/paper_rpi.json``
``replan.json``     ``lcp cluster emulate-replan -o results/cluster/replan.json`` (root)
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["markdown"]

_MISSING = "_Not produced yet: run `{cmd}`._"


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_markdown(res: dict) -> list[str]:
    c = res["conditions"]
    comp = res["calibration"]
    links = comp["links"]
    lk = ", ".join(f"{k}: round trip {1e3 * v['rtt_s']:.2f} ms, {v['bandwidth_bps'] / 1e6:.2f} "
                   f"Mbit/s" for k, v in links.items())
    lines = [f"`lcp cluster calibrate --nodes {c['nodes']} --bandwidth {c['tbf_rate']}` (root): "
             f"{c['nodes']} worker processes in their namespaces on tbf links of "
             f"{c['tbf_rate']}, one compute thread per process, family {c['family']} (random "
             f"weights); calibration: every layer of the golden executor timed alone (per op "
             f"kind a fixed + per-MAC/per-element cost), links probed from the dispatcher "
             f"({lk}; lcp_run overhead {1e3 * comp['call_overhead_s']:.2f} ms); a node's "
             f"slowdown over the fitted costs ({comp['session_node_slowdown']:.2f}x) and its "
             f"overhead per layer ({1e3 * comp['session_node_layer_overhead_s']:.3f} ms) "
             f"solved on the session's two one-node runs (marked calibration). Measured: the "
             f"benchmark's runs on the same links (p50 of sequential requests; throughput with "
             f"{c['concurrency']} in flight). The simulator models the {c['nodes']} devices "
             f"and the dispatcher sharing this machine's cores. Load average before/after: "
             f"{c['loadavg'][0]} / {c['loadavg'][1]} (other jobs ran on the machine).", "",
             "| run | nodes | p50 measured ms | p50 predicted ms | error | throughput measured "
             "img/s | predicted | error |", "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['label']} | | not simulated: {r['error']} | | | | | |")
            continue
        la, th = r["latency_p50_ms"], r["throughput_images_s"]
        cal = " (calibration)" if r.get("calibration") else ""
        lines.append(f"| {r['label']}{cal} | {r['nodes']} | {la['measured']:.1f} | "
                     f"{la['predicted']:.1f} | {100 * la['error']:+.0f} % | "
                     f"{th['measured']:.1f} | {th['predicted']:.1f} | "
                     f"{100 * th['error']:+.0f} % |")
    ok = [r for r in res["rows"] if "error" not in r and not r.get("calibration")]
    within = [r for r in ok if abs(r["latency_p50_ms"]["error"]) <= 0.2
              and abs(r["throughput_images_s"]["error"]) <= 0.2]
    lines += ["", f"{len(within)} of {len(ok)} checked runs within 20 % on both figures."]
    return lines


def paper_markdown(res: dict) -> list[str]:
    wires = list(res["setting"]["wires"])
    lines = ["`lcp cluster paper`: " + res["setting"]["link"] + "; " +
             res["setting"]["device"] + " (so one device's compute is the paper's one-device "
             "figure by construction, the one-device row adds sending input and output; every "
             "other figure is predicted from the IR's MACs and tensor "
             "bytes of our 224x224 AlexNet / VGG16 and their LCP splits, random weights). "
             "Wire variants: `float32` (what a float framework on the Pi sends), `packed` (our "
             "format: 8-bit input, 4-bit activations), each message to one device; "
             "`packed+broadcast`: a tensor several devices need (every branch's input, each "
             "slice of an all-gather) sent once on the radio. The merge runs on one more device. "
             "Speedups are against one device with the same wire.", "",
             "| model | configuration | paper ms | paper speedup | " +
             " | ".join(f"predicted ms ({w}) | speedup" for w in wires) + " |",
             "|---|---|---|---|" + "---|---|" * len(wires)]
    for fam, rows in res["models"].items():
        for label, r in rows.items():
            paper = (f"{r['paper_ms']:,} | {r['paper_speedup_vs_single']:.1f}x"
                     if "paper_ms" in r else "— | —")
            pred = " | ".join(f"{r[w]['latency_ms']:,.0f} | {r[w]['speedup_vs_single']:.1f}x"
                              for w in wires)
            lines.append(f"| {fam} | {label} ({r['nodes']} device(s)) | {paper} | {pred} |")
    a = res["models"].get("alexnet", {})
    if "lcp-split8" in a and "model-parallel8" in a:
        lp, mp = a["lcp-split8"], a["model-parallel8"]
        lines += ["", "AlexNet, LCP split8 against model parallelism on 8 devices and against "
                      f"one device: paper {mp['paper_ms'] / lp['paper_ms']:.1f}x and "
                      f"{lp['paper_speedup_vs_single']:.1f}x; predicted " +
                  ", ".join(f"{mp[w]['latency_ms'] / lp[w]['latency_ms']:.1f}x and "
                            f"{lp[w]['speedup_vs_single']:.1f}x ({w})" for w in wires) + "."]
    for fam, rows in res["models"].items():
        if "hidp-split8" in rows:
            lines.append(f"{fam}, HiDP on the same model (float32): "
                         f"{'; '.join(rows['hidp-split8']['float32']['notes'])}.")
    return lines


def replan_markdown(res: dict) -> list[str]:
    lat = res["latency"]
    lines = [f"`lcp cluster emulate-replan` (root): {res['model']} served with HiDP on "
             f"{res['nodes']} emulated nodes; {res['slow_node']}'s link lowered to "
             f"{res['slow_rate']} at t = {res['drop_at_s']:.1f} s; re-planned at t = "
             f"{res['replanned_at_s']:.1f} s" if res["replanned_at_s"] is not None else
             "no re-plan", "",
             f"Plan before: {res['plan_before']}; after: {res['plan_after']}.", "",
             "| phase | requests | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for p in ("before", "during", "after"):
        s = lat[p]
        if s["n"]:
            lines.append(f"| {p} | {s['n']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | "
                         f"{s['max_ms']:.1f} |")
    lines += ["", f"{res['requests']} requests, {res['unique_answers']} distinct answers, "
                  f"{res['exact']} equal to golden; statuses {res['statuses']}."]
    return lines


def markdown(results_dir, runs=Path("runs")) -> str:
    d = Path(results_dir) / "cluster"
    parts = []
    for title, name, fn, cmd in (
            ("Simulator vs measured on this machine", "sim_check.json", check_markdown,
             "lcp cluster calibrate --results results/cluster/sim_check.json"),
            ("The LCP paper's Raspberry Pi cluster, predicted", "paper_rpi.json",
             paper_markdown, "lcp cluster paper -o results/cluster/paper_rpi.json"),
            ("Placement that follows the links", "replan.json", replan_markdown,
             "lcp cluster emulate-replan -o results/cluster/replan.json")):
        res = _load(d / name)
        parts += [f"**{title}**", ""]
        parts += fn(res) if res is not None else [_MISSING.format(cmd=cmd)]
        parts.append("")
    return "\n".join(parts)
