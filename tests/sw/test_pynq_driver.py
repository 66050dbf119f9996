"""The PYNQ driver: frame packing against the hardware generator's, and the driver itself on the
simulated board (PYNQ's MMIO, DMA and allocate over the Verilated top): results equal golden,
with idle and back-pressure on the DMA streams, and the error paths (wrong model, shapes,
input, timeout and recovery)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.hw.base import StreamFormat, hwc_perm
from lcp.hw.plumbing import pack_frames as hw_pack
from lcp.hw.plumbing import unpack_frames as hw_unpack
from lcp.ir import save
from lcp.sw.cli import main as lcp_main
from lcp.frames import Port, pack_frames, unpack_frames
from lcp.hw.reuse_program import ReusedProgram
from lcp.sw.pynq.driver import (BoardUnavailable, DriverTimeout, InputMismatch, LcpDriver,
                                ModelMismatch, PynqError)
from lcp.sw.pynq.executors import PynqExecutor, PynqSimExecutor
from lcp.sw.pynq.sim import DDR_BASE
from lcp.sw.pynq.weights import ALIGN

from tests.hw.test_reuse_rtl import vgg_like
from tests.pynq_common import other_model, tiny_build, tiny_model


@pytest.mark.parametrize("shape,lo,hi,width", [
    ((3, 4, 5), 0, 255, 64), ((3, 4, 5), 0, 15, 32), ((7,), -7, 7, 32), ((10,), -2630, 2897, 64),
    ((2, 3, 3), -32768, 32767, 32), ((5,), 0, 1, 64), ((4, 2, 2), -4, 3, 64)])
def test_packing_matches_the_hardware_generator(shape, lo, hi, width):
    rng = np.random.default_rng(0)
    fmt = StreamFormat(shape, lo, hi, 1, hwc_perm(shape))
    words = -(-fmt.size * fmt.bits // width)
    port = Port("t", shape, lo, hi, fmt.bits, fmt.signed, width, words, fmt.perm)
    x = rng.integers(lo, hi + 1, size=(5, *shape))
    ours = pack_frames(x, port)
    theirs = np.frombuffer(b"".join(hw_pack(x, fmt, width)), np.uint8).reshape(5, -1)
    assert np.array_equal(ours, theirs)
    assert np.array_equal(unpack_frames(ours, port), x)
    assert np.array_equal(hw_unpack([r.tobytes() for r in ours], fmt), x)


def test_executors_are_cheap_and_pynq_needs_a_board():
    t0 = time.time()
    ex = PynqSimExecutor(tiny_model())
    assert ex.board is None and time.time() - t0 < 1.0
    ex.close()
    with pytest.raises(BoardUnavailable, match="--backend pynq-sim"):
        PynqExecutor(tiny_model())


def test_cli_pynq_without_a_board(tmp_path, capsys):
    m = tiny_model()
    save(m, tmp_path / "m")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 6, 6), np.float32))
    code = lcp_main(["run", str(tmp_path / "m.json"), str(tmp_path / "x.npy"), "-o",
                     str(tmp_path / "y.npy"), "--backend", "pynq"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "not a PYNQ board" in err, err


@pytest.fixture(scope="module")
def sim():
    """One simulated board for the module: the driver over the tiny model's PYNQ top."""
    b = tiny_build(32)
    ex = PynqSimExecutor(tiny_model(), folding=b.folding, in_width=32, out_width=32, batch=8,
                         timeout=60)
    ex.prepare()
    yield ex
    ex.close()


def _xq(n, seed=0, shape=(1, 6, 6)):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape))


