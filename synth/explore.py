"""Design-space sweep: folding choices through the cycle/resource model and synthesis.

:func:`explore` asks the hardware generator's folding chooser (:func:`lcp.hw.chooser.choose`)
for the cheapest folding that meets each of a geometric series of latency targets, from the
fastest folding within the budget to the smallest folding (one lane per layer); each distinct
folding is a design point with the model's latency, interval and FPGA resource estimate.
With ``synth`` set, every point is also generated and synthesized (``asic:<library>`` gives
cell area and power from a gate-level simulation; ``xc7z020`` gives Yosys' LUT/FF/DSP/BRAM),
and its report is kept. The Pareto front minimizes latency, area (synthesized when available,
else the LUT estimate) and power (when synthesized).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lcp.hw.build import generate, lower
from lcp.hw.chooser import choose
from lcp.hw.folding import Folding

from .flow import run_synth
from .tools import SynthError

__all__ = ["explore", "pareto", "plot_explore", "save"]


def pareto(points: list[dict], keys: tuple[str, ...]) -> list[bool]:
    """Which points no other point dominates (no worse in every key, better in one); points
    with a ``None`` in a key are compared on the other keys only when all points lack it."""
    use = [k for k in keys if all(p.get(k) is not None for p in points)]
    flags = []
    for p in points:
        dom = False
        for q in points:
            if q is p:
                continue
            if all(q[k] <= p[k] for k in use) and any(q[k] < p[k] for k in use):
                dom = True
                break
        flags.append(not dom)
    return flags


def explore(model, *, budget: str | None = "xc7z020", scope: str = "branch", index: int = 0,
            points: int = 6, synth: str | None = None, clock_mhz: float = 100.0,
            pdk_dir=None, images: int = 1, workdir: Path, log=print) -> dict:
    """Sweep foldings of ``model`` and return the design points and their Pareto front.

    Parameters
    ----------
    model : the IR model.
    budget : device budget of the chooser (``xc7z020``), or ``None`` for no resource cap.
    scope, index : ``branch`` (branch ``index`` alone) or ``core`` (whole model).
    points : latency targets tried (distinct foldings may be fewer).
    synth : ``None``, ``xc7z020`` or ``asic:osu018`` / ``asic:asap7``.
    clock_mhz : ASIC target clock.
    workdir : builds and reports go here (``point<k>/``).

    Returns
    -------
    dict with ``points`` (latency and interval in cycles, estimate, folding, synthesized
    figures, ``pareto`` flag), ``objectives`` and the run's settings.

    Raises
    ------
    IRError : the chooser cannot fold the model within the budget.
    SynthError : bad ``synth``.
    """
    if points < 2:
        raise SynthError("--points must be at least 2")
    if synth is not None and synth != "xc7z020" and not synth.startswith("asic:"):
        raise SynthError(f"--synth must be xc7z020 or asic:<library>, not {synth!r}")
    t_start = time.perf_counter()
    workdir = Path(workdir)
    fast = choose(model, budget=budget, scope=scope, index=index) if budget else None
    small = lower(model, Folding({}), scope, index).timing()
    lo = fast.latency if fast else max(1, small.latency // 64)
    hi = small.latency
    targets = sorted({int(round(lo * (hi / lo) ** (k / (points - 1)))) for k in range(points)})
    seen = {}
    for t in targets:
        c = choose(model, target=t, budget=budget, scope=scope, index=index)
        key = c.folding.digest()
        if key not in seen:
            seen[key] = c
            log(f"target {t:>9,} cycles -> latency {c.latency:,}, interval {c.interval:,}, "
                f"estimate {c.resources.to_json()}")
    chosen = sorted(seen.values(), key=lambda c: c.latency)
    out_points = []
    for k, c in enumerate(chosen):
        p = {"latency_cycles": c.latency, "interval_cycles": c.interval,
             "estimate": c.resources.to_json(), "folding": c.folding.to_json()["layers"],
             "target_met": c.met}
        if synth is not None:
            d = workdir / f"point{k}"
            generate(model, d, folding=c.folding, scope=scope, index=index)
            if synth == "xc7z020":
                rep, j = run_synth(d, fpga="xc7z020", out=d / "synth", plots=False)
                t = rep["totals"]
                p.update(lut=t["lut"], ff=t["ff"], dsp=t["dsp"], bram36=t["bram36"],
                         report=str(j))
            else:
                rep, j = run_synth(d, asic=synth.split(":", 1)[1], clock_mhz=clock_mhz,
                                   pdk_dir=pdk_dir, images=images, out=d / "synth",
                                   plots=False)
                t = rep["totals"]
                p.update(area_mm2=t["area_mm2"], power_mw=(t["total_w"] * 1e3
                                                           if t["total_w"] is not None else None),
                         energy_nj=t["energy_nj"], fmax_mhz=t["fmax_mhz"],
                         latency_us=t["latency_us"], report=str(j))
            log(f"point {k}: latency {c.latency:,} cycles, synthesized "
                + ", ".join(f"{x}={p[x]:.4g}" for x in ("area_mm2", "power_mw", "lut")
                            if p.get(x) is not None))
        out_points.append(p)
    if synth is None or synth == "xc7z020":
        area_key = "lut" if synth else "est_lut"
        for p in out_points:
            p.setdefault("est_lut", p["estimate"]["lut"])
        objectives = ("latency_cycles", area_key)
    else:
        objectives = ("latency_cycles", "area_mm2", "power_mw")
    for p, f in zip(out_points, pareto(out_points, objectives)):
        p["pareto"] = f
    return {"format": "lcp-explore", "version": 1, "model": model.name, "scope": scope,
            "branch": index if scope == "branch" else None, "budget": budget,
            "synth": synth, "clock_mhz": clock_mhz if synth and synth.startswith("asic") else None,
            "targets": targets, "objectives": list(objectives), "points": out_points,
            "wall_time_s": round(time.perf_counter() - t_start, 1)}


def plot_explore(result: dict, path: str | Path) -> Path:
    """PNG: latency vs area (and power as colour when synthesized), Pareto front marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    akey = result["objectives"][1]
    label = {"est_lut": "LUT (cycle/resource model estimate)", "lut": "LUT (Yosys, XC7Z020)",
             "area_mm2": "cell area (mm2)"}[akey]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [p["latency_cycles"] for p in pts]
    ys = [p[akey] for p in pts]
    if "power_mw" in result["objectives"] and all(p.get("power_mw") is not None for p in pts):
        sc = ax.scatter(xs, ys, c=[p["power_mw"] for p in pts], cmap="viridis", zorder=3)
        fig.colorbar(sc, ax=ax, label=f"power at {result['clock_mhz']:g} MHz (mW)")
    else:
        ax.scatter(xs, ys, color="tab:blue", zorder=3)
    front = sorted((x, y) for x, y, p in zip(xs, ys, pts) if p["pareto"])
    if front:
        ax.step([f[0] for f in front], [f[1] for f in front], where="post", color="tab:red",
                label="Pareto front")
        ax.legend()
    ax.set_xscale("log")
    if min(ys) > 0 and max(ys) / max(min(ys), 1e-12) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("latency (cycles, first input word to last output word)")
    ax.set_ylabel(label)
    what = f"branch {result['branch']}" if result["scope"] == "branch" else "LCP core"
    ax.set_title(f"{result['model']} {what}: folding choices")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``explore.json`` and ``explore.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = out / "explore.json"
    j.write_text(json.dumps(result, indent=1))
    return j, plot_explore(result, out / "explore.png")

