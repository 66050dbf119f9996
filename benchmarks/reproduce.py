"""REPRODUCTION.md: our measured figures next to the published ones (../shared/ANCHORS.md).

Every figure of ours in the file is computed by this module from the repository on the same
commit: counters from the IR of each zoo model, accuracies from the training runs (trained, or
reused from the run cache), and the benchmark sections from the JSON results that
``make bench`` writes (each section says which command produced it). The published figures are
the reference values transcribed from the papers, marked as such.

Parts of the project add sections by listing a ``markdown(results_dir, runs) -> str`` function
in :data:`SECTIONS`.
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import subprocess
import tempfile
import warnings
from pathlib import Path

from lcp import compile_onnx, ir
from lcp.counters import count
from lcp.sw.cluster.report import headline_lines

__all__ = ["zoo_counts", "counters_markdown", "imagenet_markdown", "SECTIONS",
           "write_reproduction", "refresh_sections", "update_readme_figures", "readme_block"]

#: Published reference figures (LCP paper, Hadidi et al.), for the comparison columns.
PAPER = {
    "resnet50_imagenet": {"params": 22.8e6, "macs": 4.87e9, "split8_f40_params": 8.6e6,
                          "split8_f40_macs": 1.18e9},
    "vgg16_imagenet": {"params": 138e6, "macs": 15.5e9, "split8_f40_params": 33.8e6,
                       "split8_f40_macs": 3.87e9},
    "resnet18_imagenet": {"params": 11.69e6, "split8_params": 1.93e6},
    # "f30/f40 models: on average 4.61-3.81x fewer parameters, 2.95-2.5x fewer MACs"
    "f40_avg_param_reduction": 3.81, "f40_avg_mac_reduction": 2.5,
}

#: The architectures' own published counts (params, MACs, source) for the ImageNet-sized zoo.
PUBLISHED = {
    "vgg16_imagenet": (138e6, 15.5e9, "Simonyan & Zisserman 2014"),
    "resnet50_imagenet": (25.6e6, 4.1e9, "torchvision resnet50"),
    "resnet18_imagenet": (11.69e6, 1.82e9, "torchvision resnet18"),
    "mobilenet_v1_imagenet": (4.2e6, 569e6, "Howard et al. 2017, 1.0-224"),
}

ZOO_ARCHS = ("lenet5", "lenet_fc", "cifarnet", "vgg_s", "alexnet", "resnet18", "vgg16",
             "resnet50", "mobilenet_v1")
VARIANTS = ((1, 0), (2, 0), (4, 0), (8, 0), (8, 40))
#: The zoo at the paper's ImageNet size (224x224, 1000 classes), for the published figures.
IMAGENET_ARCHS = ("vgg16_imagenet", "resnet50_imagenet", "resnet18_imagenet",
                  "mobilenet_v1_imagenet")
IMAGENET_VARIANTS = ((1, 0), (8, 0), (8, 40))


def zoo_counts(archs=ZOO_ARCHS, variants=VARIANTS, bits=(4, 4), cache: Path | None = None,
               progress=None) -> list[dict]:
    """Counters of every zoo ``arch`` at every ``(split, widen)``, from the compiled IR.

    Models get deterministic random weights (seed 0); counters do not depend on weight
    values except the accumulator widths. IRs are cached in ``cache`` by name.
    """
    import torch

    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    from lcp.models import build, export_qonnx, model_name

    rows = []
    for arch in archs:
        for split, widen in variants:
            name = model_name(arch, split, widen, *bits)
            path = cache / f"{name}.json" if cache else None
            if path is not None and path.exists():
                model = ir.load(path)
            else:
                torch.manual_seed(0)
                net = build(arch, split=split, widen=widen, weight_bits=bits[0],
                            act_bits=bits[1])
                with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = compile_onnx(export_qonnx(net, Path(d) / f"{name}.onnx"), name=name)
                if path is not None:
                    ir.save(model, path)
            c = count(model)
            rows.append({"arch": arch, "split": split, "widen": widen, "name": name,
                         "params": c.params, "macs": c.macs, "param_bytes": c.param_bytes,
                         "traffic_bytes": c.traffic_bytes,
                         "peak_activation_bytes": c.peak_activation_bytes,
                         "peak_activation_bytes_single": c.peak_activation_bytes_single,
                         "branch_macs": max(g.macs for g in c.graphs[:-1]) if c.graphs[:-1]
                         else 0})
            if progress:
                progress(name)
    return rows


def _h(n: float) -> str:
    for unit, k in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= k:
            return f"{n / k:.2f}{unit}"
    return f"{n:.0f}"


def counters_markdown(rows: list[dict]) -> str:
    by = {(r["arch"], r["split"], r["widen"]): r for r in rows}
    out = ["| model | variant | params | MACs | params vs split1 | MACs vs split1 | "
           "largest branch MACs | traffic / inference (bytes) | peak act. bytes / device |",
           "|---|---|---|---|---|---|---|---|---|"]
    reductions = []
    for r in rows:
        base = by.get((r["arch"], 1, 0))
        var = f"split{r['split']}" + (f"-f{r['widen']}" if r["widen"] else "")
        pr = base["params"] / r["params"] if base else float("nan")
        mr = base["macs"] / r["macs"] if base else float("nan")
        if r["split"] == 8 and r["widen"] == 40:
            reductions.append((r["arch"], pr, mr))
        out.append(f"| {r['arch']} | {var} | {_h(r['params'])} | {_h(r['macs'])} | "
                   f"{pr:.2f}x | {mr:.2f}x | {_h(r['branch_macs'])} | {r['traffic_bytes']:,} | "
                   f"{r['peak_activation_bytes']:,} |")
    text = "\n".join(out)
    if reductions:
        gp = math.exp(sum(math.log(p) for _, p, _ in reductions) / len(reductions))
        gm = math.exp(sum(math.log(m) for _, _, m in reductions) / len(reductions))
        text += (f"\n\nsplit8-f40 vs the original, geometric mean over {len(reductions)} "
                 f"architectures: **{gp:.2f}x fewer parameters, {gm:.2f}x fewer MACs** "
                 f"(paper, f40 average over its models: {PAPER['f40_avg_param_reduction']}x "
                 f"and {PAPER['f40_avg_mac_reduction']}x).")
    return text


def imagenet_markdown(rows: list[dict]) -> str:
    """The ImageNet-sized rows next to the published figures: the architectures' own
    (:data:`PUBLISHED`, split1) and the LCP paper's (:data:`PAPER`)."""
    out = ["| model | variant | params | published params | MACs | published MACs |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        var = f"split{r['split']}" + (f"-f{r['widen']}" if r["widen"] else "")
        pub, paper = PUBLISHED.get(r["arch"]), PAPER.get(r["arch"], {})
        key = "" if r["split"] == 1 and not r["widen"] else f"{var.replace('-', '_')}_"
        cells = []
        for what, idx in (("params", 0), ("macs", 1)):
            refs = []
            if pub and not key:
                refs.append(f"{_h(pub[idx])} ({pub[2]}, {100 * (r[what] / pub[idx] - 1):+.1f} %)")
            if f"{key}{what}" in paper:
                ref = paper[f"{key}{what}"]
                refs.append(f"{_h(ref)} (LCP paper, {100 * (r[what] / ref - 1):+.1f} %)")
            cells.append("; ".join(refs) or "-")
        out.append(f"| {r['arch']} | {var} | {_h(r['params'])} | {cells[0]} | {_h(r['macs'])} | "
                   f"{cells[1]} |")
    return "\n".join(out)


#: Why the LCP paper's ResNet-50 figures are not torchvision's (tests: test_models_zoo_counts).
RESNET50_NOTE = (
    "The LCP paper's ResNet-50 original, 22.8M parameters / 4.87G MACs, is not torchvision's "
    "25.6M / 4.1G: it is what the same network gives with the four 1x1 projection-shortcut "
    "convs left out of the count and the MACs taken at a 256x256 input (22.76M / 4.871G; the "
    "only combination of stride placement, shortcuts, classifier, bias/BatchNorm parameters, "
    "elementwise operations and input size 224-320 that reaches both figures within 0.3 %). "
    "Its split8-f40 figures, 8.6M / 1.18G, are those of the full network at 224x224, so the "
    "paper's 2.65x / 4.13x reductions compare two countings; on one counting they are "
    "2.92x / 3.45x.")


#: (title, "module:function") of the sections after the counters, in order.
SECTIONS = [
    ("Accuracy (MNIST, held-out 1,000 images)", "lcp.benchmarks.accuracy:markdown"),
    ("Golden reference speed", "lcp.benchmarks.bench:markdown"),
    ("Branch engine (cycles, cocotb + Verilator)", "lcp.benchmarks.hw:markdown"),
    ("The LCP paper's FPGA latency table (cycle models, XC7Z020)",
     "lcp.benchmarks.paper_table:markdown"),
    ("224x224 ImageNet models on the XC7Z020 (lcp compile --budget)",
     "lcp.benchmarks.imagenet224:markdown"),
    ("Synthesis (FPGA and ASIC)", "lcp.benchmarks.synth:markdown"),
    ("PYNQ driver on the simulated hardware", "lcp.benchmarks.pynq:markdown"),
    ("Distributed inference", "lcp.sw.cluster.report:markdown"),
    ("Cluster simulator, the paper's Raspberry Pi cluster, dynamic placement",
     "lcp.sw.cluster.simreport:markdown"),
    ("Model parallelism, LCP and the exchange-point search", "lcp.sw.cluster.xreport:markdown"),
]


def _section(target: str, results: Path, runs: Path) -> str:
    module, _, fn = target.partition(":")
    try:
        func = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError):
        return "_Not available in this build._"
    return func(results, runs)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_reproduction(out: Path, results: Path, runs: Path, cache: Path | None = None,
                       progress=None) -> str:
    """Write REPRODUCTION.md to ``out`` and return its text."""
    rows = zoo_counts(cache=cache, progress=progress)
    big = zoo_counts(IMAGENET_ARCHS, IMAGENET_VARIANTS, cache=cache, progress=progress)
    results.mkdir(parents=True, exist_ok=True)
    (results / "counters.json").write_text(json.dumps(rows + big, indent=1))
    parts = [
        "# Reproduction: our figures next to the published ones",
        "",
        f"Generated by `lcp reproduce` (`make reproduce`) on commit `{_commit()}`, "
        f"{datetime.date.today().isoformat()}. Published figures come from "
        "../shared/ANCHORS.md (LCP: Hadidi et al., arXiv 2003.06464; FINN; DEFER); every other "
        "figure is computed by the command named in its section.",
        "",
        "## Parameters, MACs and traffic (from the integer IR, `lcp.counters`)",
        "",
        "Our zoo at 4-bit weights and activations, every variant compiled from its QONNX export "
        "(`lcp.benchmarks.reproduce.zoo_counts`). CIFAR-sized architectures (CifarNet, VGG-S-like, "
        "AlexNet-like, ResNet-18, VGG16, ResNet-50, MobileNet-v1) have no data here: random "
        "weights, counts only, never an accuracy. Traffic = the 8-bit input sent to every "
        "branch + every branch's low-bit output sent to the merge. These are sized for 32x32 "
        "inputs and 10 classes (VGG-S and AlexNet with 1024-wide FCs, VGG16 with 512-wide "
        "ones); the ImageNet-sized versions follow.",
        "",
        counters_markdown(rows),
        "",
        "### ImageNet-sized (224x224, 1000 classes) next to the published figures",
        "",
        "The same counters on `*_imagenet` (`lcp.benchmarks.reproduce.IMAGENET_ARCHS`), next to "
        "each architecture's published count and the LCP paper's.",
        "",
        imagenet_markdown(big),
        "",
        counters_markdown(big),
        "",
        RESNET50_NOTE,
        "",
        "Published (ImageNet): ResNet-50 22.8M params / 4.87G MACs -> split8-f40 8.6M / 1.18G "
        "(2.65x / 4.13x fewer); VGG16 138M / 15.5G -> 33.8M / 3.87G (4.08x / 4.01x); "
        "ResNet-18 11.69M -> split8 1.93M (6.06x).",
    ]
    for title, target in SECTIONS:
        parts += ["", f"## {title}", "", _section(target, results, runs)]
    text = "\n".join(parts) + "\n"
    out.write_text(text)
    return text


