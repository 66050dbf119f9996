"""PYNQ overlays: a Vivado batch project around the generated PYNQ top, built where Vivado is.

:func:`write_project` generates the PYNQ top of a model (:func:`lcp.hw.pynq_top.generate_pynq`),
lints it with Verilator and writes, into ``OUT/``::

    hdl/lcp_pynq.v, hdl/lcp_engine.json, ...    the engine (and its build files)
    package_ip.tcl      packages hdl/lcp_pynq.v as IP lcp:lcp:lcp_engine:1.0 (ip_repo/)
    build.tcl           project for the board's part and board preset; block design:
                        processing_system7 (board preset, FCLK0 100 MHz, GP0 master, HP0 64-bit
                        slave), AXI DMA (simple mode, MM2S + S2MM, 26-bit lengths), AXI
                        interconnect on GP0 (DMA registers, engine registers), SmartConnect
                        from the DMA's masters to HP0, proc_sys_reset, the engine IP; address
                        map (engine 0x43C00000, DMA 0x40400000, 64 KiB each); wrapper;
                        synthesis, implementation, write_bitstream; copies the .bit and .hwh
                        into overlay/ and writes reports/. When no dataflow design fits the
                        budget the engine is the reused one (:mod:`lcp.hw.pynq_reused`, as
                        ``lcp compile --budget``): its AXI4 read master ``m_axi`` is a third
                        SmartConnect slave to HP0 and sees the DDR in its address space
    overlay/            what goes to the board: lcp_overlay.bit + lcp_overlay.hwh (after
                        Vivado), lcp_engine.json, model.json/.npz, REGISTERS.md (and the
                        reused engine's weights.bin, which the driver's ``load_weights`` puts
                        in DDR and points ``WEIGHT_BASE`` at)
    bitstream.json      board, part, model, lint result, status ("project" or "built")
    README.md           the commands

:func:`build_project` runs ``vivado -mode batch -source build.tcl`` when ``vivado`` is on
``PATH`` and checks that the overlay files exist afterwards. Without Vivado nothing is faked:
:func:`make_bitstream` returns status ``"not-built"`` with the command to run where Vivado is
installed, and ``lcp bitstream`` exits with code 3 (:data:`EXIT_NOT_BUILT`).

Lint contract (:func:`lint`): ``verilator --lint-only`` on the top with every warning fatal
except :data:`LINT_WAIVERS`, the classes Yosys' Verilog writer produces for any Amaranth design
(width extension and truncation inside its generated expressions, ``casez`` without a default,
constant ``always @*`` blocks).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lcp.hw.pynq_regs import CLOCK_MHZ, DMA_INSTANCE, DMA_VLNV, ENGINE_INSTANCE, VLNV
from lcp.hw.pynq_top import generate_pynq, generate_pynq_reused
from lcp.hw.reuse import choose_reused
from lcp.ir import IRError, Model, save

from .tools import SynthError, ToolFailed, find_tool, have_tool, run_tool, verilator_env

__all__ = ["BOARDS", "Board", "LINT_WAIVERS", "EXIT_NOT_BUILT", "Project", "BitstreamResult",
           "lint", "write_project", "build_project", "make_bitstream", "vivado_command"]

#: Exit code of ``lcp bitstream`` when the project is written but Vivado is not here.
EXIT_NOT_BUILT = 3
#: Verilator warning classes waived by :func:`lint` (see the module docstring).
LINT_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "ALWNEVER")
#: Vivado release the Tcl is written for (the one PYNQ 3.x images are built with).
VIVADO_VERSION = "2022.1"
_OVERLAY = "lcp_overlay"


@dataclass(frozen=True)
class Board:
    """A PYNQ board: FPGA part, Vivado board part, where its board files come from."""

    name: str
    part: str
    board_part: str
    board_files: str


#: Supported boards (both carry a Zynq XC7Z020 in the CLG400 package, speed grade -1).
BOARDS = {
    "pynq-z2": Board("pynq-z2", "xc7z020clg400-1", "tul.com.tw:pynq-z2:part0:1.0",
                     "TUL's PYNQ-Z2 board files (pynq-z2/A.0) in Vivado's data/boards/board_files"
                     " or a folder named by $LCP_BOARD_REPO"),
    "pynq-z1": Board("pynq-z1", "xc7z020clg400-1", "www.digilentinc.com:pynq-z1:part0:1.0",
                     "Digilent's board files (vivado-boards, pynq-z1) in Vivado's "
                     "data/boards/board_files or a folder named by $LCP_BOARD_REPO"),
}


@dataclass
class Project:
    """A written Vivado project folder (see :func:`write_project`)."""

    dir: Path
    board: Board
    model: str
    digest: str
    in_width: int
    out_width: int
    lint: dict = field(default_factory=dict)
    #: The engine reads its weights from DRAM (the reused engine): its ``m_axi`` read master
    #: goes to HP0 through the SmartConnect, next to the DMA's.
    reads_dram: bool = False

    @property
    def overlay(self) -> Path:
        return self.dir / "overlay"

    @property
    def bit(self) -> Path:
        return self.overlay / f"{_OVERLAY}.bit"

    @property
    def hwh(self) -> Path:
        return self.overlay / f"{_OVERLAY}.hwh"


@dataclass
class BitstreamResult:
    """Outcome of :func:`make_bitstream`: ``status`` is ``"built"`` or ``"not-built"``."""

    project: Project
    status: str
    message: str
    seconds: float = 0.0


def vivado_command(project_dir: str | Path) -> str:
    """The shell command that builds the overlay of a written project."""
    return f"cd {project_dir} && vivado -mode batch -source build.tcl -log vivado.log " \
           f"-journal vivado.jou"


def lint(verilog: str | Path, top: str = "lcp_pynq", log: Path | None = None) -> dict:
    """``verilator --lint-only`` on ``verilog`` (see the module docstring for the waivers).

    Returns ``{"ok": True, "command": ..., "waived": {CLASS: count}}``; raises
    :class:`~lcp.synth.tools.SynthError` with Verilator's messages when it fails.
    """
    verilog = Path(verilog)
    vl = find_tool("verilator")
    cmd = [vl, "--lint-only", "--top-module", top, *(f"-Wno-{w}" for w in LINT_WAIVERS),
           str(verilog)]
    log = Path(log) if log is not None else verilog.with_suffix(".lint.log")
    code, _ = run_tool(cmd, log, env=verilator_env(), check=False, timeout=600)
    text = log.read_text(errors="replace")
    if code != 0:
        bad = [ln for ln in text.splitlines() if ln.startswith("%")][:12]
        raise SynthError(f"verilator --lint-only failed on {verilog.name}:\n" + "\n".join(bad))
    # count what the waivers hid, for the record
    full = log.with_suffix(".all.log")
    run_tool([vl, "--lint-only", "--top-module", top, "-Wno-fatal", str(verilog)], full,
             env=verilator_env(), check=False, timeout=600)
    waived: dict[str, int] = {}
    for ln in full.read_text(errors="replace").splitlines():
        if ln.startswith("%Warning-"):
            k = ln.split(":")[0][len("%Warning-"):]
            waived[k] = waived.get(k, 0) + 1
    return {"ok": True, "command": " ".join(["verilator", *cmd[1:-1], verilog.name]),
            "waived": waived}


def _tcl_package_ip(p: Project) -> str:
    return f"""# Package hdl/lcp_pynq.v (model {p.model}) as IP lcp:lcp:lcp_engine:1.0 into ip_repo/.
