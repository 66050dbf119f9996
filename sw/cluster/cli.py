"""``lcp worker`` and the ``lcp cluster`` commands (run, bench, emulate, certs, scheduler).

Secure by default: every server listens on loopback unless ``--host`` says otherwise, and
listening on (or connecting to) another address without TLS (``--tls-dir``) needs
``--insecure``, which prints what it exposes. Dask's dashboard is off unless ``--dashboard``
asks for it, and then on loopback; the metrics/health HTTP endpoint every Dask server has
stays on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer

from lcp.sw.cli import UsageError
from lcp.sw.commands import empty_output, load_input, load_model, output_file, write_npy

from .bench import FAMILIES, BenchConfig, default_runs, prepare_family, run_benchmark
from .dispatcher import STRATEGIES, run_batch
from .emulate import Topology, check_root, parse_rate
from .node import NodePlugin
from .procs import ProcessCluster
from .roles import PRELOAD
from .security import load_security, local_security, make_certificates
from .wire import ENCODINGS

__all__ = ["register", "parse_resources"]


def parse_resources(text: str) -> dict[str, float]:
    """``"fpga=1,mem=2"`` -> ``{"fpga": 1.0, "mem": 2.0}``; :class:`UsageError` if malformed."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, val = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(val)
        except ValueError:
            raise UsageError(f"--resources: expected NAME=NUMBER[,NAME=NUMBER], got {item!r}") \
                from None
    return out


def _security(tls_dir: Optional[Path], role: str = "client", name: Optional[str] = None, *,
              local: bool = False):
    """The Security of ``role`` from ``--tls-dir`` (all roles for an embedded cluster when
    ``local``); None without ``--tls-dir``; bad certificates are a UsageError."""
    if tls_dir is None:
        return None
    try:
        return local_security(tls_dir) if local else load_security(tls_dir, role, name)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--tls-dir: {e}") from None


def _host_of(address: str) -> str:
    from distributed.comm.addressing import get_address_host, parse_address
    try:
        parse_address(address, strict=True)
        return get_address_host(address)
    except ValueError:
        raise UsageError(f"{address!r}: expected tcp://HOST:PORT or tls://HOST:PORT") from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_scheme(address: str, sec, what: str) -> None:
    if sec is not None and not address.startswith("tls://"):
        raise UsageError(f"{what} {address}: with --tls-dir the address is tls://HOST:PORT")
    if sec is None and address.startswith("tls://"):
        raise UsageError(f"{what} {address}: a tls:// address needs --tls-dir (the node's "
                         f"certificates, `lcp cluster certs`)")


def _exposed(where: str, sec, insecure: bool, risk: str) -> None:
    """Refuse plain TCP beyond this machine unless ``--insecure``; then say what is exposed."""
    if sec is not None:
        return
    if not insecure:
        raise UsageError(f"{where} is not loopback and there is no TLS: pass --tls-dir DIR "
                         f"(certificates from `lcp cluster certs`) or --insecure")
    typer.echo(f"lcp: warning: --insecure: {where} without TLS or authentication: {risk}",
               err=True)


