"""The ``genmodes`` command: thin argument parsing over the library.

Each command group lives beside the code it drives and exposes ``register(subparsers)``, which adds
its parsers and sets ``func(args) -> int`` on each. User errors end in one line on stderr,
``genmodes: error: ...``, and exit status 2 (issue 12): :class:`GenmodesError`, usage errors
(argparse's own usage block is replaced by that line), and filesystem failures (a full disk, a
read-only folder, a path under a file), which are the user's to fix too. Progress bars are cleared
before the line is printed. A closed stdout (``genmodes run --dry-run | head``) ends quietly.
Programming errors are not caught: their traceback is the bug report.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from genmodes import __version__
from genmodes.errors import GenmodesError
from genmodes.io import disk_error_message

# Modules that add command groups; imported in this order.
COMMAND_MODULES = [
    "genmodes.models.commands",      # genmodes models, genmodes score
    "genmodes.data.commands",        # genmodes data ...
    "genmodes.experiments.commands", # genmodes run
    "genmodes.report.commands",      # genmodes report
]


class UsageError(GenmodesError):
    """A command line argparse cannot parse."""


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors raised, so they end in the one-line form too."""

    def error(self, message: str):  # type: ignore[override]
        # the line already starts "genmodes: error:", so the program name is not repeated
        where = self.prog.removeprefix("genmodes").strip()
        raise UsageError(f"{where + ': ' if where else ''}{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="genmodes",
        description="Controlled studies of how language models generalize from parameters vs context.")
    parser.add_argument("--version", action="version", version=f"genmodes {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _help_when_bare(parser)
    return parser


def _help_when_bare(parser: argparse.ArgumentParser) -> None:
    """``genmodes`` or ``genmodes data`` with no command prints that level's help (exit 0) instead of a
    usage error: asking what there is is not a mistake. A subcommand's own ``func`` overrides this
    default, so only a bare group reaches it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.required = False
            parser.set_defaults(func=lambda args, p=parser: p.print_help() or 0)
            for child in dict.fromkeys(action.choices.values()):
                _help_when_bare(child)


def main(argv: list[str] | None = None) -> int:
    # Quieter third-party start-up: these libraries print advisory warnings a user cannot act on.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        args_list = sys.argv[1:] if argv is None else list(argv)
        bad = next((a for a in args_list if "\0" in a), None)
        if bad is not None:
            raise UsageError(f"argument {bad[:40]!r} contains a NUL character")
        args = build_parser().parse_args(args_list)
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe fails here, inside the handler below, not at exit
        return rc
    except GenmodesError as e:
        lines = getattr(e, "lines", None)  # several bad rows: one line each
        for line in (lines or [])[:-1]:
            print(f"genmodes: error: {' '.join(str(line).split())}", file=sys.stderr)
        return _fail(lines[-1] if lines else str(e))
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly; stdout is pointed at /dev/null so the
        # interpreter's final flush does not raise again
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        _close_bars()
        print("genmodes: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RecursionError, MemoryError) as e:
        msg = disk_error_message(e)
        if isinstance(e, RecursionError):
            msg = "input nested too deeply"
        elif isinstance(e, MemoryError):
            msg = "out of memory (a size setting too large for this machine?)"
        if msg is None:
            raise
        return _fail(msg)
    except Exception as e:  # noqa: BLE001 - safetensors reports a full disk with its own type
        msg = disk_error_message(e)
        if msg is None:
            raise
        return _fail(msg)


def _close_bars() -> None:
    """Close live tqdm bars so the error line is not printed on a bar's line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def _fail(msg: str) -> int:
    _close_bars()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    line = " ".join(str(msg).split("\n"))
    print(f"genmodes: error: {line}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
