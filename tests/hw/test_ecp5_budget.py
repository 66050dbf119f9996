"""ECP5 budgets: the LFE5U parts in the estimate's units, the folding chooser within the 85F,
``lcp compile --budget lfe5u-85f``, and a bad budget name as one line and exit code 2."""

import json

import pytest

from lcp import save
from lcp.benchmarks.hw import zoo_model
from lcp.hw.base import DEVICES, ECP5_FF_PER_FF, ECP5_LUT4_PER_LUT6, ECP5_PARTS, ecp5_units
from lcp.hw.chooser import choose
from lcp.sw.cli import main

from tests.hw.irgen import Builder


def _net():
    b = Builder((2, 8, 8), seed=3)
    x = b.threshold(b.conv("input", 6, 3, pad=1), 4)
    x = b.flatten(b.maxpool(x, 2))
    b.dense(x, 5)
    return b.model()


def test_budgets_are_the_parts_in_estimate_units():
    for name, part in ECP5_PARTS.items():
        native = ecp5_units(DEVICES[name])
        assert native == pytest.approx({k: float(v) for k, v in part.items()})
    b = DEVICES["lfe5u-85f"]
    assert b.lut == pytest.approx(83_640 / ECP5_LUT4_PER_LUT6)
    assert b.ff == pytest.approx(83_640 / ECP5_FF_PER_FF)
    assert (b.dsp, b.bram) == (156, 104)


def test_cifarnet_split8_branch_folding_fits_the_85f():
    """The chooser's folding of the CifarNet-split8 branch 0 for the 85F: its estimate in ECP5
    units within the part, its DSP lanes on at most 156 MULT18X18D, faster than the 10,000-cycle
    folding that fitted an ECP5 with LUT multipliers only."""
    m = zoo_model("cifarnet", 8, 4)
    c = choose(m, budget="lfe5u-85f", scope="branch", index=0)
    need = ecp5_units(c.resources)
    assert all(need[k] <= v for k, v in ECP5_PARTS["lfe5u-85f"].items()), need
    assert 0 < need["mult18"] <= 156
    assert sum(f.get("dsp", 0) for f in c.folding.layers.values()) > 0
    assert c.latency < 10_000


def test_cli_compile_uses_the_ecp5_budget(tmp_path):
    save(_net(), tmp_path / "m")
    code = main(["compile", str(tmp_path / "m.json"), "-o", str(tmp_path / "b"),
                 "--budget", "lfe5u-85f", "--clock-mhz", "100", "--target", "ecp5"])
    assert code == 0
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["chooser"]["budget"] == "lfe5u-85f"
    assert rep["budgets"]["lfe5u-85f"]["fits"]


def test_cli_compile_bad_budget_is_one_line(tmp_path, capsys):
    save(_net(), tmp_path / "m")
    code = main(["compile", str(tmp_path / "m.json"), "-o", str(tmp_path / "b"),
                 "--budget", "lfe5u-99f"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lfe5u-99f" in err[0] and "lfe5u-85f" in err[0], err
