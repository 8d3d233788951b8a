#!/usr/bin/env python
"""Train or fine-tune TeViT with Accelerate (thin entry point; the logic is in `tevit_hf.training`).

    accelerate launch scripts/train.py --synthetic --model_name_or_path tiny --output_dir outputs/tiny
    accelerate launch --multi_gpu --num_processes 8 scripts/train.py \\
        --train_annotations ytvis_2019/train.json --train_frames_dir ytvis_2019/train/JPEGImages \\
        --init_from queryinst_pvtv2_b1_converted --output_dir outputs/tevit_b1

Run `python scripts/train.py --help` for every option.
"""

from __future__ import annotations

import sys

from tevit_hf.errors import run_with_error_layer
from tevit_hf.training import parse_arguments, train


def main(argv: list[str] | None = None) -> int:
    # Bad arguments, data or folders: one line and exit status 1 (argparse usage errors: 2); --debug for details.
    arguments = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in arguments  # read before parsing, so argument errors can show their traceback too

    def run() -> int:
        train(parse_arguments(arguments))
        return 0

    return run_with_error_layer("train.py", run, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
