"""Synthesis reports: one JSON document per run, and the tables and plots made from it.

Every flow returns a dict with ``kind`` (``fpga``/``asic``), ``target``, ``totals``, ``groups``
(one entry per submodule of the top: the layer engines under their IR layer name, the stream
plumbing under its own name, ``(top)`` for glue) and ``unmeasured`` (``{"what", "why"}`` for every
figure that is ``None``). :func:`finish` adds the envelope (format, version, branch and layer
roll-ups); :func:`save` writes ``NAME.json`` and ``NAME.txt`` (the table);
:func:`plot_breakdown` draws area and power per layer; :func:`markdown_table` renders reports as
the Markdown tables of README/REPRODUCTION.md.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from rich.table import Table

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "finish", "save", "load", "rich_table",
           "text_table", "summary", "markdown_table", "plot_breakdown", "branch_of", "rollup"]

REPORT_FORMAT = "lcp-synth-report"
REPORT_VERSION = 1

_SUM_KEYS_ASIC = ("area_um2", "seq_area_um2", "cells", "internal_w", "switching_w", "leakage_w",
                  "total_w", "energy_nj")
_SUM_KEYS_FPGA = ("lut", "lut_logic", "lut_memory", "ff", "dsp", "bram36", "carry4")


def branch_of(group: str, layer: str | None = None) -> str:
    """The branch a group belongs to, from the IR's ``b<i>_`` layer prefix (``branch<i>``);
    ``merge`` for the other IR layers, ``(shared)`` for plumbing outside the branches (AXI
    adapters, the input broadcast, the top's glue)."""
    m = re.search(r"(?:^|_)b(\d+)_", group)
    if m:
        return f"branch{m.group(1)}"
    return "merge" if layer else "(shared)"


def rollup(report: dict, by: str = "branch") -> dict[str, dict]:
    """Sum the groups of ``report`` per branch (``by="branch"``) or per IR layer
    (``by="layer"``: plumbing is summed under ``(plumbing)``). ``None`` stays ``None`` when every
    member is ``None``."""
    keys = _SUM_KEYS_ASIC if report["kind"] == "asic" else _SUM_KEYS_FPGA
    out: dict[str, dict] = {}
    for g, v in report.get("groups", {}).items():
        if by == "branch":
            k = branch_of(g, v.get("layer"))
        else:
            k = v.get("layer") or ("(plumbing)" if not g.startswith("(") else g)
        acc = out.setdefault(k, {})
        for key in keys:
            x = v.get(key)
            if x is None:
                acc.setdefault(key, None)
            else:
                acc[key] = (acc.get(key) or 0) + x
    for acc in out.values():
        if "area_um2" in acc and acc["area_um2"] is not None:
            acc["area_mm2"] = acc["area_um2"] * 1e-6
    return out


def finish(report: dict, **extra) -> dict:
    """Add the envelope and the per-branch roll-up to a flow's result (in place; returned)."""
    report.update(extra)
    report = {"format": REPORT_FORMAT, "version": REPORT_VERSION, **report}
    report["branches"] = rollup(report, "branch")
    return report


def save(report: dict, out_dir: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.txt`` (the table) into ``out_dir``; default name
    ``synth_<target>``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or f"synth_{report['target']}"
    j = out / f"{name}.json"
    j.write_text(json.dumps(report, indent=1, default=_json_default))
    t = out / f"{name}.txt"
    t.write_text(text_table(report))
    return j, t


def load(path: str | Path) -> dict:
    """A report written by :func:`save` (checked to be one)."""
    d = json.loads(Path(path).read_text())
    if d.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not an lcp synthesis report")
    return d


def _json_default(x):
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def _fmt(x, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 100):
        return f"{int(x):,}{unit}"
    if isinstance(x, float):
        if x == 0:
            return f"0{unit}"
        mag = math.floor(math.log10(abs(x)))
        d = max(0, digits - 1 - mag)
        return f"{x:,.{d}f}{unit}"
    return f"{x}{unit}"


def _columns(report: dict) -> list[tuple[str, str, float]]:
    """(key, header, scale) of the group table of a report."""
    if report["kind"] == "asic":
        return [("area_um2", "area um2", 1), ("cells", "cells", 1),
                ("internal_w", "internal mW", 1e3), ("switching_w", "switching mW", 1e3),
                ("leakage_w", "leakage uW", 1e6), ("total_w", "total mW", 1e3),
                ("energy_nj", "energy nJ/inf", 1)]
    if report["target"] == "xc7z020":
        return [("lut", "LUT", 1), ("ff", "FF", 1), ("dsp", "DSP48", 1), ("bram36", "BRAM36", 1),
                ("carry4", "CARRY4", 1)]
    return []


def _rows(report: dict) -> list[tuple[str, list[str]]]:
    cols = _columns(report)
    rows = []
    for g, v in sorted(report.get("groups", {}).items(), key=lambda kv: kv[0]):
        name = g if not v.get("layer") or v["layer"] == g else f"{g} ({v['layer']})"
        rows.append((name, [_fmt(None if v.get(k) is None else v[k] * s) for k, _, s in cols]))
    tot = report["totals"]
    rows.append(("TOTAL", [_fmt(None if tot.get(k) is None else tot[k] * s)
                           for k, _, s in cols]))
    return rows


def summary(report: dict) -> list[str]:
    """The report's headline figures as lines of text (then the unmeasured ones)."""
    t = report["totals"]
    lines = [f"{report['design']} ({report['top']}) on {report['target']}"]
    if report["kind"] == "asic":
        lines.append(
            f"area {_fmt(t['area_um2'])} um2 = {_fmt(t['area_mm2'], digits=4)} mm2, "
            f"{_fmt(t['cells'])} cells ({_fmt(t['flops'])} flip-flops)")
        cg = t.get("clock_gating")
        if cg and cg.get("icgs"):
            lines.append(f"clock gating: {_fmt(cg['gated_flops'])} of {_fmt(cg['flops'])} "
                         f"flip-flops behind {_fmt(cg['icgs'])} {cg['cell']}")
        elif cg is not None:
            lines.append("clock gating: none (no integrated clock gate in the library, or "
                         "turned off)")
        lines.append(
            f"clock {_fmt(report['clock_mhz'])} MHz: worst slack "
            f"{_fmt(t['worst_slack_ns'])} ns (met: {_fmt(t['timing_met'])}), "
            f"Fmax {_fmt(t['fmax_mhz'])} MHz")
        lines.append(
            f"power {_fmt(None if t['total_w'] is None else t['total_w'] * 1e3)} mW (internal "
            f"{_fmt(None if t['internal_w'] is None else t['internal_w'] * 1e3)}, switching "
            f"{_fmt(None if t['switching_w'] is None else t['switching_w'] * 1e3)}, leakage "
            f"{_fmt(None if t['leakage_w'] is None else t['leakage_w'] * 1e3)} mW)")
        lines.append(
            f"latency {_fmt(t['latency_cycles'])} cycles = {_fmt(t['latency_us'])} us, "
            f"energy {_fmt(t['energy_nj'])} nJ per inference")
        f = report.get("at_fmax")
        if f:
            lines.append(
                f"at Fmax {_fmt(f['clock_mhz'])} MHz: {_fmt(f['total_w'] * 1e3)} mW, latency "
                f"{_fmt(f['latency_us'])} us, energy {_fmt(f['energy_nj'])} nJ per inference")
    elif report["target"] == "xc7z020":
        u = t["utilization"]
        lines.append(
            f"{_fmt(t['lut'])} LUT ({u['lut']:.1%}), {_fmt(t['ff'])} FF ({u['ff']:.1%}), "
            f"{_fmt(t['dsp'])} DSP48 ({u['dsp']:.1%}), {_fmt(t['bram36'])} BRAM36 "
            f"({u['bram36']:.1%}) of the XC7Z020: fits {_fmt(t['fits'])}")
        lines += _estimate_line(report)
        wp = (report.get("timing") or {}).get("worst_path")
        if wp:
            lines.append(f"worst register-to-register path ({wp['module']}): {wp['lut_levels']} "
                         f"LUT levels, {wp['carry4']} CARRY4, {wp['muxf']} MUXF; "
                         f"{wp['delay_ps'] / 1e3:.2f} ns -> about "
                         f"{_fmt(report['timing']['fmax_mhz_estimate'])} MHz on a -1 XC7Z020 "
                         "(estimate from the netlist, not a timing report)")
            bare = report["timing"].get("dsp_unregistered")
            if bare:
                lines.append(f"  up to {bare} DSP48E1 per engine without M or P register: "
                             "paths through their multiply are not in this estimate")
        prof = report.get("profile")
        if prof:
            lines.append(f"synthesis: {prof['synthesized']} engine(s) synthesized in "
                         f"{prof['jobs']} job(s), {prof['cached']} from the cache")
    else:
        lines.append(
            f"device {t['device'] or 'none'}: post-route Fmax {_fmt(t['fmax_mhz'])} MHz; "
            f"{_fmt(t['lut4'])} LUT4, {_fmt(t['ccu2c'])} CCU2C, {_fmt(t['ff'])} FF, "
            f"{_fmt(t['mult18'])} MULT18, {_fmt(t['ebr'])} EBR")
        seeds = report.get("seeds") or []
        if len(seeds) > 1:
            lines.append("nextpnr seeds (post-route Fmax MHz, the best reported): " + ", ".join(
                f"{r['seed']}: {_fmt(r['fmax_mhz'])}" for r in seeds))
        lines += _estimate_line(report)
    if report.get("wall_time_s") is not None:
        lines.append(f"wall time {report['wall_time_s']:.1f} s")
    for u in report.get("unmeasured", []):
        lines.append(f"not measured: {u['what']}: {u['why']}")
    return lines


def _estimate_line(report: dict) -> list[str]:
    """The generator's estimate against Yosys' counts, when the report has it."""
    mv = (report.get("model_vs_synthesis") or {}).get("totals")
    if not mv:
        return []
    return ["generator's estimate vs Yosys: " + ", ".join(
        f"{k.upper()} {_fmt(v['estimate'])} vs {_fmt(v['yosys'])} ("
        + ("n/a" if v["error"] is None else f"{v['error']:+.1%}") + ")"
        for k, v in mv.items())]


def rich_table(report: dict):
    """A :class:`rich.table.Table` of the report's groups (title: the summary line)."""
    cols = _columns(report)
    tab = Table(title=" | ".join(summary(report)[:2]), title_justify="left")
    tab.add_column("engine / layer")
    for _, h, *_ in cols:
        tab.add_column(h, justify="right")
    for name, vals in _rows(report):
        tab.add_row(name, *vals, style="bold" if name == "TOTAL" else None)
    return tab


def text_table(report: dict) -> str:
    """The summary lines and the group table as plain text."""
    cols = _columns(report)
    lines = summary(report)
    if cols:
        rows = [("engine / layer", [h for _, h, *_ in cols])] + _rows(report)
        w0 = max(len(r[0]) for r in rows)
        ws = [max(len(r[1][i]) for r in rows) for i in range(len(cols))]
        lines.append("")
        for name, vals in rows:
            lines.append(f"{name:<{w0}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(vals, ws)))
    return "\n".join(lines) + "\n"


def _gated(t: dict) -> str:
    cg = t.get("clock_gating")
    if cg is None:
        return "n/a"
    return f"{cg['gated_flops'] / cg['flops']:.0%}" if cg["flops"] else "0"


def markdown_table(reports: list[dict]) -> str:
    """One Markdown table row per report (ASIC and FPGA reports in separate tables).

    This is what README/REPRODUCTION.md show; every number comes from the JSON reports, and
    figures that were not measured read ``n/a`` with the reason in a footnote list.
    """
    asic = [r for r in reports if r["kind"] == "asic"]
    xil = [r for r in reports if r["kind"] == "fpga" and r["target"] == "xc7z020"]
    ecp = [r for r in reports if r["kind"] == "fpga" and r["target"] == "ecp5"]
    out = []
    notes = []
    if asic:
        out.append("| design | library | clock MHz | area mm2 | Fmax MHz | power mW (int / sw / "
                   "leak) | latency us | energy nJ/inf | gated FF | activity | wall s |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in asic:
            t = r["totals"]
            mw = lambda x: _fmt(None if x is None else x * 1e3)   # noqa: E731
            act = "simulated" if r.get("simulation") else "vectorless"
            out.append(
                f"| {r['design']} | {r['target']} | {_fmt(r['clock_mhz'])} | "
                f"{_fmt(t['area_mm2'], digits=4)} | {_fmt(t['fmax_mhz'])} | {mw(t['total_w'])} "
                f"({mw(t['internal_w'])} / {mw(t['switching_w'])} / {mw(t['leakage_w'])}) | "
                f"{_fmt(t['latency_us'])} | {_fmt(t['energy_nj'])} | {_gated(t)} | {act} | "
                f"{_fmt(r.get('wall_time_s'))} |")
    if xil:
        out.append("")
        out.append("| design | LUT | FF | DSP48 | BRAM36 | fits XC7Z020 | worst path: LUT levels "
                   "/ CARRY4 | Fmax estimate MHz | wall s |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in xil:
            t = r["totals"]
            tm = r.get("timing") or {}
            wp = tm.get("worst_path") or {}
            out.append(f"| {r['design']} | {_fmt(t['lut'])} | {_fmt(t['ff'])} | {_fmt(t['dsp'])} "
                       f"| {_fmt(t['bram36'])} | {_fmt(t['fits'])} | "
                       f"{_fmt(wp.get('lut_levels'))} / {_fmt(wp.get('carry4'))} | "
                       f"{_fmt(tm.get('fmax_mhz_estimate'))} | {_fmt(r.get('wall_time_s'))} |")
        if any(r.get("timing") for r in xil):
            notes.append("- XC7Z020 Fmax estimate: " + next(r["timing"]["method"] for r in xil
                                                         if r.get("timing")))
    if ecp:
        out.append("")
        out.append("| design | ECP5 device | post-route Fmax MHz | LUT4 | FF | MULT18 | EBR | "
                   "wall s |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in ecp:
            t = r["totals"]
            out.append(f"| {r['design']} | {t['device'] or 'n/a'} | {_fmt(t['fmax_mhz'])} | "
                       f"{_fmt(t['lut4'])} | {_fmt(t['ff'])} | {_fmt(t['mult18'])} | "
                       f"{_fmt(t['ebr'])} | {_fmt(r.get('wall_time_s'))} |")
    for r in reports:
        for u in r.get("unmeasured", []):
            notes.append(f"- {r['design']} / {r['target']}: {u['what']}: {u['why']}")
    if notes:
        out.append("")
        out.extend(notes)
    return "\n".join(out) + "\n"


def plot_breakdown(report: dict, path: str | Path) -> Path:
    """PNG of area and power per layer (ASIC) or LUT/FF/DSP per layer (XC7Z020)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = rollup(report, "layer")
    names = [k for k in per if not k.startswith("(top")]
    path = Path(path)
    if report["kind"] == "asic":
        fig, axes = plt.subplots(1, 2, figsize=(11, max(3.0, 0.35 * len(names) + 1.5)))
        area = [per[n].get("area_um2") or 0.0 for n in names]
        axes[0].barh(names, area, color="tab:blue")
        axes[0].set_xlabel("cell area (um2)")
        axes[0].set_title(f"area, total {report['totals']['area_mm2']:.4f} mm2")
        left = [0.0] * len(names)
        for key, col in (("internal_w", "tab:orange"), ("switching_w", "tab:green"),
                         ("leakage_w", "tab:gray")):
            vals = [(per[n].get(key) or 0.0) * 1e3 for n in names]
            axes[1].barh(names, vals, left=left, color=col, label=key[:-2])
            left = [a + b for a, b in zip(left, vals)]
        axes[1].set_xlabel(f"power at {report['clock_mhz']:g} MHz (mW)")
        tw = report["totals"]["total_w"]
        axes[1].set_title("power" + (f", total {tw * 1e3:.3g} mW" if tw is not None else ""))
        axes[1].legend(loc="lower right", fontsize=8)
        axes[1].set_yticklabels([])
    else:
        fig, axes = plt.subplots(1, 3, figsize=(12, max(3.0, 0.35 * len(names) + 1.5)))
        for ax, key in zip(axes, ("lut", "ff", "dsp")):
            ax.barh(names, [per[n].get(key) or 0 for n in names])
            ax.set_xlabel(key.upper())
        for ax in axes[1:]:
            ax.set_yticklabels([])
    fig.suptitle(f"{report['design']} on {report['target']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
