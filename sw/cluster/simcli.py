"""``lcp cluster simulate | calibrate | paper``: the simulator's commands.

``simulate``  one model, one strategy, a described cluster (a JSON :class:`ClusterSpec`, a
              calibration file of ``calibrate``, or bandwidth / latency / per-MAC speed given
              on the command line): latency p50/p95, throughput, bytes per link, busy time per
              node (JSON), and a timeline plot.
``calibrate`` (root) emulated links as ``lcp cluster emulate`` builds them, with few nodes (no
              more busy worker processes than cores): compute costs of the golden executor,
              link parameters, then the benchmark's runs on those links, and the simulator's
              prediction of each run beside the measurement (``check.json``).
``paper``     the LCP paper's Raspberry Pi table predicted (:mod:`.paper`).
``emulate-replan`` (root) dynamic placement on emulated links: one link's rate drops mid-run
              (:mod:`.replan_run`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from lcp.hw.base import DEVICES
from lcp.hw.pynq_regs import CLOCK_MHZ
from lcp.ir import IRError
from lcp.sw.cli import UsageError
from lcp.usage import load_model

from . import wire
from .bench import prepare_family
from .calibrate import calibrate_compute, check_rows, cluster_from, factors_from_rows, probe_links
from .dispatcher import Dispatcher, connect
from .emulate import Topology, check_root, parse_rate
from .engine import engine_costs, engine_cycles
from .paper import WIRES, load_models, predict
from .procs import ProcessCluster
from .replan_run import replan_experiment
from .simplan import DISPATCHER, ClusterSpec, LinkSpec, NodeSpec, OpCost, build_plan
from .simulator import plot_timeline, summarize

#: One compute thread per process (BLAS included): with as many worker processes as cores, no
#: process has more busy threads than it has a core for (OpenBLAS' default of one thread per
#: core makes every layer wait for a second thread that another process holds).
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: Benchmark runs checked on two nodes (labels of :func:`.bench.default_runs`).
CHECK_RUNS = ("original@1", "lcp8@1", "data/packed", "pipeline/packed", "pipeline/float32",
              "lcp-split4/packed", "lcp-split8/packed", "lcp-split8/float32",
              "hidp-split8/packed")


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float))


def _cluster(cluster_json, calibration, nodes, bandwidth, latency_ms, medium, ms_per_gmac,
             cores, host_cores):

    try:
        bps = parse_rate(bandwidth) if bandwidth else None
    except ValueError as e:
        raise UsageError(f"--bandwidth: {e}") from None
    if cluster_json is not None:
        try:
            return ClusterSpec.from_json(json.loads(Path(cluster_json).read_text()))
        except (OSError, ValueError) as e:
            raise UsageError(f"--cluster {cluster_json}: not a readable JSON file ({e})") \
                from None
    if calibration is not None:
        try:
            cal = json.loads(Path(calibration).read_text())
            cl = cluster_from(cal, nodes, bandwidth_bps=bps, host_cores=host_cores,
                              call_overhead_s=cal.get("call_overhead_s", 0.0),
                              slowdown=cal.get("node_slowdown", 1.0),
                              layer_overhead_s=cal.get("node_layer_overhead_s", 0.0))
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(f"--calibration {calibration}: not a calibration file ({e})") \
                from None
        if latency_ms is not None:
            for l in cl.links.values():
                l.latency_s = latency_ms / 1e3
        cl.medium = medium
        return cl
    costs = {"*": OpCost(0.0, ms_per_gmac / 1e12)}
    return ClusterSpec(NodeSpec(DISPATCHER, cores, None, costs),
                       [NodeSpec(f"node{i:02d}", cores, None, costs) for i in range(nodes)],
                       {"*": LinkSpec(bps or 62e6, (latency_ms or 0.0) / 1e3, 0)}, medium,
                       host_cores)


def register(cluster: typer.Typer) -> None:
    """Add the simulator's and the re-planning experiment's commands to ``lcp cluster``."""
    register_replan(cluster)

    @cluster.command("simulate")
    def simulate_cmd(
            model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
            strategy: str = typer.Option("lcp", help="single | data | pipeline | lcp | hidp | "
                                                     "model-parallel | exchange"),
            nodes: int = typer.Option(8, help="worker nodes"),
            encoding: str = typer.Option("packed", help="packed | float32"),
            batch: int = typer.Option(1, help="images per request"),
            stages: Optional[int] = typer.Option(None, help="pipeline stages"),
            cluster_json: Optional[Path] = typer.Option(None, "--cluster",
                                                        help="a ClusterSpec JSON"),
            calibration: Optional[Path] = typer.Option(
                None, help="calibration.json of `lcp cluster calibrate` (golden costs, links)"),
            bandwidth: Optional[str] = typer.Option(None, help="link rate, e.g. 62mbit"),
            latency_ms: Optional[float] = typer.Option(None, help="one-way ms per message"),
            medium: str = typer.Option("switched", help="switched | shared (WiFi-like)"),
            ms_per_gmac: float = typer.Option(1000.0, help="node speed without calibration: "
                                                           "ms per 10^9 MACs"),
            cores: int = typer.Option(1, help="cores per node (without --cluster)"),
            host_cores: Optional[int] = typer.Option(None, help="cores all devices share"),
            accel: Optional[str] = typer.Option(
                None, help="the nodes are PYNQ engines folded for this device (e.g. xc7z020): "
                           "their costs from the hardware's cycle model at the PL clock"),
            requests: int = typer.Option(20, help="simulated requests"),
            concurrency: int = typer.Option(8, help="requests in flight for throughput"),
            out: Optional[Path] = typer.Option(None, "-o", "--out", help="JSON result"),
            timeline: Optional[Path] = typer.Option(None, help="timeline plot (.png)"),
    ):
        """Simulate serving MODEL with a strategy on a described cluster."""
        if nodes < 1 or requests < 1 or concurrency < 1 or batch < 1:
            raise UsageError("--nodes, --requests, --concurrency and --batch must be >= 1")
        if medium not in ("switched", "shared"):
            raise UsageError(f"--medium {medium!r}: switched or shared")
        m = load_model(model)
        cl = _cluster(cluster_json, calibration, nodes, bandwidth, latency_ms, medium,
                      ms_per_gmac, cores, host_cores)
        if accel is not None:
            if accel not in DEVICES:
                raise UsageError(f"--accel {accel!r}: one of {', '.join(DEVICES)}")
            try:
                costs = engine_costs(engine_cycles(m, accel))
            except IRError as e:
                raise UsageError(f"--accel: {m.name}: {e}") from None
            for n in cl.nodes:
                n.costs = costs
            typer.echo(f"nodes: PYNQ engines folded for {accel} (hardware cycle model at "
                       f"{CLOCK_MHZ} MHz)")
        try:
            plan = build_plan(m, strategy, cl, encoding=encoding, batch=batch, stages=stages,
                              nodes=nodes)
        except IRError as e:
            raise UsageError(str(e)) from None
        s = summarize(plan, cl, requests=requests, concurrency=concurrency)
        typer.echo(f"{m.name} {strategy} on {min(nodes, len(cl.nodes))} node(s), {encoding}: "
                   f"latency p50 {s['latency_ms']['p50']:.2f} ms, p95 "
                   f"{s['latency_ms']['p95']:.2f} ms, throughput "
                   f"{s['throughput_images_s']:.1f} images/s ({concurrency} in flight), "
                   f"{s['bytes_per_inference'] / 1e3:.2f} kB per inference")
        typer.echo(f"  placement: {s['placement']}")
        for note in s["notes"]:
            typer.echo(f"  {note}")
        for k, v in s["busy_ms_per_inference"].items():
            typer.echo(f"  busy {k}: {v:.2f} ms per inference")
        if out:
            _write(out, {"cluster": cl.to_json(), "result": s})
            typer.echo(f"wrote {out}")
        if timeline:
            plot_timeline(plan, cl, timeline, requests=3, concurrency=min(concurrency, 3))
            typer.echo(f"wrote {timeline}")

    @cluster.command("paper")
    def paper_cmd(
            out: Path = typer.Option(Path("results/cluster/paper_rpi.json"), "-o", "--out"),
            cache: Path = typer.Option(Path("runs/cluster-cache"), help="compiled model cache"),
            plots: Optional[Path] = typer.Option(None, help="folder for timeline plots"),
    ):
        """Predict the LCP paper's Raspberry Pi table (AlexNet, VGG16 at 224x224)."""
        res = predict(load_models(cache), plots=plots)
        _write(out, res)
        for fam, rows in res["models"].items():
            for label, r in rows.items():
                paper = (f"paper {r['paper_ms']:7.0f} ms ({r['paper_speedup_vs_single']:5.1f}x)"
                         if "paper_ms" in r else "")
                pred = "  ".join(f"{w} {r[w]['latency_ms']:8.1f} ms "
                                 f"({r[w]['speedup_vs_single']:5.1f}x)" for w in WIRES)
                typer.echo(f"{fam:8s} {label:16s} {pred}  {paper}")
        typer.echo(f"wrote {out}")

    @cluster.command("calibrate")
    def calibrate_cmd(
            nodes: int = typer.Option(2, help="worker devices (at most the cores)"),
            bandwidth: str = typer.Option("5mbit", help="tc rate of every link"),
            family: str = typer.Option("cifarnet", help="benchmark family"),
            run: Optional[List[str]] = typer.Option(None, "--run", help="runs to check"),
            requests: int = typer.Option(30, help="sequential requests per run"),
            throughput_requests: int = typer.Option(40, help="requests for throughput"),
            concurrency: int = typer.Option(2, help="requests in flight for throughput"),
            nice: int = typer.Option(-15, help="niceness of every process of the run (other "
                                               "jobs on the machine take the cores otherwise)"),
            out: Path = typer.Option(Path("runs/cluster-calibrate"), "-o", "--out"),
            results: Optional[Path] = typer.Option(None, help="also write check.json here "
                                                              "(results/cluster/sim_check.json)"),
            cache: Path = typer.Option(Path("runs/cluster-cache"), help="compiled model cache"),
            timeout: float = typer.Option(3600.0, help="seconds for everything"),
    ):
        """(root) Calibrate on emulated links, measure the benchmark's runs there, and write
        the simulator's predictions beside the measurements (OUT/check.json)."""
        check_root()
        try:
            parse_rate(bandwidth)
        except ValueError as e:
            raise UsageError(str(e)) from None
        prepare_family(family, cache, train=False)
        os.nice(nice - os.nice(0))               # inherited by every process started below
        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)

        def _term(*_):
            raise KeyboardInterrupt
        old = signal.signal(signal.SIGTERM, _term)
        try:
            with Topology(nodes, bandwidth) as topo:
                links = topo.write_links(out / "links.json")
                with ProcessCluster(nodes, topology=topo, log_dir=out / "logs",
                                    env=ONE_THREAD) as pc:
                    base = ["ip", "netns", "exec", topo.dispatcher_ns, sys.executable, "-m",
                            "lcp.sw.cli", "cluster"]
                    drv = [*base, "calibrate-driver", "--scheduler", pc.address, "--nodes",
                           str(nodes), "--family", family, "--cache", str(Path(cache).resolve()),
                           "-o", str(out / "calibration.json")]
                    env = {**os.environ, **ONE_THREAD}
                    subprocess.run(drv, check=True, timeout=timeout, env=env)
                    args = [*base, "bench", "--scheduler", pc.address, "--links", str(links),
                            "--nodes", str(nodes), "--requests", str(requests),
                            "--throughput-requests", str(throughput_requests), "--concurrency",
                            str(concurrency), "-o", str(out), "--cache",
                            str(Path(cache).resolve()), "--no-train", "--family", family,
                            "--insecure"]
                    for r in run or CHECK_RUNS:
                        args += ["--run", r]
                    subprocess.run(args, check=True, timeout=timeout, env=env)
        except subprocess.CalledProcessError as e:
            raise UsageError(f"the calibration inside the emulated network failed (exit "
                             f"{e.returncode}); logs in {out / 'logs'}") from None
        finally:
            signal.signal(signal.SIGTERM, old)
        res = _check(out, family, cache, nodes, concurrency, bandwidth, nice)
        _print_check(res)
        typer.echo(f"wrote {out / 'check.json'}")
        if results is not None:
            _write(results, res)
            typer.echo(f"wrote {results}")

    @cluster.command("calibrate-check", hidden=True)
    def calibrate_check_cmd(
            folder: Path = typer.Argument(..., help="output folder of lcp cluster calibrate"),
            results: Optional[Path] = typer.Option(None),
            cache: Path = typer.Option(Path("runs/cluster-cache")),
    ):
        """Predict again the runs of an earlier `lcp cluster calibrate` (no measuring)."""
        old = json.loads((folder / "check.json").read_text())["conditions"]
        res = _check(folder, old["family"], cache, old["nodes"], old["concurrency"],
                     old["tbf_rate"], old.get("nice", 0))
        _print_check(res)
        if results is not None:
            _write(results, res)
            typer.echo(f"wrote {results}")

    @cluster.command("calibrate-driver", hidden=True)
    def calibrate_driver_cmd(
            scheduler: str = typer.Option(...),
            nodes: int = typer.Option(2),
            family: str = typer.Option("cifarnet"),
            cache: Path = typer.Option(Path("runs/cluster-cache")),
            out: Path = typer.Option(..., "-o", "--out"),
    ):
        """Inside the dispatcher's namespace: compute costs, link probes, call overhead."""
        fam = prepare_family(family, cache, train=False)
        typer.echo("[calibrate] timing every layer of the golden executor")
        comp = calibrate_compute(list(fam.models.values()), repeats=15)
        typer.echo("[calibrate] probing the links")
        ref = [fam.models["original"], fam.models["split8"]]
        links, call, t_node = asyncio.run(_probe(scheduler, nodes, ref))
        # a node runs the layers slower than this process's best-of timing (its compute
        # thread beside Dask's event loop): t_node = slowdown * fitted + layers * per_layer,
        # solved on the two reference models (whole on one node)
        from .calibrate import node_factors
        slowdown, per_layer = node_factors(comp, ref, t_node)
        _write(out, {"compute": comp, "links": links, "call_overhead_s": call,
                     "node_compute_s": dict(zip([m.name for m in ref], t_node)),
                     "node_slowdown": slowdown, "node_layer_overhead_s": per_layer,
                     "family": family, "nodes": nodes})
        for k, v in links.items():
            typer.echo(f"  {k}: round trip {1e3 * v['rtt_s']:.2f} ms, "
                       f"{v['bandwidth_bps'] / 1e6:.2f} Mbit/s, {v['overhead_bytes']} B/message")
        typer.echo(f"  lcp_run call overhead {1e3 * call:.2f} ms; on a node "
                   f"{', '.join(f'{m.name} {1e3 * t:.2f} ms' for m, t in zip(ref, t_node))}: "
                   f"{slowdown:.2f}x the fitted costs + {1e3 * per_layer:.3f} ms per layer; "
                   f"wrote {out}")


