"""The design a flow synthesizes: Verilog files, the top module, and how to name its parts.

Amaranth names each generated Verilog module after its place in the hierarchy
(``top.conv1``, ``top.conv1.mvu``, ``top.fifo_conv1_pool1_0``); a flow that keeps the hierarchy
can therefore report every engine under the name of its submodule of the top, which the
hardware generator sets to the IR layer name. :func:`group_of` turns a module name into that
label (``conv1`` for ``top.conv1.mvu``; the top's own glue logic is ``(top)``).

A design comes from a ``BUILD/`` folder written by ``lcp compile`` (:func:`load_build`), from
Verilog files (:func:`from_verilog`) or straight from an Amaranth component
(:func:`from_component`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .tools import SynthError

__all__ = ["Design", "load_build", "from_verilog", "from_component", "group_of", "TOP_GROUP"]

#: Group label of the logic in the top module itself (stream glue, AXI adapters).
TOP_GROUP = "(top)"


@dataclass
class Design:
    """Verilog of one top module and what the reports say about it.

    Members
    -------
    name : short label (``BUILD`` folder name or file stem).
    top : top module name.
    files : Verilog sources.
    build_dir : the ``BUILD/`` folder, or ``None``.
    hw_report : ``BUILD/report.json`` (cycle model, simulated cycles) or ``None``.
    layers : submodule label -> IR layer name, for the engines that implement a layer.
    """

    name: str
    top: str
    files: list[Path]
    build_dir: Path | None = None
    hw_report: dict | None = None
    layers: dict[str, str] = field(default_factory=dict)

    def group_of(self, module: str) -> str:
        return group_of(module, self.top)


def group_of(module: str, top: str) -> str:
    """Label of the Verilog module ``module`` under ``top``: its submodule of the top, which
    holds it (``top.conv1.mvu`` -> ``conv1``); :data:`TOP_GROUP` for the top itself."""
    m = module.lstrip("\\")
    if m == top or not m:
        return TOP_GROUP
    if m.startswith(top + "."):
        return m[len(top) + 1:].split(".")[0]
    return m


def _top_of(files: list[Path]) -> str:
    """The module marked ``(* top = 1 *)`` (Amaranth's marker), else the only module that no
    other module instantiates."""
    text = "\n".join(f.read_text(errors="replace") for f in files)
    m = re.search(r"\(\*\s*top\s*=\s*(?:1|32'd1)\s*\*\)(?:\s*\(\*[^)]*\*\))*\s*module\s+"
                  r"(\\\S+|\w+)", text)
    if m:
        return m.group(1).lstrip("\\")
    mods = [x.lstrip("\\") for x in re.findall(r"^\s*module\s+(\\\S+|\w+)", text, re.M)]
    used = {x.lstrip("\\") for x in re.findall(r"^\s*(\\\S+|\w+)\s+(?:#\(.*?\)\s*)?\\?\w[\w.$]*"
                                                r"\s*\(", text, re.M)}
    roots = [x for x in mods if x not in used]
    if len(roots) != 1:
        raise SynthError(f"cannot tell the top module among {mods}: give it with --top")
    return roots[0]


def from_verilog(files, top: str | None = None, name: str | None = None) -> Design:
    """A design from Verilog ``files`` (the top found when not given)."""
    files = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
    for f in files:
        if not f.is_file():
            raise SynthError(f"{f}: no such Verilog file")
    top = top or _top_of(files)
    return Design(name=name or files[0].stem, top=top, files=files)


def from_component(component, workdir, name: str = "top") -> Design:
    """A design from an Amaranth ``wiring.Component``: its Verilog goes to ``workdir/name.v``."""
    from amaranth.back import verilog
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.v"
    path.write_text(verilog.convert(component, name=name, emit_src=False))
    return Design(name=name, top=name, files=[path])


def load_build(path, top: str | None = None) -> Design:
    """The design of a ``BUILD/`` folder written by ``lcp compile``.

    Reads every ``*.v`` in the folder (or its ``rtl/`` subfolder), ``report.json`` when present
    (its ``top`` names the top module) and maps submodules to IR layers from the report's node
    list.

    Raises
    ------
    SynthError
        Not a folder, or no Verilog in it.
    """
    path = Path(path)
    if path.is_file() and path.suffix in (".v", ".sv"):
        return from_verilog([path], top)
    if not path.is_dir():
        raise SynthError(f"{path}: not a build folder (run `lcp compile MODEL.onnx -o {path}` "
                         f"first)")
    files = sorted(path.glob("*.v")) or sorted((path / "rtl").glob("*.v"))
    if not files:
        raise SynthError(f"{path}: no Verilog (*.v) in this folder; run `lcp compile` first")
    report = None
    if (path / "report.json").is_file():
        try:
            report = json.loads((path / "report.json").read_text())
        except json.JSONDecodeError as e:
            raise SynthError(f"{path / 'report.json'}: not JSON ({e})") from None
    top = top or (report or {}).get("top") or _top_of(files)
    d = Design(name=path.resolve().name, top=top, files=files, build_dir=path, hw_report=report)
    d.layers = _layers_from_report(report)
    return d


def _layers_from_report(report: dict | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if not report:
        return out

    def walk(x):
        if isinstance(x, dict):
            if "nodes" in x and isinstance(x["nodes"], list):
                for n in x["nodes"]:
                    if isinstance(n, dict) and n.get("name") and n.get("layer"):
                        out[n["name"]] = n["layer"]
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(report)
    return out