# Generated by `lcp bitstream`; sourced by build.tcl (needs $here and $part).
create_project -force pkg_lcp_engine [file join $here vivado pkg] -part $part
add_files -norecurse [file join $here hdl lcp_pynq.v]
set_property top lcp_pynq [current_fileset]
update_compile_order -fileset sources_1
ipx::package_project -root_dir [file join $here ip_repo lcp_engine] -vendor lcp -library lcp \\
    -taxonomy /UserIP -import_files -set_current true -force
set core [ipx::current_core]
set_property name lcp_engine $core
set_property version 1.0 $core
set_property display_name "LCP engine ({p.model})" $core
set_property description "LCP engine, model hash {p.digest[:16]}: AXI4-Stream in/out, AXI4-Lite registers" $core
foreach busif {{s_axi_control s_axis m_axis aresetn aclk{" m_axi" if p.reads_dram else ""}}} {{
    if {{[llength [ipx::get_bus_interfaces $busif -of_objects $core]] == 0}} {{
        puts "LCP ERROR: the IP packager did not infer bus interface $busif"
        exit 1
    }}
}}
foreach busif {{s_axi_control s_axis m_axis{" m_axi" if p.reads_dram else ""}}} {{
    ipx::associate_bus_interfaces -busif $busif -clock aclk $core
}}
ipx::associate_bus_interfaces -clock aclk -reset aresetn $core
set rst_if [ipx::get_bus_interfaces aresetn -of_objects $core]
if {{[llength [ipx::get_bus_parameters POLARITY -of_objects $rst_if]] == 0}} {{
    ipx::add_bus_parameter POLARITY $rst_if
}}
set_property value ACTIVE_LOW [ipx::get_bus_parameters POLARITY -of_objects $rst_if]
set_property range 4096 [ipx::get_address_blocks -of_objects \\
    [ipx::get_memory_maps s_axi_control -of_objects $core]]
ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
"""


def _tcl_build(p: Project, jobs: int) -> str:

    b = p.board
    eng, eng_base, eng_range = ENGINE_INSTANCE
    dma, dma_base, dma_range = DMA_INSTANCE
    k = lambda n: f"{n // 1024}K"
    n_si = 3 if p.reads_dram else 2
    weights = (f"""
