"""REPRODUCTION.md section: model parallelism against LCP (bytes per inference counted by the
kernel, next to the LCP paper's -60 % at split4 and -86 % at split8) and the exchange-point
search (:mod:`lcp.models.search`).

Reads ``RESULTS/cluster-mp/bench.json``, written by::

    lcp cluster bench --family lenet5 --family cifarnet --nodes 8 --no-train \\
        --run model-parallel4/packed --run model-parallel8/packed --run lcp-split4/packed \\
        --run lcp-split8/packed --run exchange-split4/packed -o results/cluster-mp

and ``RESULTS/search/{lenet5,lenet_fc}-split4/pareto.json``, written by ``lcp search --arch
lenet5 --split 4`` and ``lcp search --arch lenet_fc --split 4``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["PAPER_REDUCTION", "mp_vs_lcp", "markdown"]

#: The LCP paper's communication reduction of LCP against model parallelism, by split.
PAPER_REDUCTION = {4: 0.60, 8: 0.86}

BENCH_CMD = ("lcp cluster bench --family lenet5 --family cifarnet --nodes 8 --no-train "
             "--run model-parallel4/packed --run model-parallel8/packed --run lcp-split4/packed "
             "--run lcp-split8/packed --run exchange-split4/packed -o results/cluster-mp")
SEARCH_CMD = "lcp search --arch {arch} --split 4"
#: The searches the section shows (arch, title).
SEARCHES = (("lenet5", "LeNet-5 split4, MNIST"), ("lenet_fc", "LeNet-300-100 MLP split4, MNIST"))


def _json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def mp_vs_lcp(bench: dict) -> list[dict]:
    """Per family and split: kernel-counted bytes per inference of model parallelism on
    ``split`` nodes and of LCP split ``split``, and LCP's reduction."""
    out = []
    for fam, entry in bench.get("families", {}).items():
        rows = {r["group"]: r for r in entry.get("rows", []) if r.get("encoding") == "packed"}
        for s in (4, 8):
            mp, lcp = rows.get(f"model-parallel{s}"), rows.get(f"lcp-split{s}")
            if mp is None or lcp is None:
                continue
            b_mp = mp["tcp_bytes_per_inference"]["total"]
            b_lcp = lcp["tcp_bytes_per_inference"]["total"]
            out.append({"family": fam, "split": s, "mp_bytes": b_mp, "lcp_bytes": b_lcp,
                        "reduction": 1 - b_lcp / b_mp, "paper": PAPER_REDUCTION[s],
                        "exact": mp.get("wrong", 1) == 0 and lcp.get("wrong", 1) == 0,
                        "mp_nodes": mp.get("nodes_used"), "lcp_nodes": lcp.get("nodes_used")})
        x = rows.get("exchange-split4")
        if x is not None:
            out.append({"family": fam, "split": 4, "exchange": True,
                        "bytes": x["tcp_bytes_per_inference"]["total"],
                        "exact": x.get("wrong", 1) == 0})
    return out


def _search_md(res: dict, rel: str) -> list[str]:
    mp = res["model_parallel"]
    cmd = SEARCH_CMD.format(arch=res["config"]["arch"])
    lines = [f"Command: `{cmd}` ({res['seconds'] / 60:.0f} min wall time on the shared 2-core "
             f"machine). "
             f"One-shot supernet over the exchange points after layers "
             f"{res['candidate_points']} (off, or 1 / half / all channels at "
             f"{'/'.join(map(str, res['config']['bits']))} bits), "
             f"{len(res['candidates'])} policies scored on {res['config']['val']} validation "
             f"images taken from the training set; the chosen Pareto points retrained "
             f"({res['config']['retrain_epochs']} epochs, the QAT recipe) next to LCP and "
             f"model parallelism. Bytes: what the branches send each other per image, "
             f"bit-packed (the compiler's traffic counter without the input scatter and the "
             f"branch outputs, which all of them send alike).", "",
             "| policy | bytes exchanged / image | vs model parallelism | held-out accuracy |",
             "|---|---:|---:|---:|"]
    for t, v in res.get("retrained", {}).items():
        name = "LCP (no exchange)" if not t else (f"model parallelism `{t}`" if t == mp
                                                  else f"`{t}`")
        lines.append(f"| {name} | {v['bytes']} | {0.0 - 100 * v['reduction_vs_mp']:+.1f} % | "
                     f"{100 * v['test_accuracy']:.1f} % |")
    tgt = res.get("target", {})
    ret = res.get("retrained", {})
    mp_acc = ret.get(mp, {}).get("test_accuracy", 1.0)
    met = [t or "LCP (no exchange)" for t, v in ret.items() if t != mp
           and v["reduction_vs_mp"] >= tgt.get("reduction", 1)
           and v["test_accuracy"] >= mp_acc - tgt.get("max_drop", 0)]
    lines += ["", f"Target (arXiv 2111.02489): at least {100 * tgt.get('reduction', 0):.1f} % "
              f"fewer bytes than exchange-after-every-layer within "
              f"{100 * tgt.get('max_drop', 0):.0f} point of its held-out accuracy: "
              + (f"met by {', '.join(f'`{m}`' for m in met)}." if met else "not met."), "",
              f"![exchange-point search]({rel})"]
    return lines


def markdown(results_dir, runs=Path("runs")) -> str:
    results_dir = Path(results_dir)
    lines = []
    bench = _json(results_dir / "cluster-mp" / "bench.json")
    if bench is None:
        lines.append(f"_Not measured yet: `{BENCH_CMD}` writes `results/cluster-mp/bench.json`._")
    else:
        lines += [f"Command: `{BENCH_CMD}`. Bytes per inference counted by the kernel "
                  "(TCP payload of every data-plane socket, Dask framing included), sequential "
                  "single-image requests; model parallelism serves the original network with "
                  "every layer's output channels divided over the nodes and an all-gather "
                  "before every layer that needs the whole tensor.", "",
                  "| family | split / nodes | model parallelism B/inf | LCP B/inf | "
                  "LCP vs model parallelism | paper | every answer = golden |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        rows = mp_vs_lcp(bench)
        for r in rows:
            if r.get("exchange"):
                continue
            lines.append(f"| {r['family']} | {r['split']} | {r['mp_bytes']:,.0f} | "
                         f"{r['lcp_bytes']:,.0f} | {-100 * r['reduction']:+.1f} % | "
                         f"{-100 * r['paper']:+.0f} % | {'yes' if r['exact'] else 'NO'} |")
        for r in rows:
            if r.get("exchange"):
                lines.append(f"\n{r['family']} split4 with exchange points (`exchange` "
                             f"strategy, node to node): {r['bytes']:,.0f} B/inf, answers "
                             f"{'equal to golden' if r['exact'] else 'NOT equal to golden'}.")
    for arch, title in SEARCHES:
        res = _json(results_dir / "search" / f"{arch}-split4" / "pareto.json")
        lines += ["", f"**Exchange-point search, {title}.**", ""]
        if res is None or "retrained" not in res:
            lines.append(f"_Search not run yet: `{SEARCH_CMD.format(arch=arch)}` writes "
                         f"`results/search/{arch}-split4/pareto.json`._")
        else:
            lines += _search_md(res, f"results/search/{arch}-split4/pareto.png")
    return "\n".join(lines)
