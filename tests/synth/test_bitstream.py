"""`lcp bitstream`: the Vivado project is written and linted without Vivado (exit 3, the message
names the command), a (fake) Vivado on PATH is run and its overlay collected, and the generated
top passes `verilator --lint-only`."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from lcp.ir import save
from lcp.sw.cli import main as lcp_main
from lcp.synth.bitstream import EXIT_NOT_BUILT, lint, make_bitstream
from lcp.synth.tools import SynthError, ToolFailed

from tests.pynq_common import tiny_folding, tiny_model


@pytest.fixture()
def model_files(tmp_path):
    save(tiny_model(), tmp_path / "m")
    tiny_folding(32).save(tmp_path / "f.json")
    return tmp_path / "m.json", tmp_path / "f.json"


def _no_vivado_path(monkeypatch):
    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not (Path(p) / "vivado").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), *keep]))


def test_project_without_vivado(tmp_path, model_files, monkeypatch, capsys):
    _no_vivado_path(monkeypatch)
    m, f = model_files
    out = tmp_path / "proj"
    code = lcp_main(["bitstream", str(m), "--board", "pynq-z2", "--folding", str(f), "--width",
                     "32", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == EXIT_NOT_BUILT, text
    assert "NOT built" in text and "vivado -mode batch -source build.tcl" in text
    assert f"cd {out}" in text
    assert "passes `verilator --lint-only" in text
    for name in ("build.tcl", "package_ip.tcl", "README.md", "hdl/lcp_pynq.v",
                 "hdl/lcp_engine.json", "overlay/lcp_engine.json", "overlay/model.json",
                 "overlay/model.npz", "overlay/REGISTERS.md", "bitstream.json"):
        assert (out / name).is_file(), name
    assert not (out / "overlay" / "lcp_overlay.bit").exists()
    st = json.loads((out / "bitstream.json").read_text())
    assert st["status"] == "project" and st["lint"]["ok"] and st["part"] == "xc7z020clg400-1"
    tcl = (out / "build.tcl").read_text()
    for want in ("set part xc7z020clg400-1", "set board_part tul.com.tw:pynq-z2:part0:1.0",
                 "xilinx.com:ip:processing_system7:5.5", 'apply_board_preset "1"',
                 "xilinx.com:ip:axi_dma:7.1", "CONFIG.c_include_sg {0}",
                 "CONFIG.c_sg_length_width {26}", "CONFIG.c_m_axis_mm2s_tdata_width {32}",
                 "CONFIG.c_s_axis_s2mm_tdata_width {32}", "lcp:lcp:lcp_engine:1.0 lcp_engine_0",
                 "xilinx.com:ip:smartconnect:1.0", "xilinx.com:ip:axi_interconnect:2.1",
                 "-offset 0x43C00000 -range 64K", "-offset 0x40400000 -range 64K",
                 "make_wrapper", "launch_runs impl_1 -to_step write_bitstream",
                 "lcp_overlay.hwh"):
        assert want in tcl, want
    pkg = (out / "package_ip.tcl").read_text()
    assert "ipx::package_project" in pkg and "-vendor lcp -library lcp" in pkg
    assert "ACTIVE_LOW" in pkg and "[file join $here hdl lcp_pynq.v]" in pkg
    assert str(tmp_path) not in tcl + pkg           # the project moves to the Vivado machine


def test_pynq_z1_and_bad_board(tmp_path, model_files, monkeypatch, capsys):
    _no_vivado_path(monkeypatch)
    m, f = model_files
    code = lcp_main(["bitstream", str(m), "--board", "pynq-z1", "--folding", str(f), "--width",
                     "32", "-o", str(tmp_path / "z1"), "--project-only"])
    assert code == 0, capsys.readouterr().err
    assert "www.digilentinc.com:pynq-z1:part0:1.0" in (tmp_path / "z1" / "build.tcl").read_text()
    code = lcp_main(["bitstream", str(m), "--board", "zcu104", "--folding", str(f), "-o",
                     str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown board 'zcu104'" in err and err.count("\n") == 0


def _fake_vivado(folder: Path, body: str) -> None:
    folder.mkdir()
    exe = folder / "vivado"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_vivado_is_run_and_the_overlay_collected(tmp_path, monkeypatch):
    """A stand-in `vivado` that writes what build.tcl writes: the overlay is collected."""
    _fake_vivado(tmp_path / "bin", 'test "$4" = build.tcl || exit 9\nmkdir -p overlay reports\n'
                 'echo bit > overlay/lcp_overlay.bit\necho hwh > overlay/lcp_overlay.hwh\n'
                 'echo \'{"wns_ns": 0.42}\' > reports/vivado.json\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    r = make_bitstream(tiny_model(), tmp_path / "p", folding=tiny_folding(32), in_width=32,
                       out_width=32)
    assert r.status == "built" and r.project.bit.is_file() and r.project.hwh.is_file()
    st = json.loads((tmp_path / "p" / "bitstream.json").read_text())
    assert st["status"] == "built" and st["wns_ns"] == 0.42


def test_vivado_without_overlay_fails(tmp_path, monkeypatch):
    _fake_vivado(tmp_path / "bin", "exit 0\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ToolFailed, match="left no lcp_overlay.bit and no lcp_overlay.hwh"):
        make_bitstream(tiny_model(), tmp_path / "p", folding=tiny_folding(32), in_width=32,
                       out_width=32)


def test_lint_rejects_broken_verilog(tmp_path):
    v = tmp_path / "lcp_pynq.v"
    v.write_text("module lcp_pynq(input a, output y);\n  assign y = a;\n  assign y = ~a;\n"
                 "endmodule\n")
    with pytest.raises(SynthError, match="verilator --lint-only failed"):
        lint(v)


def test_reused_engine_project_reads_weights_over_hp0(tmp_path):
    """The reused engine's project: its top has the AXI4 read master, the IP packager must
    infer it, the block design puts it on HP0 through the SmartConnect with the DDR in its
    address space, and the overlay carries the weight image."""
    from lcp.hw.reuse_program import ReusedProgram
    from lcp.synth.bitstream import write_project

    from tests.hw.test_reuse_rtl import vgg_like

    m = vgg_like()
    p = write_project(m, tmp_path / "proj", reused=(2, 8))
    assert p.reads_dram and p.lint["ok"]
    tcl = (p.dir / "build.tcl").read_text()
    for want in ("CONFIG.NUM_SI {3}",
                 "[get_bd_intf_pins lcp_engine_0/m_axi] [get_bd_intf_pins axi_smc/S02_AXI]",
                 "-target_address_space [get_bd_addr_spaces lcp_engine_0/m_axi]"):
        assert want in tcl, want
    assert "{s_axi_control s_axis m_axis aresetn aclk m_axi}" in \
        (p.dir / "package_ip.tcl").read_text()
    img = ReusedProgram(m, 2, 8).dram_image()
    assert (p.overlay / "weights.bin").read_bytes() == img.tobytes()
    doc = json.loads((p.overlay / "lcp_engine.json").read_text())
    assert doc["folding"]["engine"] == "reused" and doc["folding"]["pe"] == 2