# the engine's weight reads (AXI4 read master m_axi, from WEIGHT_BASE) -> SmartConnect -> HP0
connect_bd_intf_net [get_bd_intf_pins {eng}/m_axi] [get_bd_intf_pins axi_smc/S02_AXI]
""" if p.reads_dram else "")
    weight_addr = (f"""assign_bd_address -target_address_space [get_bd_addr_spaces {eng}/m_axi] \\
    [get_bd_addr_segs processing_system7_0/S_AXI_HP0/HP0_DDR_LOWOCM] -force
""" if p.reads_dram else "")
    return f"""# Vivado batch build of the PYNQ overlay for model {p.model} on {b.name}.
# Generated by `lcp bitstream`; written for Vivado {VIVADO_VERSION}. Run from anywhere:
#     vivado -mode batch -source build.tcl
# Needs the {b.name} board files: {b.board_files}.
set here [file normalize [file dirname [info script]]]
set part {b.part}
set board_part {b.board_part}
set jobs {jobs}
if {{[info exists ::env(LCP_BOARD_REPO)]}} {{
    set_param board.repoPaths [list $::env(LCP_BOARD_REPO)]
}}
if {{[llength [get_board_parts -quiet $board_part]] == 0}} {{
    puts "LCP ERROR: board part $board_part not found: install {b.board_files}"
    exit 2
}}

source [file join $here package_ip.tcl]

create_project -force {_OVERLAY} [file join $here vivado {_OVERLAY}] -part $part
set_property board_part $board_part [current_project]
set_property ip_repo_paths [list [file join $here ip_repo]] [current_project]
update_ip_catalog
create_bd_design {_OVERLAY}

