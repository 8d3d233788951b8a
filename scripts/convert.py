"""Thin entry point: `python scripts/convert.py ...` is `tevit-hf convert ...`."""

import sys

from tevit_hf.commands.cli import main


if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
