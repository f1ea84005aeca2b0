"""``python -m genmodes``: the same command line as ``genmodes``."""

import sys

from genmodes.cli import main

if __name__ == "__main__":
    sys.exit(main())
