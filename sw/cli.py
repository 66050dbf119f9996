"""The ``lcp`` command line.

Each part of the project adds its commands through a ``register(app)`` function in its own
module (listed in :data:`COMMAND_MODULES`), so this file stays small. Every command reports
bad input as one line on stderr and exits with code 2; no traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

__all__ = ["app", "main", "UsageError", "COMMAND_MODULES"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="LCP: low-communication parallel networks from training to silicon.")

#: Modules with a ``register(app)`` function, in help order.
COMMAND_MODULES = [
    "lcp.sw.commands",
    "lcp.sw.search_cli",
    "lcp.sw.cluster.cli",
    "lcp.hw.cli",
    "lcp.synth.cli",
    "lcp.sw.pynq_cli",
]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _errors() -> tuple[type[BaseException], ...]:
    from lcp.ir import IRError
    return (UsageError, IRError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            FileExistsError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lcp`` console script."""
    import warnings
    warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(app)
    try:
        app(args=argv, standalone_mode=False)
    except _errors() as e:
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
        import click
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
