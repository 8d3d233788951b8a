"""Thin entry point: `python scripts/predict.py ...` is `tevit-hf predict ...`."""

import sys

from tevit_hf.commands.cli import main


if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