def test_sim_equals_golden_across_batches(sim):
    gold = Golden(sim.model)
    for n in (1, 8, 19):                   # one transfer, a full one, three with a short one
        xq = _xq(n, seed=n)
        y = sim.run_int(xq)
        assert np.array_equal(y, gold.run_int(xq))
        assert sim.driver.last_call["transfers"] == -(-n // 8)
        assert sim.driver.last_call["busy_cycles"] > 0
    x = np.random.default_rng(1).random((5, 1, 6, 6)).astype(np.float32)
    assert np.array_equal(sim.driver.predict(x), gold.run(x))


def test_sim_with_idle_and_backpressure(sim):
    sim.board.set_pause([1, 1, 1, 0], [1, 1, 1, 0])
    try:
        xq = _xq(10, seed=7)
        assert np.array_equal(sim.run_int(xq), Golden(sim.model).run_int(xq))
    finally:
        sim.board.set_pause()


def test_registers_report_the_build(sim):
    info = sim.driver.info()
    assert info["digest"] == sim.model.digest()
    assert info["input"]["shape"] == (1, 6, 6) and info["output"]["shape"] == (3,)
    assert info["counters"]["frames_in"] == info["counters"]["frames_out"]


def test_weight_buffer_is_loaded_into_the_simulated_ddr_and_its_address_set(sim):
    """The driver allocates the reused engine's weight image in the simulated board's DDR (the
    file its DMA model reads) and writes the buffer's address into WEIGHT_BASE, read back over
    AXI4-Lite from the Verilated top; the engine keeps computing golden results."""
    prog = ReusedProgram(vgg_like(), 2, 8)
    img = prog.dram_image()
    wb = sim.driver.load_weights(prog)
    assert wb.base >= DDR_BASE and (wb.base - DDR_BASE) % ALIGN == 0
    assert wb.addresses == {"reused": wb.base} and wb.nbytes >= img.size
    assert sim.driver.engine.read("WEIGHT_BASE") == wb.base
    with open(sim.board._ddr.path, "rb") as f:        # the DDR as the simulator sees it
        f.seek(wb.base - DDR_BASE)
        assert f.read(img.size) == img.tobytes()
    first = wb.base
    wb2 = sim.driver.load_weights(prog)                   # a reload replaces the buffer
    assert sim.driver.engine.read("WEIGHT_BASE") == wb2.base
    with pytest.raises(PynqError, match="not a 32-bit address"):
        sim.driver.engine.set_weight_base(1 << 32)
    assert sim.driver.engine.read("WEIGHT_BASE") == wb2.base != 0 and first >= DDR_BASE
    xq = _xq(3, seed=4)
    assert np.array_equal(sim.run_int(xq), Golden(sim.model).run_int(xq))


def _driver(sim, model):
    ol = sim.board.overlay()
    return LcpDriver(ol.lcp_engine_0, ol.axi_dma_0, doc=sim.board.doc, model=model,
                     allocate=sim.board.allocate)


def test_wrong_model_is_refused(sim):
    with pytest.raises(ModelMismatch, match=r"computes another model \(hash [0-9a-f]{16}\.\.\., "
                                            r"built from 'tiny2'\) than 'tiny2'"):
        _driver(sim, other_model())


def test_shape_mismatch_is_refused(sim):
    with pytest.raises(ModelMismatch, match=r"hardware's input is \(1, 6, 6\) 8-bit unsigned, "
                                            r"model 't8' has \(1, 8, 8\) 8-bit unsigned"):
        _driver(sim, tiny_model(name="t8", in_shape=(1, 8, 8)))


def test_bad_inputs_are_refused(sim):
    with pytest.raises(InputMismatch, match=r"input shape \(2, 1, 5, 5\) does not match the "
                                            r"hardware's \(N, 1, 6, 6\)"):
        sim.run_int(_xq(2, shape=(1, 5, 5)))
    with pytest.raises(InputMismatch, match="integer input expected"):
        sim.run_int(_xq(2).astype(np.float32))
    with pytest.raises(InputMismatch, match=r"outside the hardware's range \[0, 255\]"):
        sim.run_int(_xq(2) + 300)


def test_timeout_reports_and_recovers(sim):
    """A sink that never takes a word: the S2MM wait times out with the engine's state in the
    message; the driver resets the DMA and the engine and works again."""
    drv = sim.driver
    drv.engine.write("WATCHDOG", 2000)      # flags within the timeout however slow the machine
    sim.board.set_pause([], [1])
    old = drv.timeout
    drv.timeout = 3.0
    try:
        # the blocked output back-pressures the input: with more images than the engines'
        # links and skid buffers hold, MM2S is the first to time out
        with pytest.raises(DriverTimeout, match=r"timeout waiting for the DMA's MM2S \(images "
                                                r"in\) channel; engine BUSY.*OUT_VALID=1, "
                                                r"error flags OUT_BLOCKED; .*\(8 image\(s\) "
                                                r"in this transfer\); the DMA and the engine "
                                                r"were reset"):
            drv.run_int(_xq(8))
    finally:
        drv.timeout = old
        sim.board.set_pause()
    xq = _xq(4, seed=11)
    assert np.array_equal(drv.run_int(xq), Golden(sim.model).run_int(xq))


def test_driver_overhead_is_measurable(sim):
    dev = sim.board.device
    w0, t0 = dev.wait_seconds, time.perf_counter()
    sim.run_int(_xq(8))
    wall, waited = time.perf_counter() - t0, dev.wait_seconds - w0
    assert 0 < waited < wall


def test_cli_pynq_sim_equals_golden(tmp_path, capsys):
    """`lcp run --backend pynq-sim` (default folding) == `--backend golden`, integer outputs."""
    m = tiny_model()
    save(m, tmp_path / "m")
    np.save(tmp_path / "x.npy", _xq(6, seed=5))
    outs = {}
    for be in ("golden", "pynq-sim"):
        code = lcp_main(["run", str(tmp_path / "m.json"), str(tmp_path / "x.npy"), "--int-input",
                         "--int", "-o", str(tmp_path / f"{be}.npy"), "--backend", be])
        assert code == 0, capsys.readouterr().err
        outs[be] = np.load(tmp_path / f"{be}.npy")
    assert np.array_equal(outs["golden"], outs["pynq-sim"])


def test_overlay_library_is_searched_by_model_hash(tmp_path, monkeypatch):
    """A node holding the overlays of several parts finds the one built for its model."""
    import json

    from lcp.sw.pynq.executors import OVERLAY_ENV, _find_overlay

    m, other = tiny_model(), other_model()
    for name, model in (("a", other), ("b", m)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "lcp_overlay.bit").write_bytes(b"")
        (tmp_path / name / "lcp_engine.json").write_text(json.dumps(
            {"engine": {"digest": model.digest()}}))
    assert _find_overlay(tmp_path, m) == tmp_path / "b" / "lcp_overlay.bit"
    monkeypatch.setenv(OVERLAY_ENV, str(tmp_path / "a"))
    assert _find_overlay(None, m) == tmp_path / "a" / "lcp_overlay.bit"
    with pytest.raises(BoardUnavailable, match="no overlay folder built for model 't8'"):
        _find_overlay(tmp_path, tiny_model(name="t8", in_shape=(1, 8, 8)))


def test_markdown_renders_the_bench(tmp_path):
    import json

    from lcp.benchmarks.pynq import BENCH_FILE, markdown

    assert "Not measured yet" in markdown(tmp_path)
    row = {"batch": 8, "calls": 2, "images": 16, "images_per_second": 9.5,
           "seconds_per_call": 0.8, "overhead_per_call": 0.004, "overhead_per_image": 0.0005,
           "sim_wait_per_call": 0.796, "hw_cycles_per_image": 930.0,
           "hw_images_per_second": 107526.9}
    (tmp_path / BENCH_FILE).write_text(json.dumps(
        {"command": "lcp pynq-bench", "model": "m", "weights": "trained", "in_width": 64,
         "out_width": 64, "clock_mhz": 100.0, "bit_exact": True, "machine": "x", "rows": [row]}))
    md = markdown(tmp_path)
    assert "| 8 | 2 | 9.5 | 800.0 | 4.00 | 500.0 | 930 | 107,527 |" in md and "**yes**" in md
