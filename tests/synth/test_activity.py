"""VCD -> toggle rate and duty cycle, checked against hand-made dumps (pyvcd writes them)."""


import pytest
from vcd import VCDWriter

from lcp.synth.activity import vcd_activity

PERIOD = 10


def _write(path, changes, end):
    """``changes``: list of (time, var, value); vars: a (1 bit), b (4 bits), c (1 bit, x first)."""
    with open(path, "w") as f:
        with VCDWriter(f, timescale="1 ns", date="today") as w:
            tb = {}
            tb["a"] = w.register_var("tb.dut", "a", "wire", size=1, init=0)
            tb["b"] = w.register_var("tb.dut", "b", "wire", size=4, init=0)
            tb["c"] = w.register_var("tb.dut", "c", "wire", size=1, init="x")
            tb["o"] = w.register_var("tb.other", "a", "wire", size=1, init=0)
            for t, name, v in changes:
                w.change(tb[name], t, v)
            w.change(tb["o"], end, 1)


@pytest.fixture(params=["pyvcd", "fast"])
def reader(request):
    return request.param


def test_toggles_and_duty_by_hand(tmp_path, reader):
    p = tmp_path / "hand.vcd"
    # a: 0 ->1 at 10, ->0 at 30, ->1 at 60 (high 10..30 and 60..100): 3 toggles, 60 % high
    # b: 0000 -> 0101 at 20 -> 0110 at 50: bit0 1 toggle... see asserts
    # c: x until 40 (no toggle), 1 from 40, 0 at 80: 1 toggle, high 40..80
    _write(p, [(10, "a", 1), (20, "b", 0b0101), (30, "a", 0), (40, "c", 1), (50, "b", 0b0110),
               (60, "a", 1), (80, "c", 0)], end=100)
    act = vcd_activity(p, scope="tb.dut", period=PERIOD, t0=0, t1=100, reader=reader)
    assert act.cycles == 10
    assert act.toggles["a"] == 3 and act.rate("a") == pytest.approx(0.3)
    assert act.duty("a") == pytest.approx(0.6)
    # b[0]: 0 -> 1 (20) -> 0 (50); b[1]: 0 -> 0 -> 1 (50); b[2]: 0 -> 1 (20) -> 1; b[3]: 0
    assert [act.toggles[f"b[{i}]"] for i in range(4)] == [2, 1, 1, 0]
    assert act.duty("b[0]") == pytest.approx(0.3)
    assert act.duty("b[1]") == pytest.approx(0.5)
    assert act.duty("b[2]") == pytest.approx(0.8)
    assert act.toggles["c"] == 1 and act.duty("c") == pytest.approx(0.4)
    assert "tb.other.a" not in act.toggles and len(act.toggles) == 6   # other scopes not read


def test_window_excludes_changes_outside(tmp_path, reader):
    p = tmp_path / "w.vcd"
    _write(p, [(10, "a", 1), (30, "a", 0), (60, "a", 1)], end=100)
    act = vcd_activity(p, scope="tb.dut", period=PERIOD, t0=20, t1=70, reader=reader)
    assert act.cycles == 5
    assert act.toggles["a"] == 2                   # 30 and 60 only
    assert act.duty("a") == pytest.approx((30 - 20 + 70 - 60) / 50)


def test_readers_agree_on_a_random_dump(tmp_path):
    import random
    rnd = random.Random(3)
    ch = []
    for t in range(1, 400):
        if rnd.random() < 0.4:
            ch.append((t, "a", rnd.randrange(2)))
        if rnd.random() < 0.3:
            ch.append((t, "b", rnd.randrange(16)))
    p = tmp_path / "r.vcd"
    _write(p, ch, end=400)
    a = vcd_activity(p, scope="dut", period=PERIOD, t0=5, reader="pyvcd")
    b = vcd_activity(p, scope="dut", period=PERIOD, t0=5, reader="fast")
    assert a.toggles == b.toggles
    assert a.high == pytest.approx(b.high)
    assert a.t1 == b.t1 == 400


def test_missing_scope_is_an_error(tmp_path):
    p = tmp_path / "m.vcd"
    _write(p, [], end=10)
    with pytest.raises(ValueError, match="declares no variable"):
        vcd_activity(p, scope="tb.nothere", period=PERIOD)


def test_empty_window_is_an_error(tmp_path):
    p = tmp_path / "e.vcd"
    _write(p, [(10, "a", 1)], end=10)
    with pytest.raises(ValueError, match="empty activity window"):
        vcd_activity(p, scope="tb.dut", period=PERIOD, t0=50, t1=50)