async def _serve(server) -> None:
    """Run a Dask server until it finishes or SIGTERM/SIGINT closes it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.ensure_future(server.finished())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        await server.close()
        waiter.cancel()
    stopper.cancel()


def _bench_config(families, nodes, requests, throughput_requests, concurrency, out, scheduler,
                  links, delay_ms, runs, cache, train, epochs, tls_dir, quick):

    fams = list(families) if families else list(FAMILIES)
    bad = [f for f in fams if f not in FAMILIES]
    if bad:
        raise UsageError(f"--family {bad[0]!r}: known families are {', '.join(FAMILIES)}")
    labels = {r.label for r in default_runs(8)}
    bad = [r for r in runs or [] if r not in labels]
    if bad:
        raise UsageError(f"--run {bad[0]!r}: known runs are {', '.join(sorted(labels))}")
    if nodes < 1 or requests < 1 or throughput_requests < 1 or concurrency < 1:
        raise UsageError("--nodes, --requests, --throughput-requests and --concurrency must "
                         "be >= 1")
    link_info = None
    if links is not None:
        try:
            link_info = json.loads(Path(links).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--links {links}: not a readable JSON file ({e})") from None
    if quick:
        requests, throughput_requests = min(requests, 10), min(throughput_requests, 16)
    return BenchConfig(families=fams, nodes=nodes, requests=requests,
                       throughput_requests=throughput_requests, concurrency=concurrency,
                       out=Path(out), scheduler=scheduler, links=link_info, delay_ms=delay_ms,
                       runs=list(runs) if runs else None, cache=Path(cache), train=train,
                       epochs=epochs, security=_security(tls_dir, "client"))


def register(app: typer.Typer) -> None:
    cluster = typer.Typer(no_args_is_help=True, add_completion=False,
                          help="Distributed inference on Dask: run, benchmark, emulate links.")
    app.add_typer(cluster, name="cluster")

    @app.command("worker")
    def worker_cmd(
            scheduler: str = typer.Option(..., "--scheduler", help="tcp://HOST:PORT or tls://..."),
            name: Optional[str] = typer.Option(None, help="worker name (default: Dask's)"),
            nthreads: int = typer.Option(1, help="compute threads (the node's local split)"),
            resources: str = typer.Option("", help="e.g. fpga=1 (nodes with an accelerator)"),
            host: str = typer.Option("127.0.0.1", help="address to listen on (not loopback: "
                                                       "--tls-dir or --insecure)"),
            tls_dir: Optional[Path] = typer.Option(None, help="this node's certificate folder "
                                                              "(lcp cluster certs)"),
            insecure: bool = typer.Option(False, help="allow plain TCP beyond this machine"),
            nanny: bool = typer.Option(True, help="restart the worker process if it dies"),
            slowdown: float = typer.Option(1.0, help="emulate a node this many times slower"),
            delay_ms: float = typer.Option(0.0, help="one-way delay per received data message"),
    ):
        """Serve as an LCP node: a Dask worker that keeps model parts loaded."""
        from distributed import Nanny, Worker

        if nthreads < 1 or slowdown < 1.0 or delay_ms < 0:
            raise UsageError("--nthreads must be >= 1, --slowdown >= 1, --delay-ms >= 0")
        res = parse_resources(resources)
        sec = _security(tls_dir, "worker", name)
        _check_scheme(scheduler, sec, "--scheduler")
        sched_host = _host_of(scheduler)
        if _loopback(host) and not _loopback(sched_host):
            raise UsageError(f"--host {host}: the scheduler {scheduler} is on another machine "
                             f"and cannot reach a worker on loopback; pass --host with an "
                             f"address of this machine that the scheduler and the dispatcher "
                             f"reach")
        if not (_loopback(host) and _loopback(sched_host)):
            _exposed(f"the node at {host} (scheduler {scheduler})", sec, insecure,
                     "anyone who reaches it or the scheduler can run any code on this machine")
        os.environ["LCP_NODE_SLOWDOWN"] = str(slowdown)
        os.environ["LCP_LINK_DELAY_MS"] = str(delay_ms)

        async def main():
            kw = dict(nthreads=nthreads, name=name, resources=res or None, security=sec,
                      host=host, memory_limit=0, dashboard_address="127.0.0.1:0",
                      preload=[PRELOAD] if sec else [])
            if nanny:
                server = Nanny(scheduler, preload_nanny=[PRELOAD] if sec else [], **kw)
            else:
                server = Worker(scheduler, plugins={NodePlugin()}, **kw)
            await server
            typer.echo(f"lcp worker {name or ''} at {server.address} -> {scheduler}", err=True)
            await _serve(server)

        asyncio.run(main())

    @cluster.command("scheduler")
    def scheduler_cmd(
            host: str = typer.Option("127.0.0.1", help="address to listen on (not loopback: "
                                                       "--tls-dir or --insecure)"),
            port: int = typer.Option(8786, help="port (0: any free port)"),
            scheduler_file: Optional[Path] = typer.Option(None, help="write the address here"),
            tls_dir: Optional[Path] = typer.Option(None, help="the scheduler's certificate "
                                                              "folder (lcp cluster certs)"),
            insecure: bool = typer.Option(False, help="allow plain TCP beyond this machine"),
            dashboard: bool = typer.Option(False, help="serve Dask's dashboard (on loopback)"),
            dashboard_port: int = typer.Option(8787, help="dashboard port (0: any free port)"),
    ):
        """Run a Dask scheduler for LCP nodes (several machines: start it on the dispatcher)."""
        from distributed import Scheduler

        sec = _security(tls_dir, "scheduler")
        if not _loopback(host):
            _exposed(f"the scheduler on {host}:{port}", sec, insecure,
                     "anyone who reaches this port can run any code on every worker")
        http = f"127.0.0.1:{dashboard_port if dashboard else 0}"

        async def main():
            s = Scheduler(host=host, port=port, security=sec, dashboard=dashboard,
                          dashboard_address=http, protocol="tls" if sec else "tcp",
                          preload=[PRELOAD] if sec else [],
                          scheduler_file=str(scheduler_file) if scheduler_file else None)
            await s
            typer.echo(f"lcp scheduler at {s.address}", err=True)
            if dashboard:
                typer.echo(f"dashboard at http://{http.rsplit(':', 1)[0]}:"
                           f"{s.http_server.port}/status (loopback only)", err=True)
            await _serve(s)

        asyncio.run(main())

    @cluster.command("run")
    def run_cmd(
            model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
            inputs: Path = typer.Argument(..., help="batch-first input array (.npy)"),
            output: Path = typer.Option(..., "-o", "--output",
                                        help="output .npy (a folder: FOLDER/INPUT.out.npy)"),
            strategy: str = typer.Option("lcp", help="single | lcp | data | pipeline | hidp"),
            scheduler: Optional[str] = typer.Option(None, help="running scheduler (default: an "
                                                               "embedded local cluster)"),
            workers: Optional[int] = typer.Option(None, help="embedded cluster size"),
            encoding: str = typer.Option("packed", help="packed | packed-lz4 | float32 | "
                                                        "zfp-lz4"),
            stages: Optional[int] = typer.Option(None, help="pipeline stages"),
            timeout: float = typer.Option(60.0, help="seconds per request"),
            backend: str = typer.Option("golden", help="executor on CPU nodes"),
            accel_backend: Optional[str] = typer.Option(None, help="executor on fpga nodes"),
            tls_dir: Optional[Path] = typer.Option(None, help="the dispatcher's certificate "
                                                              "folder (embedded cluster: the "
                                                              "folder lcp cluster certs wrote)"),
            insecure: bool = typer.Option(False, help="allow plain TCP to a scheduler beyond "
                                                      "this machine"),
            replicas: int = typer.Option(1, help="nodes that load each part (standbys for "
                                                 "failover)"),
            integer: bool = typer.Option(False, "--int", help="write the integer output"),
            int_input: bool = typer.Option(False, "--int-input",
                                           help="the input array holds quantized integers"),
            input_format: Optional[str] = typer.Option(
                None, help="integer domain of a float input the model reads directly: uint8, "
                           "uint8:SCALE or int8:SCALE"),
    ):
        """Run a batch through the cluster with one strategy and write the output."""
        if strategy not in STRATEGIES:
            raise UsageError(f"--strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
        if encoding not in ENCODINGS:
            raise UsageError(f"--encoding {encoding!r}: one of {', '.join(ENCODINGS)}")
        if workers is not None and workers < 1:
            raise UsageError("--workers must be >= 1")
        if replicas < 1:
            raise UsageError("--replicas must be >= 1")
        sec = _security(tls_dir, "client", local=scheduler is None)
        if scheduler is not None:
            _check_scheme(scheduler, sec, "--scheduler")
            if not _loopback(_host_of(scheduler)):
                _exposed(f"the scheduler {scheduler}", sec, insecure,
                         "requests, parts and results cross the network in clear, and the "
                         "pipeline delivery port of this machine accepts anyone")
        m = load_model(model, input_format)
        x = load_input(inputs, m, integer=int_input)
        out = output_file(output, inputs)
        if len(x) == 0:
            y = empty_output(m, integer)
            write_npy(out, y)
            typer.echo(f"{strategy}: 0 input(s) -> {out} {y.shape} {y.dtype} [nothing to run]")
            return
        xq = x if int_input else m.input.quantize(x)
        res = run_batch(m, xq, strategy, scheduler=scheduler, n_workers=workers,
                        security=sec, encoding=encoding, stages=stages,
                        timeout=timeout, call_timeout=min(timeout, 30.0), backend=backend,
                        accel_backend=accel_backend, replicas=replicas)
        if res.status == "failed":
            typer.echo(f"lcp: error: no answer within {timeout} s ({res.error})", err=True)
            raise typer.Exit(1)
        y = res.y if integer else m.dequant(res.y)
        write_npy(out, y)
        typer.echo(f"{strategy}: {len(x)} input(s) -> {out} {y.shape} {y.dtype} "
                   f"[{res.status}, {1e3 * res.latency:.1f} ms]")
        if res.status == "degraded":
            typer.echo(f"lcp: warning: degraded answer, branches {list(res.missing)} missing "
                       f"(zeroed): {res.error}", err=True)

    @cluster.command("bench")
    def bench_cmd(
            family: Optional[List[str]] = typer.Option(None, "--family",
                                                       help="cifarnet, lenet5 (default: both)"),
            nodes: int = typer.Option(8, help="worker nodes"),
            requests: int = typer.Option(40, help="sequential requests per run"),
            throughput_requests: int = typer.Option(80, help="requests for throughput"),
            concurrency: int = typer.Option(8, help="requests in flight for throughput"),
            out: Path = typer.Option(Path("runs/cluster-bench"), "-o", "--out"),
            scheduler: Optional[str] = typer.Option(None, help="running scheduler (default: "
                                                               "local worker processes)"),
            links: Optional[Path] = typer.Option(None, help="emulated links JSON (emulate)"),
            delay_ms: float = typer.Option(0.0, help="one-way delay per data message"),
            run: Optional[List[str]] = typer.Option(None, "--run", help="only these runs"),
            cache: Path = typer.Option(Path("runs/cluster-cache"), help="compiled model cache"),
            train: bool = typer.Option(True, help="train LeNet-5 (cached) or random weights"),
            epochs: int = typer.Option(30, help="LeNet-5 training epochs"),
            tls_dir: Optional[Path] = typer.Option(None, help="certificates: the folder lcp "
                                                              "cluster certs wrote"),
            insecure: bool = typer.Option(False, help="allow plain TCP to a scheduler beyond "
                                                      "this machine"),
            quick: bool = typer.Option(False, help="few requests (a smoke run)"),
    ):
        """Benchmark every strategy: latency, throughput, bytes per link, memory per node."""
        cfg = _bench_config(family, nodes, requests, throughput_requests, concurrency, out,
                            scheduler, links, delay_ms, run, cache, train, epochs, tls_dir,
                            quick)
        if scheduler is not None:
            _check_scheme(scheduler, cfg.security, "--scheduler")
            if not _loopback(_host_of(scheduler)):
                _exposed(f"the scheduler {scheduler}", cfg.security, insecure,
                         "the benchmark's data and the delivery port of this machine are open "
                         "to the network")
            run_benchmark(cfg)
            return
        env = {"LCP_LINK_DELAY_MS": str(delay_ms)}
        with ProcessCluster(nodes, tls_dir=tls_dir, env=env,
                            log_dir=Path(out) / "logs") as pc:
            cfg.scheduler = pc.address
            run_benchmark(cfg)

    @cluster.command("emulate")
    def emulate_cmd(
            nodes: int = typer.Option(8, help="worker devices"),
            bandwidth: str = typer.Option("62mbit", help="tc rate of every link"),
            delay_ms: float = typer.Option(0.0, help="one-way delay per data message, added "
                                                     "in the application (no netem here)"),
            family: Optional[List[str]] = typer.Option(None, "--family",
                                                       help="cifarnet, lenet5 (default: both)"),
            requests: int = typer.Option(40, help="sequential requests per run"),
            throughput_requests: int = typer.Option(80, help="requests for throughput"),
            concurrency: int = typer.Option(8, help="requests in flight for throughput"),
            out: Path = typer.Option(Path("runs/cluster-emulate"), "-o", "--out"),
            run: Optional[List[str]] = typer.Option(None, "--run", help="only these runs"),
            cache: Path = typer.Option(Path("runs/cluster-cache"), help="compiled model cache"),
            train: bool = typer.Option(True, help="train LeNet-5 (cached) or random weights"),
            epochs: int = typer.Option(30, help="LeNet-5 training epochs"),
            tls_dir: Optional[Path] = typer.Option(None, help="certificates (lcp cluster certs)"),
            quick: bool = typer.Option(False, help="few requests (a smoke run)"),
            timeout: float = typer.Option(3600.0, help="seconds for the whole benchmark"),
    ):
        """Build emulated links (netns + veth + tbf), run the benchmark over them, remove them."""
        check_root()
        try:
            parse_rate(bandwidth)
        except ValueError as e:
            raise UsageError(str(e)) from None
        cfg = _bench_config(family, nodes, requests, throughput_requests, concurrency, out,
                            None, None, delay_ms, run, cache, train, epochs, tls_dir, quick)
        for f in cfg.families:        # train/compile before the links exist
            prepare_family(f, cfg.cache, train=cfg.train, epochs=cfg.epochs)
        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)

        def _term(*_):
            raise KeyboardInterrupt
        old = signal.signal(signal.SIGTERM, _term)
        rc = 1
        try:
            with Topology(nodes, bandwidth) as topo:
                links = topo.write_links(out / "links.json")
                env = {"LCP_LINK_DELAY_MS": str(delay_ms)}
                with ProcessCluster(nodes, topology=topo, tls_dir=tls_dir, env=env,
                                    log_dir=out / "logs") as pc:
                    args = ["cluster", "bench", "--scheduler", pc.address, "--links",
                            str(links), "--nodes", str(nodes), "--requests", str(cfg.requests),
                            "--throughput-requests", str(cfg.throughput_requests),
                            "--concurrency", str(concurrency), "-o", str(out), "--delay-ms",
                            str(delay_ms), "--cache", str(Path(cache).resolve()), "--epochs",
                            str(epochs), "--train" if train else "--no-train"]
                    for f in cfg.families:
                        args += ["--family", f]
                    for r in run or []:
                        args += ["--run", r]
                    if tls_dir:
                        args += ["--tls-dir", str(Path(tls_dir).resolve())]
                    else:       # private namespaces: only this machine reaches them
                        args += ["--insecure"]
                    cmd = ["ip", "netns", "exec", topo.dispatcher_ns, sys.executable, "-m",
                           "lcp.sw.cli", *args]
                    driver = subprocess.Popen(cmd)
                    try:
                        rc = driver.wait(timeout=timeout)
                    except (subprocess.TimeoutExpired, KeyboardInterrupt):
                        driver.kill()
                        driver.wait()
                        raise
        finally:
            signal.signal(signal.SIGTERM, old)
        if rc != 0:
            typer.echo(f"lcp: error: the benchmark inside the emulated network failed "
                       f"(exit {rc}); logs in {out / 'logs'}", err=True)
            raise typer.Exit(rc)
        typer.echo(f"emulated network removed; results in {out}")

    @cluster.command("certs")
    def certs_cmd(
            folder: Path = typer.Argument(..., help="output folder"),
            worker: Optional[List[str]] = typer.Option(None, "--worker",
                                                       help="a worker node's name (repeat)"),
            client: Optional[List[str]] = typer.Option(None, "--client",
                                                       help="a dispatcher's name (repeat)"),
            days: int = typer.Option(365, help="validity"),
            host: Optional[List[str]] = typer.Option(None, "--host", help="extra SAN names"),
            force: bool = typer.Option(False, help="overwrite existing node folders"),
    ):
        """Issue per-node certificates for mutual TLS: a new authority with a scheduler, the
        --worker and --client nodes (default: one of each); an existing authority issues only
        the nodes named. Each node gets a folder with the CA certificate and its own pair."""
        if days < 1:
            raise UsageError("--days must be >= 1")
        new = not (folder / "ca.pem").is_file()
        workers = list(worker or (["worker"] if new else []))
        clients = list(client or (["client"] if new else []))
        try:
            paths = make_certificates(folder, workers=workers, clients=clients, days=days,
                                      hosts=list(host or []), overwrite=force)
        except (FileExistsError, FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from None
        if new:
            typer.echo(f"{folder}: a new authority (ca.pem; keep ca-key.pem off the nodes)")
        use = {"scheduler": "lcp cluster scheduler --tls-dir {d}",
               **{w: f"lcp worker --tls-dir {{d}} --name {w} --scheduler tls://..."
                  for w in workers},
               **{c: "lcp cluster run --tls-dir {d} --scheduler tls://..." for c in clients}}
        for name, d in paths.items():
            if name != "ca":
                typer.echo(f"  {d}/  copy to the node; {use[name].format(d=d)}")
