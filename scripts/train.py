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

from tevit_hf.data.youtube_vis import VisDataError
from tevit_hf.training import TrainingArgumentError, TrainingDataError, parse_arguments, train


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_arguments(argv)
        train(args)
    except (TrainingArgumentError, TrainingDataError, VisDataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
