"""Distributed LCP inference on Dask (``lcp.sw.cluster``).

- :mod:`.wire`: how integer activations cross the network (the encodings).
- :mod:`.parts`: partition the IR into parts (whole model, branches, pipeline stages).
- :mod:`.node`: the worker plugin that keeps parts loaded and runs them.
- :mod:`.client`: connect to a cluster (or start an embedded one) with the node plugin.
- :mod:`.dispatcher`: the cluster view, remote calls, failures, timeouts.
- :mod:`.strategies`: one class per strategy (single, lcp, data, pipeline, hidp, exchange,
  model-parallel): placement and serving; :mod:`.hidp`: HiDP's profiler and cost model.
- :mod:`.rpc`: remote calls that fail fast when a node's process is gone.
- :mod:`.netcount`: bytes on the wire from kernel counters.
- :mod:`.emulate`: network namespaces with bandwidth-limited links.
- :mod:`.security`: per-node TLS certificates for mutual authentication.
- :mod:`.roles`: what each certificate role may call and send (see README.md, threat model).
- :mod:`.bench`: the benchmark (latency, throughput, bytes, memory, every strategy with
  every encoding): runs, model families, measurement, byte accounting.
- :mod:`.report`: each strategy at its best encoding, headline ratios, tables and plots.
"""

from .dispatcher import STRATEGIES, Dispatcher, Result, connect, run_batch
from .node import NodePlugin
from .parts import Part, branch_parts, stage_parts, whole_part
from .wire import ENCODINGS

__all__ = ["STRATEGIES", "ENCODINGS", "Dispatcher", "Result", "connect", "run_batch",
           "NodePlugin", "Part", "branch_parts", "stage_parts", "whole_part"]