# Zynq PS: board preset, FCLK_CLK0 at {CLOCK_MHZ} MHz, GP0 master, HP0 64-bit slave
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 processing_system7_0]
apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \\
    -config {{make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"}} $ps
set_property -dict [list CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {{{CLOCK_MHZ}}} \\
    CONFIG.PCW_USE_M_AXI_GP0 {{1}} CONFIG.PCW_USE_S_AXI_HP0 {{1}} \\
    CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {{64}}] $ps

set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 rst_ps7_0_{CLOCK_MHZ}M]

# AXI DMA, simple mode: MM2S feeds the engine's s_axis, S2MM takes its m_axis
set dma [create_bd_cell -type ip -vlnv {DMA_VLNV} {dma}]
set_property -dict [list CONFIG.c_include_sg {{0}} CONFIG.c_sg_length_width {{26}} \\
    CONFIG.c_sg_include_stscntrl_strm {{0}} \\
    CONFIG.c_m_axi_mm2s_data_width {{64}} CONFIG.c_m_axis_mm2s_tdata_width {{{p.in_width}}} \\
    CONFIG.c_mm2s_burst_size {{16}} CONFIG.c_include_mm2s_dre {{0}} \\
    CONFIG.c_m_axi_s2mm_data_width {{64}} CONFIG.c_s_axis_s2mm_tdata_width {{{p.out_width}}} \\
    CONFIG.c_s2mm_burst_size {{16}} CONFIG.c_include_s2mm_dre {{0}}] $dma

# the engine
set eng [create_bd_cell -type ip -vlnv {VLNV} {eng}]

# GP0 -> interconnect -> DMA and engine registers; DMA masters -> SmartConnect -> HP0
set ic [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_interconnect:2.1 ps7_0_axi_periph]
set_property CONFIG.NUM_MI {{2}} $ic
set smc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 axi_smc]
set_property -dict [list CONFIG.NUM_SI {{{n_si}}} CONFIG.NUM_MI {{1}}] $smc
connect_bd_intf_net [get_bd_intf_pins processing_system7_0/M_AXI_GP0] [get_bd_intf_pins ps7_0_axi_periph/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins ps7_0_axi_periph/M00_AXI] [get_bd_intf_pins {dma}/S_AXI_LITE]
connect_bd_intf_net [get_bd_intf_pins ps7_0_axi_periph/M01_AXI] [get_bd_intf_pins {eng}/s_axi_control]
connect_bd_intf_net [get_bd_intf_pins {dma}/M_AXI_MM2S] [get_bd_intf_pins axi_smc/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins {dma}/M_AXI_S2MM] [get_bd_intf_pins axi_smc/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_smc/M00_AXI] [get_bd_intf_pins processing_system7_0/S_AXI_HP0]
connect_bd_intf_net [get_bd_intf_pins {dma}/M_AXIS_MM2S] [get_bd_intf_pins {eng}/s_axis]
connect_bd_intf_net [get_bd_intf_pins {eng}/m_axis] [get_bd_intf_pins {dma}/S_AXIS_S2MM]
{weights}
# one clock (FCLK_CLK0), one reset domain
connect_bd_net [get_bd_pins processing_system7_0/FCLK_CLK0] \\
    [get_bd_pins processing_system7_0/M_AXI_GP0_ACLK] [get_bd_pins processing_system7_0/S_AXI_HP0_ACLK] \\
    [get_bd_pins rst_ps7_0_{CLOCK_MHZ}M/slowest_sync_clk] [get_bd_pins {dma}/s_axi_lite_aclk] \\
    [get_bd_pins {dma}/m_axi_mm2s_aclk] [get_bd_pins {dma}/m_axi_s2mm_aclk] \\
    [get_bd_pins ps7_0_axi_periph/ACLK] [get_bd_pins ps7_0_axi_periph/S00_ACLK] \\
    [get_bd_pins ps7_0_axi_periph/M00_ACLK] [get_bd_pins ps7_0_axi_periph/M01_ACLK] \\
    [get_bd_pins axi_smc/aclk] [get_bd_pins {eng}/aclk]
connect_bd_net [get_bd_pins processing_system7_0/FCLK_RESET0_N] [get_bd_pins rst_ps7_0_{CLOCK_MHZ}M/ext_reset_in]
connect_bd_net [get_bd_pins rst_ps7_0_{CLOCK_MHZ}M/interconnect_aresetn] [get_bd_pins ps7_0_axi_periph/ARESETN]
connect_bd_net [get_bd_pins rst_ps7_0_{CLOCK_MHZ}M/peripheral_aresetn] \\
    [get_bd_pins {dma}/axi_resetn] [get_bd_pins ps7_0_axi_periph/S00_ARESETN] \\
    [get_bd_pins ps7_0_axi_periph/M00_ARESETN] [get_bd_pins ps7_0_axi_periph/M01_ARESETN] \\
    [get_bd_pins axi_smc/aresetn] [get_bd_pins {eng}/aresetn]

# address map (lcp.hw.pynq_regs.ENGINE_INSTANCE / DMA_INSTANCE)
set ps_data [get_bd_addr_spaces processing_system7_0/Data]
assign_bd_address -offset 0x{dma_base:08X} -range {k(dma_range)} -target_address_space $ps_data \\
    [get_bd_addr_segs {dma}/S_AXI_LITE/Reg] -force
assign_bd_address -offset 0x{eng_base:08X} -range {k(eng_range)} -target_address_space $ps_data \\
    [get_bd_addr_segs {eng}/s_axi_control/reg0] -force
foreach space {{Data_MM2S Data_S2MM}} {{
    assign_bd_address -target_address_space [get_bd_addr_spaces {dma}/$space] \\
        [get_bd_addr_segs processing_system7_0/S_AXI_HP0/HP0_DDR_LOWOCM] -force
}}
{weight_addr}validate_bd_design
save_bd_design

