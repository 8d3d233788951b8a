"""Thin entry point: `python scripts/benchmark.py MODE ...` is `tevit-hf benchmark MODE ...`.

python scripts/benchmark.py inference --dtype bfloat16 --compile
python scripts/benchmark.py near-online --preset tiny --lengths 100 1000 5000
"""

import sys

from tevit_hf.commands.cli import main


if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