def refresh_sections(out: Path, titles: list[str], results: Path, runs: Path) -> list[str]:
    """Re-render the :data:`SECTIONS` whose title starts with one of ``titles`` in the
    REPRODUCTION.md at ``out``, in place, and note the commit they were rendered on; the rest of
    the file (the zoo's counters, the other sections) stays as its last full run wrote it.
    A section the file does not have yet (one added to :data:`SECTIONS` since) is inserted in its
    place. Returns the titles refreshed; a title that matches no section raises ``ValueError``."""
    text = out.read_text()
    done = []
    for want in titles:
        hits = [(t, target) for t, target in SECTIONS if t.startswith(want)]
        if len(hits) != 1:
            raise ValueError(f"{want!r} names {len(hits)} sections of "
                             f"{[t for t, _ in SECTIONS]}")
        title, target = hits[0]
        head = f"## {title}\n"
        if head not in text:
            text = _insert_heading(text, title, out)
        before, rest = text.split(head, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        body = _section(target, results, runs)
        text = (f"{before}{head}\n_Section re-rendered on commit `{_commit()}`, "
                f"{datetime.date.today().isoformat()} (`lcp reproduce --section`)._\n\n"
                f"{body}\n\n{tail}")
        done.append(title)
    out.write_text(text)
    return done


def _insert_heading(text: str, title: str, out: Path) -> str:
    """``text`` with an empty ``## title`` placed where a full run puts it: before the first
    section that follows it in :data:`SECTIONS` and is already in the file (else at the end)."""
    titles = [t for t, _ in SECTIONS]
    for later in titles[titles.index(title) + 1:]:
        at = text.find(f"\n## {later}\n")
        if at >= 0:
            return f"{text[:at + 1]}## {title}\n\n{text[at + 1:]}"
    if not any(f"## {t}\n" in text for t in titles):
        raise ValueError(f"{out}: no section of {titles} (run a full lcp reproduce)")
    return f"{text.rstrip()}\n\n## {title}\n"


def update_readme_figures(readme: Path, block: str) -> None:
    """Replace the text between the README's figure markers with ``block``."""
    begin, end = "<!-- figures:begin -->", "<!-- figures:end -->"
    text = readme.read_text()
    if begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{block.strip()}\n{end}{tail}")


def _json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def readme_block(results: Path, runs: Path) -> str:
    """Headline figures for the README (from the same JSON files as REPRODUCTION.md); a line
    per figure that has been measured, the command that measures it otherwise."""
    results, runs = Path(results), Path(runs)
    lines = [f"Headline figures (commit `{_commit()}`, regenerated by `make reproduce`; details "
             "and the published figures in REPRODUCTION.md):", ""]
    acc = _json(results / "accuracy.json")
    if acc:
        cells = {(r["arch"], r["split"]): r["accuracy"] for r in acc}
        for arch in sorted({r["arch"] for r in acc}):
            row = ", ".join(f"{'original' if s == 1 else f'split{s}'} {100 * a:.1f} %"
                            for (a_, s), a in sorted(cells.items()) if a_ == arch)
            lines.append(f"- {arch} w4a4, MNIST held-out accuracy: {row}")
    g = _json(results / "golden_bench.json")
    if g:
        lines.append(f"- golden reference, LeNet-5 split4 batch {g['batch']}: "
                     f"{g['golden_images_per_second']:,.0f} images/s vs Brevitas "
                     f"{g['brevitas_images_per_second']:,.0f} (ratio {g['ratio']:.2f})")
    hw = _json(results / "hw_bench.json")
    if hw:
        for r in hw["rows"]:
            if r["model"].startswith(("cifarnet_split8", "lenet5_split4")):
                lines.append(f"- {r['model']} ({r['folding_goal']}): latency "
                             f"{r['latency_cycles_sim']:,} cycles, interval "
                             f"{r['interval_cycles_sim']:,} cycles (simulated; model "
                             f"{r['latency_cycles_model']:,} / {r['interval_cycles_model']:,}), "
                             f"bit-exact {'yes' if r['bit_exact'] else 'NO'}")
    for path in sorted(runs.glob("synth/*/synth_*.json")):
        rep = _json(path)
        if not rep or not path.parent.name.startswith(("cifarnet_split8", "lenet5_split4")):
            continue
        t, case, wall = rep["totals"], path.parent.name, rep.get("wall_time_s")
        took = f" (`lcp synth` {wall:.0f} s)" if wall else ""
        if rep["kind"] == "asic":
            pw = "n/a" if t.get("total_w") is None else f"{1e3 * t['total_w']:.2f} mW"
            lines.append(f"- {case} on {rep['target']} at {rep['clock_mhz']:g} MHz: "
                         f"{t['area_mm2']:.4f} mm2 cell area, {pw}, Fmax "
                         f"{t['fmax_mhz'] or float('nan'):.0f} MHz, latency "
                         f"{t['latency_us'] or float('nan'):.2f} us, "
                         f"{t['energy_nj'] or float('nan'):.1f} nJ per inference{took}")
        elif rep["target"] == "xc7z020":
            lines.append(f"- {case} on XC7Z020 (Yosys): {t['lut']:,} LUT, {t['ff']:,} FF, "
                         f"{t['dsp']} DSP48, {t['bram36']} BRAM36{took}")
        elif rep["target"] == "ecp5":
            fm = "not placed" if t.get("fmax_mhz") is None else f"{t['fmax_mhz']:.1f} MHz"
            lines.append(f"- {case} on ECP5 {t.get('device') or ''}: post-route Fmax {fm}{took}")
    py = _json(results / "pynq_sim.json")
    if py and py.get("rows"):
        r = max(py["rows"], key=lambda r: r["batch"])
        lines.append(f"- PYNQ driver on the simulated board, batch {r['batch']}: "
                     f"{r['images_per_second']:.1f} images/s (simulation), driver overhead "
                     f"{1e3 * r['overhead_per_call']:.2f} ms per call")
    cl = None
    for p in (results / "cluster" / "bench.json", runs / "cluster-emulate" / "bench.json"):
        cl = _json(p)
        if cl:
            break
    if cl:
        lines += headline_lines(cl)
    if len(lines) == 2:
        lines.append("- nothing measured yet: run `make bench`, then `make reproduce`")
    return "\n".join(lines)