# wrapper, synthesis, implementation, bitstream
set bd [get_files {_OVERLAY}.bd]
generate_target all $bd
make_wrapper -files $bd -top
set wrapper [lindex [glob -nocomplain \\
    [file join $here vivado {_OVERLAY} {_OVERLAY}.gen sources_1 bd {_OVERLAY} hdl {_OVERLAY}_wrapper.v] \\
    [file join $here vivado {_OVERLAY} {_OVERLAY}.srcs sources_1 bd {_OVERLAY} hdl {_OVERLAY}_wrapper.v]] 0]
add_files -norecurse $wrapper
set_property top {_OVERLAY}_wrapper [current_fileset]
update_compile_order -fileset sources_1
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] != "100%"}} {{
    puts "LCP ERROR: implementation or bitstream generation failed (see vivado.log)"
    exit 1
}}
file mkdir [file join $here reports]
open_run impl_1
report_utilization -file [file join $here reports utilization.rpt]
report_timing_summary -file [file join $here reports timing.rpt]
set wns [get_property STATS.WNS [get_runs impl_1]]

# collect the overlay: PYNQ wants the .bit and .hwh side by side with one base name
file mkdir [file join $here overlay]
file copy -force [lindex [glob [file join [get_property DIRECTORY [get_runs impl_1]] *.bit]] 0] \\
    [file join $here overlay {_OVERLAY}.bit]
set hwh [lindex [glob -nocomplain \\
    [file join $here vivado {_OVERLAY} {_OVERLAY}.gen sources_1 bd {_OVERLAY} hw_handoff {_OVERLAY}.hwh] \\
    [file join $here vivado {_OVERLAY} {_OVERLAY}.srcs sources_1 bd {_OVERLAY} hw_handoff {_OVERLAY}.hwh]] 0]
file copy -force $hwh [file join $here overlay {_OVERLAY}.hwh]
set fh [open [file join $here reports vivado.json] w]
puts $fh "{{\\"wns_ns\\": $wns, \\"vivado\\": \\"[version -short]\\"}}"
close $fh
puts "LCP: overlay written to [file join $here overlay] (WNS $wns ns)"
"""


def write_project(model: Model, out_dir: str | Path, *, board: str = "pynq-z2", folding=None,
                  budget: str | None = "xc7z020", target: int | None = None,
                  scope: str = "core", index: int = 0, in_width: int = 64,
                  out_width: int = 64, jobs: int = 2,
                  reused: tuple[int, int] | None = None) -> Project:
    """Generate, lint and write the Vivado project of ``model`` for ``board`` (module doc).
    ``reused=(pe, simd)`` builds the reused engine of that size; without it, it is the
    fallback when no dataflow design fits ``budget``.

    Raises
    ------
    IRError
        on an unknown board or a model the hardware cannot build.
    SynthError
        when the top does not pass the lint.
    """
    if board not in BOARDS:
        raise IRError(f"unknown board {board!r} (known: {', '.join(BOARDS)})")
    if folding is not None:
        budget = target = None
    out = Path(out_dir)
    hdl = out / "hdl"
    if hdl.exists():
        shutil.rmtree(hdl)
    try:
        if reused is not None:
            b = generate_pynq_reused(model, hdl, *reused, scope=scope, index=index,
                                     in_width=in_width, out_width=out_width)
        else:
            b = generate_pynq(model, hdl, folding=folding, budget=budget, target=target,
                              scope=scope, index=index, in_width=in_width, out_width=out_width)
    except IRError:
        if reused is not None or budget is None or folding is not None or target is not None:
            raise
        # no dataflow design fits (as `lcp compile --budget`): the reused engine, weights
        # from DRAM over HP0
        c = choose_reused(model, budget, scope=scope, index=index)
        b = generate_pynq_reused(model, hdl, c.pe, c.simd, scope=scope, index=index,
                                 in_width=in_width, out_width=out_width)
    p = Project(out, BOARDS[board], model.name, b.info.digest, b.info.inp.width,
                b.info.out.width, reads_dram=b.folding is None)
    p.lint = lint(b.verilog, log=out / "reports" / "lint.log")
    (out / "package_ip.tcl").write_text(_tcl_package_ip(p))
    (out / "build.tcl").write_text(_tcl_build(p, jobs))
    ov = p.overlay
    ov.mkdir(parents=True, exist_ok=True)
    for f in ("lcp_engine.json", "REGISTERS.md") + (("weights.bin",) if p.reads_dram else ()):
        shutil.copy(hdl / f, ov / f)
    save(model, ov / "model")
    (out / "README.md").write_text(_readme(p))
    _write_status(p, "project")
    return p


def _readme(p: Project) -> str:
    return f"""# PYNQ overlay project: {p.model} on {p.board.name}