async def _probe(scheduler: str, nodes: int, models):
    """Link probes, then the extra round trip of ``lcp_run`` (whole model on node 0) over the
    node's own compute time, the probe's round trip and the payload's transfer time, and the
    node's compute time (median)."""
    async with connect(scheduler) as client:
        await client.wait_for_workers(nodes, timeout=60)
        links = await probe_links(client)
        t_nodes = []
        for model in models:
            async with Dispatcher(client, model, "single", nodes=1) as d:
                addr = d._slots[0].addr
                name = d._name(addr)
                key = d._slots[0].part.key
                xq = np.full((1, *model.input.shape), model.input.lo, dtype=np.int64)
                xmsg = wire.encode(xq, model.tensors[model.input.name], "packed")
                extra, t_node = [], []
                for i in range(25):
                    t0 = time.perf_counter()
                    r = await d._rpc(addr, "lcp_run", keys=[key], x=xmsg, enc="packed")
                    if i >= 5:                               # warm up as the benchmark does
                        extra.append(time.perf_counter() - t0 - r["t"])
                        t_node.append(r["t"])
            t_nodes.append(float(np.median(t_node)))
            if model is models[0]:
                lk = links[name]
                nbytes = len(xmsg["d"]) + model.tensors[model.output].nbytes
                call = float(np.median(extra)) - lk["rtt_s"] - 8 * nbytes / lk["bandwidth_bps"]
        return links, max(0.0, call), t_nodes


