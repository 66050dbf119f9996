"""The cluster benchmark end to end (:func:`run_benchmark`): every family, every run of
:func:`~.runs.default_runs` on one cluster, the idle link rate, the comparisons, and the output
files (``bench.json``, ``table.txt``, ``summary.txt``, plots)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from lcp.golden import Golden

from .. import report
from ..dispatcher import connect
from ..netcount import link_counters
from .accounting import expected_bytes, veth_delta
from .families import degraded_accuracy, prepare_family
from .measure import measure_run
from .runs import BenchConfig, default_runs

__all__ = ["run_benchmark"]


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
                    for k, v in veth_delta(c0, c1, devs).items()}
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
                rows.append(await measure_run(client, fam, spec, cfg, refs, idle, log))
            entry = {"notes": fam.notes, "rows": rows,
                     "expected_payload_bytes": expected_bytes(fam, min(cfg.nodes, n_workers))}
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