Generated by `lcp bitstream`. Model hash `{p.digest}`; DMA streams {p.in_width}/{p.out_width}
bits; part {p.board.part}, board part {p.board.board_part}.

Build (Vivado {VIVADO_VERSION}, {p.board.board_files}):

    {vivado_command(".")}

It packages `hdl/lcp_pynq.v` as IP, builds the block design, runs implementation and writes
`overlay/{_OVERLAY}.bit` and `overlay/{_OVERLAY}.hwh`. Then copy `overlay/` to the board and:

    from lcp.sw.pynq.executors import LcpOverlay
    ol = LcpOverlay("overlay/{_OVERLAY}.bit")
    y = ol.predict(x)

Register map: `overlay/REGISTERS.md`. The same driver runs against the simulated hardware
anywhere: `lcp run MODEL X.npy -o Y.npy --backend pynq-sim`.
"""


def _write_status(p: Project, status: str, **extra) -> None:
    doc = {"format": "lcp-bitstream", "status": status, "board": p.board.name,
           "part": p.board.part, "board_part": p.board.board_part, "model": p.model,
           "digest": p.digest, "in_width": p.in_width, "out_width": p.out_width,
           "lint": p.lint, "command": vivado_command("THIS_FOLDER"), "overlay": "overlay/",
           **extra}
    (p.dir / "bitstream.json").write_text(json.dumps(doc, indent=1))


def build_project(p: Project, *, timeout: float | None = None) -> float:
    """Run Vivado on a written project; seconds. Raises :class:`~lcp.synth.tools.ToolMissing`
    without Vivado, :class:`~lcp.synth.tools.ToolFailed` when it fails or leaves no overlay."""
    vivado = find_tool("vivado")
    _, dt = run_tool([vivado, "-mode", "batch", "-source", "build.tcl", "-log", "vivado.log",
                      "-journal", "vivado.jou", "-notrace"], p.dir / "vivado.stdout.log",
                     cwd=p.dir, timeout=timeout)
    missing = [f.name for f in (p.bit, p.hwh) if not f.exists()]
    if missing:
        raise ToolFailed(f"Vivado finished but left no {' and no '.join(missing)} in "
                         f"{p.overlay} (see {p.dir / 'vivado.log'})")
    extra = {}
    rep = p.dir / "reports" / "vivado.json"
    if rep.exists():
        try:
            extra = json.loads(rep.read_text())
        except ValueError:
            pass
    _write_status(p, "built", seconds=round(dt, 1), **extra)
    return dt


def make_bitstream(model: Model, out_dir: str | Path, *, board: str = "pynq-z2",
                   run: bool = True, timeout: float | None = None, **kwargs) -> BitstreamResult:
    """Write the project and, when ``run`` and Vivado is on ``PATH``, build it.

    Returns a :class:`BitstreamResult` whose ``status`` is ``"built"`` (overlay/ holds the
    ``.bit`` and ``.hwh``) or ``"not-built"`` (the message names the command to run where
    Vivado is installed). Raises as :func:`write_project` and :func:`build_project`.
    """
    p = write_project(model, out_dir, board=board, **kwargs)
    cmd = vivado_command(p.dir)
    if run and have_tool("vivado"):
        dt = build_project(p, timeout=timeout)
        return BitstreamResult(p, "built", f"overlay built in {dt:.0f} s: {p.bit} and {p.hwh} "
                                           f"(copy {p.overlay}/ to the board)", dt)
    why = "not asked to run Vivado" if not run else "Vivado is not on PATH here"
    msg = (f"project written to {p.dir}, bitstream NOT built ({why}). On a machine with Vivado "
           f"{VIVADO_VERSION} and the {p.board.name} board files, run:\n    {cmd}\n"
           f"then copy {p.overlay}/ to the board.")
    _write_status(p, "project", note=why)
    return BitstreamResult(p, "not-built", msg)
