"""``lcp synth`` bad input, the report tables and plots, and the Pareto filter."""

import json
from pathlib import Path

import pytest

from lcp.sw.cli import main
from lcp.synth import report as rp
from lcp.synth.explore import pareto


def _run(capsys, *args):
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_needs_exactly_one_flow(tmp_path, capsys):
    (tmp_path / "x.v").write_text("module x(input clk); endmodule\n")
    code, _, err = _run(capsys, "synth", str(tmp_path / "x.v"))
    assert code == 2 and "exactly one of --fpga" in err
    code, _, err = _run(capsys, "synth", str(tmp_path / "x.v"), "--fpga", "ecp5", "--asic",
                        "osu018")
    assert code == 2 and "exactly one of --fpga" in err


def test_bad_pnr_seeds(tmp_path, capsys):
    (tmp_path / "x.v").write_text("module x(input clk); endmodule\n")
    code, _, err = _run(capsys, "synth", str(tmp_path / "x.v"), "--fpga", "ecp5",
                        "--pnr-seeds", "1,two")
    assert code == 2 and "--pnr-seeds: '1,two'" in err and err.count("\n") == 1


def test_missing_build_folder(tmp_path, capsys):
    code, _, err = _run(capsys, "synth", str(tmp_path / "nope"), "--fpga", "xc7z020")
    assert code == 2 and "not a build folder" in err and "lcp compile" in err


def test_folder_without_verilog(tmp_path, capsys):
    code, _, err = _run(capsys, "synth", str(tmp_path), "--asic", "osu018")
    assert code == 2 and "no Verilog" in err


def test_missing_library_folder(tmp_path, capsys):
    (tmp_path / "x.v").write_text("module x(input clk); endmodule\n")
    code, _, err = _run(capsys, "synth", str(tmp_path / "x.v"), "--asic", "asap7", "--pdk-dir",
                        str(tmp_path / "pdk"))
    assert code == 2 and "ASAP7 library folder" in err and "does not exist" in err
    assert err.count("\n") == 1                          # one line, no traceback


def test_unknown_targets(tmp_path, capsys):
    (tmp_path / "x.v").write_text("module x(input clk); endmodule\n")
    code, _, err = _run(capsys, "synth", str(tmp_path / "x.v"), "--asic", "tsmc5")
    assert code == 2 and "unknown cell library 'tsmc5'" in err
    code, _, err = _run(capsys, "synth", str(tmp_path / "x.v"), "--fpga", "virtex")
    assert code == 2 and "unknown FPGA target 'virtex'" in err


def test_missing_tool(tmp_path, capsys, monkeypatch):
    """Without OpenSTA on PATH the ASIC flow stops at once and says what to install."""
    (tmp_path / "x.v").write_text("module x(input clk); endmodule\n")
    monkeypatch.setenv("PATH", str(tmp_path))            # no sta, no c++ here
    code, _, err = _run(capsys, "synth", str(tmp_path / "x.v"), "--asic", "osu018")
    if not Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib").exists():
        pytest.skip("osu018 not installed")
    assert code == 2 and "sta not found" in err and "opensta" in err


def _asic_report(total_w=0.012, latency=1000):
    return rp.finish({
        "kind": "asic", "target": "asap7", "design": "d", "top": "lcp_branch",
        "clock_mhz": 800.0,
        "totals": {"area_um2": 1234.5, "area_mm2": 0.0012345, "cells": 100, "flops": 10,
                   "worst_slack_ns": 0.1, "timing_met": True, "fmax_mhz": 870.0,
                   "internal_w": None if total_w is None else total_w / 2,
                   "switching_w": None if total_w is None else total_w / 2,
                   "leakage_w": None if total_w is None else 1e-6, "total_w": total_w,
                   "latency_cycles": latency, "latency_us": latency / 800,
                   "energy_nj": None if total_w is None else total_w * latency / 800e6 * 1e9},
        "groups": {"b0_conv0": {"layer": "b0_conv0", "area_um2": 1000.0, "cells": 80,
                                "internal_w": 0.005, "switching_w": 0.005, "leakage_w": 1e-6,
                                "total_w": 0.010, "energy_nj": 12.5},
                   "relane_b0_dense0": {"layer": None, "area_um2": 234.5, "cells": 20,
                                        "internal_w": None, "switching_w": None,
                                        "leakage_w": None, "total_w": None, "energy_nj": None},
                   "(top)": {"layer": None, "area_um2": 0.0, "cells": 0}},
        "unmeasured": [] if total_w is not None else [{"what": "power", "why": "no sta"}],
        "simulation": None, "wall_time_s": 12.0})


def test_report_tables_mark_missing_figures():
    r = _asic_report(total_w=None)
    txt = rp.text_table(r)
    assert "n/a" in txt and "not measured: power: no sta" in txt
    md = rp.markdown_table([r])
    assert "| d | asap7 | 800 |" in md and "n/a" in md and "- d / asap7: power: no sta" in md
    assert "0.0" not in md.split("\n")[2].split("|")[6]   # power column is n/a, not zero


def test_rollups_and_files(tmp_path):
    r = _asic_report()
    assert r["format"] == rp.REPORT_FORMAT and r["branches"]["branch0"]["area_um2"] == 1234.5
    per = rp.rollup(r, "layer")
    assert per["b0_conv0"]["total_w"] == 0.010 and per["(plumbing)"]["total_w"] is None
    j, t = rp.save(r, tmp_path)
    assert rp.load(j)["totals"]["area_um2"] == 1234.5
    assert "TOTAL" in t.read_text()
    png = rp.plot_breakdown(r, tmp_path / "b.png")
    assert png.stat().st_size > 5000
    with pytest.raises(ValueError, match="not an lcp synthesis report"):
        (tmp_path / "bad.json").write_text(json.dumps({"x": 1}))
        rp.load(tmp_path / "bad.json")


def test_pareto():
    pts = [{"l": 10, "a": 5}, {"l": 5, "a": 10}, {"l": 10, "a": 10}, {"l": 2, "a": 20},
           {"l": 5, "a": 10}]
    assert pareto(pts, ("l", "a")) == [True, True, False, True, True]
    # a key missing in some point is left out of the comparison
    pts = [{"l": 1, "p": None}, {"l": 2, "p": 3.0}]
    assert pareto(pts, ("l", "p")) == [True, False]


