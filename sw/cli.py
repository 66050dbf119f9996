"""The ``lcp`` command line.

Each part of the project adds its commands through a ``register(app)`` function in its own
module, found through the ``lcp.commands`` entry points of the installed packages (this
project's are in pyproject.toml: the core, cluster, hardware, synthesis, PYNQ and benchmark
commands), so this file names none of them. Every command reports bad input as one line on
stderr and exits with code 2; no traceback.
"""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import entry_points

import click
import typer

from lcp.ir import IRError
from lcp.usage import UsageError

__all__ = ["app", "main", "UsageError", "COMMAND_GROUP"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="LCP: low-communication parallel networks from training to silicon.")

#: Entry-point group of the modules with a ``register(app)`` function.
COMMAND_GROUP = "lcp.commands"

#: Help order of this project's command groups (others follow by name).
_ORDER = ("core", "cluster", "hw", "synth", "pynq", "benchmarks")

#: What a command may raise for bad input (one line, exit code 2).
_ERRORS = (UsageError, IRError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
           FileExistsError, PermissionError)


def _register_commands() -> None:
    eps = sorted(entry_points(group=COMMAND_GROUP),
                 key=lambda e: (_ORDER.index(e.name) if e.name in _ORDER else len(_ORDER),
                                e.name))
    for ep in eps:
        ep.load()(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lcp`` console script."""
    warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
    _register_commands()
    try:
        app(args=argv, standalone_mode=False)
    except _ERRORS as e:
        print(f"lcp: error: {e}", file=sys.stderr)
        return 2
    except typer.Abort as e:
        if isinstance(e.__context__, EOFError):     # click turns every EOFError into Abort
            print(f"lcp: error: unexpected end of a file ({e.__context__ or 'no data left'})",
                  file=sys.stderr)
            return 2
        print("lcp: aborted", file=sys.stderr)
        return 130
    except SystemExit as e:
        return int(e.code or 0)
    except Exception as e:   # click usage errors
        if isinstance(e, click.ClickException):
            e.show()
            return 2
        raise
    return 0


if __name__ == "__main__":
    # ``python -m lcp.sw.cli``: run the imported module's main, so that the UsageError the
    # commands raise (lcp.sw.cli.UsageError) is the class caught there, not __main__'s copy
    from lcp.sw.cli import main as _main
    sys.exit(_main())
