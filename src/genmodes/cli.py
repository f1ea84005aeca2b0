"""The ``genmodes`` command: thin argument parsing over the library.

Each command group lives beside the code it drives and exposes ``register(subparsers)``, which adds
its parsers and sets ``func(args) -> int`` on each. User errors (:class:`GenmodesError`) end in one
line on stderr and exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from genmodes import __version__
from genmodes.errors import GenmodesError

# Modules that add command groups; imported in this order.
COMMAND_MODULES = [
    "genmodes.models.commands",      # genmodes models, genmodes score
    "genmodes.data.commands",        # genmodes data ...
    "genmodes.experiments.commands", # genmodes run
    "genmodes.report.commands",      # genmodes report
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genmodes",
        description="Controlled studies of how language models generalize from parameters vs context.")
    parser.add_argument("--version", action="version", version=f"genmodes {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a command group not built yet
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Quieter third-party start-up: these libraries print advisory warnings a user cannot act on.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GenmodesError as e:
        print(f"genmodes: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genmodes: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