def _print_check(res: dict) -> None:
    for r in res["rows"]:
        if "error" in r:
            typer.echo(f"  {r['label']:22s} not simulated: {r['error']}")
            continue
        la, th = r["latency_p50_ms"], r["throughput_images_s"]
        typer.echo(f"  {r['label']:22s} p50 measured {la['measured']:8.2f} ms predicted "
                   f"{la['predicted']:8.2f} ({100 * la['error']:+6.1f} %)   throughput "
                   f"measured {th['measured']:7.1f} predicted {th['predicted']:7.1f} "
                   f"({100 * th['error']:+6.1f} %){'  (calibration run)' if r['calibration'] else ''}")


def _check(out: Path, family: str, cache: Path, nodes: int, concurrency: int,
           bandwidth: str, nice: int) -> dict:

    cal = json.loads((out / "calibration.json").read_text())
    bench = json.loads((out / "bench.json").read_text())
    fam = prepare_family(family, cache, train=False, log=lambda *_: None)
    brows = bench["families"][family]["rows"]
    # every device of the emulation shares this machine's cores; the node factors come from
    # the session's own one-node runs (the probe-time ones drift with the machine's load)
    cl = cluster_from(cal, nodes, host_cores=os.cpu_count(),
                      call_overhead_s=cal["call_overhead_s"])
    slowdown, per_layer = factors_from_rows(brows, fam.models, cal["compute"], cl)
    cal["session_node_slowdown"], cal["session_node_layer_overhead_s"] = slowdown, per_layer
    cl = cluster_from(cal, nodes, host_cores=os.cpu_count(),
                      call_overhead_s=cal["call_overhead_s"], slowdown=slowdown,
                      layer_overhead_s=per_layer)
    rows = check_rows(brows, fam.models, cl, concurrency=concurrency)
    res = {"conditions": {"nodes": nodes, "tbf_rate": bandwidth,
                          "tbf_bps": parse_rate(bandwidth), "family": family,
                          "concurrency": concurrency, "threads_per_process": 1,
                          "nice": nice,
                          "loadavg": [bench.get("loadavg_before"), bench.get("loadavg_after")]},
           "calibration": cal, "rows": rows}
    _write(out / "check.json", res)
    return res


