"""``lcp`` commands of the benchmarks, demos and reproduction: ``demo``, ``bench``, ``reproduce``,
``sim-demo``, ``hw-bench``, ``pynq-bench``.

Registered with the command line through the ``lcp.commands`` entry points (pyproject.toml), so
the library never imports this package. Each command imports its benchmark module when it
runs: they pull in torch, Brevitas, pynq and Dask, which no other ``lcp`` command needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lcp.usage import UsageError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(runs: Path = typer.Option(Path("runs"), help="runs root"),
                 force: bool = typer.Option(False, help="retrain the cached demo model")):
        """Train (or reuse) LeNet-5 split4 w4a4, golden reference on the held-out images,
        accuracy and counters."""
        from . import demo  # late: see the module docstring
        demo.run_demo(runs, force=force, out=typer.echo)

    @app.command("bench")
    def bench_cmd(runs: Path = typer.Option(Path("runs"), help="runs root"),
                  results: Path = typer.Option(Path("results"), help="JSON results folder"),
                  only: Optional[str] = typer.Option(
                      None, help="comma-separated parts: golden,hw,synth,pynq,cluster"),
                  quick: bool = typer.Option(False, help="fewer models and requests")):
        """Benchmarks with their baselines measured in the same run (JSON in RESULTS/)."""
        from . import bench  # late: see the module docstring
        parts = bench.PARTS if only is None else tuple(p.strip() for p in only.split(",") if p)
        try:
            status = bench.run_bench(runs, results, only=parts, quick=quick, out=typer.echo)
        except ValueError as e:
            raise UsageError(str(e)) from None
        failed = [k for k, v in status.items() if v]
        if failed:
            typer.echo(f"lcp: benchmark part(s) failed or not exact: {', '.join(failed)}",
                       err=True)
            raise typer.Exit(1)

    @app.command("reproduce")
    def reproduce_cmd(runs: Path = typer.Option(Path("runs"), help="runs root"),
                      results: Path = typer.Option(Path("results"), help="JSON results folder"),
                      output: Path = typer.Option(Path("REPRODUCTION.md"), "-o", "--output"),
                      readme: Optional[Path] = typer.Option(
                          Path("README.md"), help="README whose figure block is refreshed"),
                      section: Optional[list[str]] = typer.Option(
                          None, "--section", help="re-render only the section(s) whose title "
                          "starts with this, in the existing file (no zoo counting, no "
                          "training)")):
        """Write REPRODUCTION.md (counters of the zoo, accuracies, every benchmark section)."""
        from . import reproduce  # late: see the module docstring
        if section:
            try:
                done = reproduce.refresh_sections(output, section, results, runs)
            except (ValueError, OSError) as e:
                raise UsageError(str(e)) from None
            typer.echo(f"re-rendered {', '.join(done)} in {output}")
            return
        reproduce.write_reproduction(
            output, results, runs, cache=runs / "ir-cache",
            progress=lambda name: typer.echo(f"counted {name}", err=True))
        typer.echo(f"wrote {output}")
        if readme is not None and readme.exists():
            reproduce.update_readme_figures(readme, reproduce.readme_block(results, runs))
            typer.echo(f"refreshed the figures of {readme}")
    @app.command("sim-demo")
    def sim_demo_cmd(
            model: Path = typer.Argument(Path("runs/lenet5_split4_w4a4/model.onnx"),
                                         help="demo model (QONNX)"),
            images: int = typer.Option(200, help="held-out MNIST images (0 = all 1000)"),
            budget: str = typer.Option("xc7z020", help="device budget for the folding"),
            waves: bool = typer.Option(False, "--waves", help="write a VCD of the first batch")):
        """Held-out MNIST images through the simulated LCP core, checked against golden."""
        from . import sim_demo  # late: see the module docstring
        sim_demo.run_demo(model, images=images, budget=budget, waves=waves, out=typer.echo)

    @app.command("hw-bench")
    def hw_bench_cmd(
            quick: bool = typer.Option(False, "--quick", help="fewer models and images"),
            peers: bool = typer.Option(False, "--peers",
                                       help="FINN's bnn_pynq TFC-w2a2 and CNV-w2a2 only"),
            paper_table: bool = typer.Option(
                False, "--paper-table", help="the LCP paper's FPGA latency table (cycle "
                                             "models, results/paper_table.json) only"),
            imagenet: bool = typer.Option(
                False, "--imagenet", help="224x224 MobileNet-v1-4b and ResNet-50 through "
                                          "lcp compile --budget xc7z020 "
                                          "(results/imagenet224.json) only"),
            runs: Path = typer.Option(Path("runs"), help="folder of trained runs"),
            results: Path = typer.Option(Path("results"), help="folder for hw_bench.json"),
            output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                  help="also write the rows as JSON")):
        """Hardware benchmarks: simulated vs modelled cycles, simulator speed, resources."""
        if imagenet:
            from . import imagenet224 as im  # late: see the module docstring
            im.run_rows(results, out=typer.echo)
            typer.echo(im.markdown(results))
            return
        if paper_table:
            from . import paper_table as pt  # late: see the module docstring
            pt.run_table(results, out=typer.echo)
            typer.echo(pt.markdown(results))
            return
        from . import hw  # late: see the module docstring
        args = (["--runs", str(runs), "--results", str(results)] + (["--quick"] if quick else [])
                + (["--peers"] if peers else []))
        if output is not None:
            args += ["-o", str(output)]
        code = hw.main(args)
        if code:
            raise typer.Exit(code)
    @app.command("pynq-bench")
    def pynq_bench_cmd(
            runs: Path = typer.Option(Path("runs"), help="folder of trained runs"),
            results: Path = typer.Option(Path("results"), help="where pynq_sim.json goes"),
            images: int = typer.Option(64, help="images per batch size")):
        """The PYNQ driver on the simulated board: images/s through the driver, the driver's
        own overhead per call (time outside the simulator), hardware cycles per image."""
        from . import pynq  # late: see the module docstring
        r = pynq.run_bench(results, runs, images=images, out=typer.echo)
        if not r["bit_exact"]:
            raise SystemExit(1)
