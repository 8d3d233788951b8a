"""Thin entry point: `python scripts/evaluate.py ...` is `tevit-hf evaluate ...`."""

import sys

from tevit_hf.commands.cli import main


if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
