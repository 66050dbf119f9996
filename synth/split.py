"""Per-engine synthesis units: each distinct engine synthesized once, cached, in parallel jobs.

A build's Verilog is one top module (the LCP core or a branch: wiring, FIFOs, stream adapters)
instantiating one module per engine, each with its own submodules. The hierarchical flows keep
that hierarchy (no optimization across modules), so synthesizing each engine on its own gives
the same cells as synthesizing the whole design at once; :func:`split_units` cuts the design
into *units*: one per top-level child module (with its whole subtree) and one for the top module
itself (its children read as black boxes).

A unit's *digest* is the SHA-256 of its Verilog with its own module name replaced by a
placeholder (engines that differ only in their instance name, e.g. the same max-pool in four
branches, share one digest), plus the flow's parameters, the Yosys version and the job script's
source: its result is
kept in the content-addressed cache of :mod:`lcp.cache` (``<cache>/synth/<digest>``, or
``$LCP_SYNTH_CACHE/<digest>``), so a unit
is synthesized once per machine, whichever build or flow run needs it again.

:func:`run_units` runs the units that are not cached as concurrent child processes (pyosys is
one process per job), at most ``jobs`` at a time (default: the usable CPU count).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lcp.cache import STAMP, build_once, cache_root, digest, source_digest

from importlib.metadata import version

from .tools import run_yosys_job

__all__ = ["Unit", "split_modules", "split_units", "run_units", "PLACEHOLDER", "default_jobs"]

#: The job script's own source: a changed script never reuses an older result.
_JOB_SOURCE = source_digest(*(Path(__file__).with_name(f) for f in ("_ysjob.py", "paths.py")))

#: Module name a unit's root is renamed to inside its cached job.
PLACEHOLDER = "lcp_unit"

_TOP_ATTR = re.compile(r"^\(\*\s*top\s*=\s*(1|32'd1)\s*\*\)\s*\n", re.M)
_AUTO = re.compile(r"dump_module\$(\d+) ")
_MOD_RE = re.compile(r"^module\s+(\\\S+|[A-Za-z_][\w$]*)\s*\(", re.M)


@dataclass
class Unit:
    """One synthesis job: ``root`` module (``None`` names nothing: never), its Verilog
    ``text`` (root renamed to :data:`PLACEHOLDER` unless it is the top), black-box Verilog
    ``lib_text`` (the top unit's children), and the modules it holds (real names)."""

    root: str
    text: str
    lib_text: str
    modules: list[str]
    is_top: bool

    def key(self, kind: str, params: dict) -> str:
        return digest("synth-unit-2", kind, json.dumps(params, sort_keys=True),
                      version("pyosys"), _JOB_SOURCE, self.text, self.lib_text)

    def real_name(self, name: str) -> str:
        """A module name of the job's output turned back into the design's name."""
        n = name.lstrip("\\")
        if self.is_top:
            return n
        if n == PLACEHOLDER or n.startswith(PLACEHOLDER + "."):
            return self.root + n[len(PLACEHOLDER):]
        return n


def split_modules(text: str) -> dict[str, str]:
    """Module name (without the leading backslash) -> its Verilog text, attribute lines
    before ``module`` included."""
    out = {}
    starts = [m for m in _MOD_RE.finditer(text)]
    for k, m in enumerate(starts):
        name = m.group(1).lstrip("\\")
        begin = m.start()
        # take the attribute lines right above the module with it
        prev_end = text.rfind("endmodule", 0, begin)
        head = text[prev_end + len("endmodule") if prev_end >= 0 else 0:begin]
        attrs = "".join(ln + "\n" for ln in head.splitlines() if ln.strip().startswith("(*"))
        end = text.find("endmodule", m.end())
        if end < 0:
            raise ValueError(f"module {name!r} has no endmodule")
        out[name] = attrs + text[begin:end + len("endmodule")] + "\n"
    return out


def _children(body: str, names: set[str]) -> list[str]:
    found = []
    for ln in body.splitlines():
        s = ln.strip()
        if not s or s.startswith(("module", "(*", "//")):
            continue
        tok = s.split(None, 1)[0].lstrip("\\")
        if tok in names and tok not in found:
            found.append(tok)
    return found


def _rename(text: str, old: str, new: str) -> str:
    pat = re.compile(r"(?<![\w.$])\\?" + re.escape(old) + r"(?=[.\s(])")
    return pat.sub(lambda m: ("\\" + new) if m.group(0).startswith("\\") else new, text)


def _auto_index(text: str, n: str) -> int:
    """Rank of helper number ``n`` among those of ``text`` (their order, not the file's count)."""
    nums = sorted({int(x) for x in _AUTO.findall(text)})
    return nums.index(int(n))


def split_units(files: list[Path], top: str) -> list[Unit]:
    """The units of a design (top module ``top`` in ``files``): one per child module of the
    top with its subtree, then the top itself.

    Raises
    ------
    ValueError
        ``top`` is not among the modules of ``files``.
    """
    mods: dict[str, str] = {}
    for f in files:
        mods.update(split_modules(Path(f).read_text()))
    top = top.lstrip("\\")
    if top not in mods:
        raise ValueError(f"top module {top!r} not found in {', '.join(map(str, files))}")
    names = set(mods)
    kids = {n: _children(t, names) for n, t in mods.items()}
    units = []
    for child in kids[top]:
        sub, todo = [], [child]
        while todo:
            n = todo.pop()
            if n not in sub:
                sub.append(n)
                todo += kids[n]
        text = "".join(_rename(mods[n], child, PLACEHOLDER) for n in sorted(sub))
        # the Verilog writer numbers its helper registers across the whole file
        text = _AUTO.sub(lambda m: f"dump_module$u{_auto_index(text, m.group(1))} ", text)
        units.append(Unit(child, text, "", sorted(sub), False))
    lib = "".join(mods[c] for c in kids[top])
    # no "top" attribute: several units share one job, none of them is the design's top
    units.append(Unit(top, _TOP_ATTR.sub("", mods[top]), lib, [top], True))
    return units


def default_jobs() -> int:
    """Concurrent synthesis jobs: ``$LCP_SYNTH_JOBS``, else the CPUs this process may use."""
    env = os.environ.get("LCP_SYNTH_JOBS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _bins(items: list[tuple[str, int]], n: int) -> list[list[str]]:
    """Longest-first greedy partition of ``(key, size)`` into ``n`` bins of similar size."""
    bins: list[tuple[int, list[str]]] = [(0, []) for _ in range(n)]
    for key, size in sorted(items, key=lambda kv: -kv[1]):
        i = min(range(n), key=lambda j: bins[j][0])
        bins[i] = (bins[i][0] + size, bins[i][1] + [key])
    return [b for _, b in bins if b]


def _generic(name: str, i: int) -> str:
    n = name.lstrip("\\")
    ph = f"{PLACEHOLDER}{i}"
    if n == ph or n.startswith(ph + "."):
        return PLACEHOLDER + n[len(ph):]
    return n


def run_units(units: list[Unit], kind: str, params: dict, workdir: Path, *,
              jobs: int | None = None, cache: Path | None = None,
              log: Callable[[str], None] | None = None) -> list[dict]:
    """Synthesize every unit with job ``kind`` of :mod:`lcp.synth._ysjob` (``xilinx`` or
    ``asic_map``: both take several tops), cached by digest.

    The units not in the cache are cut into at most ``jobs`` bins of similar Verilog size, one
    child process each (one process per unit would load the cell libraries and ABC's models
    again for every small engine). ``params``: the job's parameters besides its files. Returns,
    per unit in order, ``{"unit", "cached", "seconds", "profile"}`` (``seconds``: of the bin
    job that made it, 0 when cached) and ``modules`` (``xilinx``: real module name -> Yosys
    stat) or ``rtlil`` (``asic_map``: a file of the unit's mapped modules, real names).
    """
    env = os.environ.get("LCP_SYNTH_CACHE")
    root = Path(cache) if cache is not None else Path(env) if env else cache_root() / "synth"
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or default_jobs()
    keys = [u.key(kind, params) for u in units]
    first = {}
    for k, u in zip(keys, units):
        first.setdefault(k, u)
    missing = [k for k in first if not (root / k / STAMP).exists()]
    made: dict[str, float] = {}

    def run_bin(b: int, bkeys: list[str]) -> None:
        wd = workdir / f"bin{b}"
        if wd.exists():
            shutil.rmtree(wd)
        wd.mkdir(parents=True)
        files, libs = [], []
        for i, k in enumerate(bkeys):
            u = first[k]
            text = u.text if u.is_top else _rename(u.text, PLACEHOLDER, f"{PLACEHOLDER}{i}")
            f = wd / f"unit{i}.v"
            f.write_text(text)
            files.append(str(f))
            if u.lib_text:
                (wd / f"lib{i}.v").write_text(u.lib_text)
                libs.append(str(wd / f"lib{i}.v"))
        out = wd / ("stat.json" if kind == "xilinx" else "mapped.il")
        r = run_yosys_job(kind, dict(params, files=files, lib_files=libs,
                                     **{_OUTPUT[kind]: str(out)}), wd)
        parts = _parts(kind, out, [first[k] for k in bkeys])
        for k, part in zip(bkeys, parts):
            def build(folder: Path, part=part, u=first[k]):
                (folder / _ENTRY[kind]).write_text(part)
                (folder / "job.json").write_text(json.dumps(
                    {"unit": u.root, "bin_seconds": r["seconds"], "bin_units": len(bkeys),
                     "profile": r.get("profile")}))
                return folder
            build_once(root, k, build, lambda f: f)
            made[k] = r["seconds"]
        if log:
            log(f"  synthesized {len(bkeys)} engine(s) in {r['seconds']:.0f} s: "
                + ", ".join(first[k].root for k in bkeys))

    if missing:
        sizes = [(k, len(first[k].text)) for k in missing]
        bins = _bins(sizes, min(jobs, len(missing)))
        with ThreadPoolExecutor(max_workers=len(bins)) as pool:
            list(pool.map(lambda ab: run_bin(*ab), enumerate(bins)))
    if log and len(first) > len(missing):
        log(f"  {len(first) - len(missing)} engine(s) from the synthesis cache")
    out = []
    seen = set()
    for k, u in zip(keys, units):
        text = (root / k / _ENTRY[kind]).read_text()
        prof = json.loads((root / k / "job.json").read_text()).get("profile")
        fresh = k in made and k not in seen
        seen.add(k)
        r = {"unit": u, "cached": not fresh, "seconds": made.get(k, 0.0) if fresh else 0.0,
             "profile": prof}
        if kind == "xilinx":
            r["modules"] = {u.real_name(m): dict(v, num_cells_by_type={
                "\\" + u.real_name(t): n for t, n in v.get("num_cells_by_type", {}).items()})
                for m, v in json.loads(text).items()}
        else:
            f = workdir / f"unit{len(out)}.il"
            f.write_text(text if u.is_top else _rename(text, PLACEHOLDER, u.root))
            r["rtlil"] = f
        out.append(r)
    return out


#: Output parameter of each job kind, and the file a unit's part is kept in.
_OUTPUT = {"xilinx": "stat", "asic_map": "rtlil"}
_ENTRY = {"xilinx": "unit.json", "asic_map": "unit.il"}


def _mine(u: Unit, generic: str) -> bool:
    if u.is_top:
        return generic in u.modules
    return generic == PLACEHOLDER or generic.startswith(PLACEHOLDER + ".")


def _parts(kind: str, out: Path, us: list[Unit]) -> list[str]:
    """Each unit's share of a bin job's output, in generic names (bin-local placeholder
    numbers removed): its modules' stat (JSON) or its mapped modules (RTLIL)."""
    if kind == "xilinx":
        st = json.loads(out.read_text())["modules"]
        res = []
        for i, u in enumerate(us):
            mods = {}
            for m, v in st.items():
                g = _generic(m, i)
                if _mine(u, g):
                    mods[g] = dict(v, num_cells_by_type={"\\" + _generic(t, i): n for t, n in
                                                         v.get("num_cells_by_type", {}).items()})
            res.append(json.dumps(mods))
        return res
    blocks = _rtlil_modules(out.read_text())
    res = []
    for i, u in enumerate(us):
        mine = [b for n, b in blocks if _mine(u, _generic(n, i))]
        text = "".join(mine)
        res.append(text if u.is_top else _rename(text, f"{PLACEHOLDER}{i}", PLACEHOLDER))
    return res


def _rtlil_modules(text: str) -> list[tuple[str, str]]:
    """``(name, text)`` of each module of an RTLIL file (its attribute lines included)."""
    out, cur, attrs, name = [], None, [], None
    for ln in text.splitlines(keepends=True):
        if cur is None:
            if ln.startswith("attribute "):
                attrs.append(ln)
            elif ln.startswith("module "):
                name = ln.split()[1].lstrip("\\")
                cur = attrs + [ln]
                attrs = []
            else:
                attrs = []
        else:
            cur.append(ln)
            if ln.rstrip("\n") == "end":
                out.append((name, "".join(cur)))
                cur = None
    return out