def register_replan(cluster: typer.Typer) -> None:
    @cluster.command("emulate-replan")
    def emulate_replan_cmd(
            nodes: int = typer.Option(2, help="worker devices"),
            bandwidth: str = typer.Option("20mbit", help="tc rate of every link at the start"),
            slow_rate: str = typer.Option("300kbit", help="the rate node 1's link drops to"),
            variant: str = typer.Option("split4", help="cifarnet variant (several branches)"),
            before_s: float = typer.Option(4.0, help="seconds of requests before the drop"),
            after_s: float = typer.Option(4.0, help="seconds of requests after the re-plan"),
            interval: float = typer.Option(0.5, help="seconds between link probes"),
            out: Path = typer.Option(Path("runs/cluster-replan/replan.json"), "-o", "--out"),
            logs: Path = typer.Option(Path("runs/cluster-replan/logs"), help="process logs"),
            cache: Path = typer.Option(Path("runs/cluster-cache"), help="compiled model cache"),
    ):
        """(root) Serve with dynamic HiDP placement on emulated links, lower one link's rate
        mid-run, and record the plan and latency before, during and after (OUT JSON)."""
        check_root()
        for r in (bandwidth, slow_rate):
            try:
                parse_rate(r)
            except ValueError as e:
                raise UsageError(str(e)) from None
        if nodes < 2:
            raise UsageError("--nodes must be >= 2 (one link drops, the others stay)")
        fam = prepare_family("cifarnet", cache, train=False)
        if variant not in fam.models or len(fam.models[variant].branches) < 2:
            raise UsageError(f"--variant {variant!r}: a cifarnet variant with branches "
                             f"(split4, split8)")
        out = Path(out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        with Topology(nodes, bandwidth) as topo:
            with ProcessCluster(nodes, topology=topo, log_dir=Path(logs).resolve()) as pc:
                cmd = ["ip", "netns", "exec", topo.dispatcher_ns, sys.executable, "-m",
                       "lcp.sw.cli", "cluster", "replan-driver", "--scheduler", pc.address,
                       "--nodes", str(nodes), "--prefix", topo.prefix, "--slow-rate", slow_rate,
                       "--variant", variant, "--before-s", str(before_s), "--after-s",
                       str(after_s), "--interval", str(interval), "--cache",
                       str(Path(cache).resolve()), "-o", str(out)]
                rc = subprocess.run(cmd, timeout=600).returncode
        if rc != 0:
            raise UsageError(f"the re-planning run failed (exit {rc}); logs in {logs}")
        res = json.loads(out.read_text())
        typer.echo(f"plan before: {res['plan_before']}")
        typer.echo(f"plan after:  {res['plan_after']}")
        for p, s in res["latency"].items():
            if s["n"]:
                typer.echo(f"  {p:6s} {s['n']:4d} requests  p50 {s['p50_ms']:8.2f} ms  p95 "
                           f"{s['p95_ms']:8.2f} ms  max {s['max_ms']:8.2f} ms")
        typer.echo(f"{res['requests']} requests, {res['unique_answers']} answered (one answer "
                   f"each), {res['exact']} exact, statuses {res['statuses']}; wrote {out}")

    @cluster.command("replan-driver", hidden=True)
    def replan_driver_cmd(
            scheduler: str = typer.Option(...), nodes: int = typer.Option(2),
            prefix: str = typer.Option(...), slow_rate: str = typer.Option("300kbit"),
            variant: str = typer.Option("split4"), before_s: float = typer.Option(4.0),
            after_s: float = typer.Option(4.0), interval: float = typer.Option(0.5),
            cache: Path = typer.Option(Path("runs/cluster-cache")),
            out: Path = typer.Option(..., "-o", "--out"),
    ):
        """Inside the dispatcher's namespace: the re-planning experiment."""
        fam = prepare_family("cifarnet", cache, train=False, log=lambda *_: None)
        m = fam.models[variant]
        xq = m.input.quantize(fam.x[:16])
        res = asyncio.run(replan_experiment(scheduler, m, xq, nodes=nodes, prefix=prefix,
                                            slow_node=1, slow_rate=slow_rate,
                                            before_s=before_s, after_s=after_s,
                                            interval=interval, log=typer.echo))
        _write(out, res)
