"""Hardware benchmarks (``make bench``): per model, the simulated latency (first input word to
last output word) and initiation interval in cycles, the cycle model's estimate next to them,
the simulator's images/s (Verilator + cocotb), and the resource estimate.

Models: the anchor target (one CifarNet-split8 branch, 4-bit weights and activations, random
weights calibrated on random images, folded for the XC7Z020 budget), LeNet-5 split4 w4a4 as one
LCP core (the trained run if ``RUNS/lenet5_split4_w4a4/model.onnx`` exists, else random
weights), and without ``--quick`` more zoo models. Random-weight models have no accuracy figure.
Then FINN's own networks (``bnn_pynq`` TFC-w2a2 and CNV-w2a2 from Brevitas' example zoo, random
weights, :mod:`lcp.models.peers`) as one core at the XC7Z020 budget, next to the FINN figures of
ANCHORS.md (:data:`FINN`).

``python -m lcp.benchmarks.hw [--quick | --peers] [--runs runs] [--results results]`` or
``lcp hw-bench`` (``lcp bench --only hw``):
prints one line per model and writes ``RESULTS/hw_bench.json``, which :func:`markdown` renders
for REPRODUCTION.md (``--peers`` replaces only the peer rows of an existing file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lcp import compile_onnx, load, save
from lcp.benchmarks.sim_demo import find_model
from lcp.golden import Golden
from lcp.cache import build_once, cache_root
from lcp.hw.build import cached_build, model_macs
from lcp.hw.chooser import choose
from lcp.hw.sim import VerilatorSim
from lcp.ir import IRError

__all__ = ["BenchCase", "zoo_name", "zoo_model", "peer_model", "bench_case", "run_bench",
           "markdown", "main", "CASES", "QUICK", "PEER_CASES", "FINN", "BENCH_FILE"]

#: File the benchmark writes into the results folder.
BENCH_FILE = "hw_bench.json"
#: Published figures for the CifarNet-split8 branch (../shared/ANCHORS.md).
ANCHOR = {"finn_latency_cycles": 26_912, "finn_interval_cycles": 3_200,
          "lcp_paper_latency_cycles": 20_000, "target_latency_cycles": 2_000}


#: FINN on the bnn_pynq peers (ANCHORS.md). ``xc7z020``: finn-plus 1.6.1 analytical estimates
#: for the Pynq-Z1 part (XC7Z020) at 100 MHz, largest folding that fits (critical path = the sum
#: of every layer's cycles); ``examples``: finn-examples' own Pynq-Z1 foldings (estimates);
#: ``measured``: finn-examples measured on an AUP-ZU3 board (a different, larger board).
FINN = {
    "tfc_2w2a": {"xc7z020": {"lut": 52_980, "latency_cycles": 120, "interval_cycles": 20},
                 "examples": {"lut": 17_828, "latency_cycles": 252, "interval_cycles": 64},
                 "measured": {"board": "AUP-ZU3", "images_per_second": 1_193_598}},
    "cnv_2w2a": {"xc7z020": {"lut": 41_819, "latency_cycles": 442_296,
                             "interval_cycles": 33_020},
                 "examples": {"lut": 20_090, "latency_cycles": 730_166,
                              "interval_cycles": 115_200},
                 "measured": {"board": "AUP-ZU3", "images_per_second": 3_031}},
}


@dataclass(frozen=True)
class BenchCase:
    """One benchmark: a zoo model (``arch``, ``split``, bits) or a peer network (``peer``, a
    name of :data:`lcp.models.peers.PEERS`), the scope and the folding goal."""

    arch: str
    split: int
    bits: int = 4
    scope: str = "core"          # "core" or "branch" (branch 0)
    budget: str | None = "xc7z020"
    target: int | None = None
    images: int = 6
    peer: str | None = None

    @property
    def name(self) -> str:
        if self.peer:
            return f"{self.peer} (bnn_pynq) core"
        s = f"{self.arch}_split{self.split}_w{self.bits}a{self.bits}"
        return s + (" branch0" if self.scope == "branch" else " core")


#: The anchor target first, then the demo model, then more of the zoo.
CASES = [
    BenchCase("cifarnet", 8, scope="branch", budget="xc7z020", images=6),
    BenchCase("lenet5", 4, scope="core", budget="xc7z020", images=20),
    BenchCase("lenet5", 8, scope="core", budget="xc7z020", images=20),
    BenchCase("lenet5", 1, scope="core", budget="xc7z020", images=10),
    BenchCase("lenet_fc", 4, scope="core", budget="xc7z020", images=20),
    BenchCase("cifarnet", 4, scope="branch", budget="xc7z020", images=4),
]
#: FINN's networks at the XC7Z020 budget, next to :data:`FINN`.
PEER_CASES = [
    BenchCase("tfc", 1, bits=2, peer="tfc_2w2a", images=6),
    BenchCase("cnv", 1, bits=2, peer="cnv_2w2a", images=3),
]
CASES += PEER_CASES
QUICK = CASES[:2] + PEER_CASES


def zoo_name(arch: str, split: int, bits: int = 4, seed: int = 0, widen: int = 0,
             in_shape: tuple[int, ...] | None = None) -> str:
    """Cache name of a :func:`zoo_model` (its folder and its ``.onnx`` file's stem)."""
    return (f"{arch}_split{split}" + (f"_f{widen}" if widen else "")
            + ("_in" + "x".join(str(d) for d in in_shape) if in_shape else "")
            + f"_w{bits}a{bits}_seed{seed}")


def zoo_model(arch: str, split: int, bits: int = 4, seed: int = 0, cache: Path | None = None,
              widen: int = 0, in_shape: tuple[int, ...] | None = None):
    """IR of a zoo model with random weights (torch seed ``seed``), activation scales calibrated
    on random images; kept in the build cache (:func:`lcp.cache.build_once`). ``widen`` and
    ``in_shape`` as in :func:`lcp.models.build` (default: none, the arch's own input)."""
    name = zoo_name(arch, split, bits, seed, widen, in_shape)

    def build_ir(folder: Path):
        import torch

        # late: lcp.models pulls in torch and Brevitas, which only this path needs
        from lcp.models import build, calibrate, example_input, export_qonnx
        torch.manual_seed(seed)
        net = build(arch, split=split, weight_bits=bits, act_bits=bits, widen=widen,
                    in_shape=in_shape)
        calibrate(net, [example_input(net.in_shape, 8, seed=s) for s in range(2)])
        save(compile_onnx(export_qonnx(net, folder / f"{name}.onnx")), folder / name)
        return load(folder / name)

    return build_once(Path(cache) if cache is not None else cache_root() / "zoo", name,
                      build_ir, lambda folder: load(folder / name))


def peer_model(name: str, seed: int = 0, cache: Path | None = None):
    """IR of peer network ``name`` (random weights, seeded), exported once into the cache."""
    # late: the peer zoo pulls in torch and Brevitas, which only this path needs
    from lcp.models.peers import export_peer
    root = Path(cache) if cache is not None else cache_root() / "peers"
    return compile_onnx(export_peer(name, root, seed=seed))


def _trained(runs: Path, arch: str, split: int, bits: int):

    try:
        p = find_model(runs / f"{arch}_split{split}_w{bits}a{bits}" / "model.onnx")
    except IRError:
        return None, False
    return compile_onnx(p), True


def bench_case(case: BenchCase, runs: Path = Path("runs"), out=print) -> dict:
    """Build, simulate and measure one case; return its row."""
    model, trained = (None, False)
    if case.arch == "lenet5" and case.split == 4:
        model, trained = _trained(runs, case.arch, case.split, case.bits)
    if case.peer:
        model = peer_model(case.peer)
    elif model is None:
        model = zoo_model(case.arch, case.split, case.bits)
    t0 = time.time()
    choice = choose(model, budget=case.budget, target=case.target, scope=case.scope)
    choose_s = time.time() - t0
    b = cached_build(model, choice.folding, scope=case.scope)
    sim = VerilatorSim(b)
    compile_s = sim.compile()
    rng = np.random.default_rng(0)
    if model.input.bipolar:
        xq = 2 * rng.integers(0, 2, size=(case.images, *model.input.shape)) - 1
    else:
        xq = rng.integers(model.input.lo, model.input.hi + 1,
                          size=(case.images, *model.input.shape))
    gold = (Golden(model).run_int(xq) if case.scope == "core"
            else Golden(model).run_branch(0, xq))
    res = sim.run(xq, expected=gold)
    exact = bool(np.array_equal(res.outputs, gold))
    lat, ivl = res.latency, res.interval
    row = {
        "model": case.name, "weights": "trained" if trained else "random",
        "macs_per_image": model_macs(model, case.scope),
        "folding_goal": case.budget or f"target {case.target}",
        "folding": choice.folding.to_json()["layers"],
        "latency_cycles_sim": lat, "latency_cycles_model": b.timing.latency,
        "interval_cycles_sim": ivl, "interval_cycles_model": b.timing.interval,
        "latency_model_error_pct": round(100 * (b.timing.latency - lat) / lat, 2) if lat else None,
        "interval_model_error_pct": (round(100 * (b.timing.interval - ivl) / ivl, 2)
                                     if ivl else None),
        "bit_exact": exact, "images": case.images,
        **({"finn": FINN[case.peer]} if case.peer in FINN else {}),
        "sim_images_per_second": round(res.images_per_second, 2),
        "resources_estimate": b.resources.to_json(),
        "seconds": {"choose": round(choose_s, 1), "verilator_compile": round(compile_s, 1),
                    "simulate": round(res.wall_seconds, 1)},
    }
    out(_fmt_row(row))
    return row


def _fmt_row(r: dict) -> str:
    res = r["resources_estimate"]
    return (f"{r['model']:<34} latency {r['latency_cycles_sim']:>7} cyc (model "
            f"{r['latency_cycles_model']:>7}, {r['latency_model_error_pct']:+.2f} %)  "
            f"II {r['interval_cycles_sim']:>7} cyc (model {r['interval_cycles_model']:>7})  "
            f"exact={r['bit_exact']}  sim {r['sim_images_per_second']:.1f} img/s  "
            f"est. {res['lut']} LUT {res['ff']} FF {res['dsp']} DSP {res['bram36']} BRAM36")


def run_bench(cases=None, runs: Path = Path("runs"), out=print) -> list[dict]:
    """Run ``cases`` (default :data:`CASES`); return the rows."""
    rows = []
    for c in cases or CASES:
        rows.append(bench_case(c, runs, out))
    return rows


def markdown(results_dir, runs=None) -> str:
    """``RESULTS/hw_bench.json`` as markdown for REPRODUCTION.md (a note naming the command
    when the benchmark has not been run)."""
    path = Path(results_dir) / BENCH_FILE
    if not path.exists():
        return (f"_Not measured yet: run `make bench` (or `lcp hw-bench`), which writes "
                f"`{BENCH_FILE}`._")
    r = json.loads(path.read_text())
    lines = [
        f"Produced by `{r.get('command', 'lcp hw-bench')}`. Cycles are simulated in Verilator "
        "(cocotb, AXI4-Stream source always valid, sink always ready): latency from the first "
        "input word to the last output word of one image, interval between the last output "
        "words of consecutive images sent back to back; 'model' is the analytical cycle model "
        "the folding chooser uses. Time figures assume a 100 MHz clock. Resources are the "
        "generator's estimate for a 7-series part (not synthesized). Random-weight models "
        "have no accuracy.",
        "",
        "| model | weights | folding goal | latency (cycles) | model | interval (cycles) | "
        "model | at 100 MHz | est. LUT / FF / DSP / BRAM36 | bit-exact | sim images/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        res = row["resources_estimate"]
        lat, ivl = row["latency_cycles_sim"], row["interval_cycles_sim"]
        lines.append(
            f"| {row['model']} | {row['weights']} | {row['folding_goal']} | {lat:,} | "
            f"{row['latency_cycles_model']:,} | {ivl:,} | {row['interval_cycles_model']:,} | "
            f"{lat / 100:.2f} us, {100e6 / ivl:,.0f} img/s | {res['lut']:,} / {res['ff']:,} / "
            f"{res['dsp']} / {res['bram36']} | {'yes' if row['bit_exact'] else 'NO'} | "
            f"{row['sim_images_per_second']:.1f} |")
    t = next((row for row in r["rows"] if row["model"].startswith("cifarnet_split8")
              and "branch" in row["model"]), None)
    if t is not None:
        lines += ["", f"Target (ANCHORS.md): one CifarNet-split8 branch at the XC7Z020 budget "
                      f"in {t['latency_cycles_sim']:,} cycles (goal <= "
                      f"{ANCHOR['target_latency_cycles']:,}; FINN estimate "
                      f"{ANCHOR['finn_latency_cycles']:,}, LCP paper's HLS design about "
                      f"{ANCHOR['lcp_paper_latency_cycles']:,}), interval "
                      f"{t['interval_cycles_sim']:,} cycles (FINN "
                      f"{ANCHOR['finn_interval_cycles']:,})."]
    peers = [row for row in r["rows"] if "finn" in row]
    if peers:
        again = {row["command"] for row in peers if "command" in row}
        lines += ["", "FINN's own networks (bnn_pynq, random weights) as one LCP core at the "
                      "XC7Z020 budget, next to FINN (ANCHORS.md)"
                      + "".join(f" (rows refreshed by `{c}`)" for c in sorted(again))
                      + ". FINN's XC7Z020 figures are "
                      "finn-plus analytical estimates for the same part (its latency sums every "
                      "layer's cycles); its measured throughput is finn-examples' on an AUP-ZU3, "
                      "a different and larger board: compare orders of magnitude, not digits.",
                  "",
                  "| network | LCP latency (cycles, sim) | LCP interval | LCP est. LUT | "
                  "FINN XC7Z020 latency / interval / LUT | finn-examples Pynq-Z1 latency / "
                  "interval / LUT | finn-examples measured |",
                  "|---|---|---|---|---|---|---|"]
        for row in peers:
            f = row["finn"]
            a, e, mm = f["xc7z020"], f["examples"], f["measured"]
            lines.append(
                f"| {row['model']} | {row['latency_cycles_sim']:,} | "
                f"{row['interval_cycles_sim']:,} | {row['resources_estimate']['lut']:,} | "
                f"{a['latency_cycles']:,} / {a['interval_cycles']:,} / {a['lut']:,} | "
                f"{e['latency_cycles']:,} / {e['interval_cycles']:,} / {e['lut']:,} | "
                f"{mm['images_per_second']:,} img/s ({mm['board']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lcp.benchmarks.hw",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="the target, the demo model and FINN's networks only")
    p.add_argument("--peers", action="store_true", help="FINN's networks only")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--results", type=Path, default=Path("results"),
                   help=f"folder for {BENCH_FILE}")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the rows here")
    a = p.parse_args(argv)
    print("hardware benchmark (100 MHz clock assumed for time figures; cycles are simulated "
          "in Verilator, 'model' is the analytical cycle model)")
    rows = run_bench(PEER_CASES if a.peers else QUICK if a.quick else CASES, a.runs)
    flag = " --peers" if a.peers else " --quick" if a.quick else ""
    doc = {"format": "lcp-hw-bench", "command": "lcp hw-bench" + flag, "rows": rows}
    path = a.results / BENCH_FILE
    if a.peers and path.exists():
        # --peers refreshes FINN's networks' rows and keeps the others of the last full run
        old = json.loads(path.read_text())
        for row in rows:
            row["command"] = "lcp hw-bench --peers"
        names = {row["model"] for row in rows}
        doc = {**old, "rows": [r for r in old["rows"] if r["model"] not in names] + rows}
    a.results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    if a.output is not None:
        a.output.write_text(json.dumps(doc, indent=1))
    ok = all(r["bit_exact"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
