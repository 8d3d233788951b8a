"""`tevit-hf make-synthetic`: write a synthetic YouTube-VIS-format train/val dataset (logic: `tevit_hf.data.synthetic`).

The folder it writes (`<output-dir>/train`, `<output-dir>/val`) is what `scripts/train.py --synthetic` writes with
the same defaults, so `scripts/train.py --synthetic --synthetic_dir <output-dir>` trains on it as is.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..data.synthetic import (
    ANNOTATION_FILENAME,
    MP4_CHOICES,
    SHAPE_CLASSES,
    SyntheticSplits,
    write_synthetic_vis_dataset,
)
from ..file_utils import staged_directory


logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SyntheticSplits()
    parser.add_argument("--output-dir", required=True, help="dataset root to write (as one unit): train/ and val/")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an --output-dir that holds earlier data (default: refuse)"
    )
    parser.add_argument("--num-train-videos", type=int, default=defaults.num_train_videos, help="videos in train/")
    parser.add_argument(
        "--num-val-videos", type=int, default=defaults.num_val_videos, help="videos in val/ (unseen: another seed)"
    )
    parser.add_argument("--num-frames", type=int, default=defaults.num_frames, help="frames per video")
    parser.add_argument("--height", type=int, default=defaults.height, help="frame height")
    parser.add_argument("--width", type=int, default=defaults.width, help="frame width")
    parser.add_argument(
        "--num-classes", type=int, default=defaults.num_classes, help=f"at most {len(SHAPE_CLASSES)}: {SHAPE_CLASSES}"
    )
    parser.add_argument("--max-instances", type=int, default=defaults.max_instances, help="most instances per video")
    parser.add_argument("--min-instances", type=int, default=defaults.min_instances, help="fewest instances per video")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of train/ (val/: seed + 1,000,003); same seed, same data"
    )
    parser.add_argument("--fps", type=int, default=defaults.fps, help="frame rate of the MP4s")
    parser.add_argument(
        "--mp4", choices=MP4_CHOICES, default=defaults.mp4, help="which videos also get an MP4 (videos/<name>.mp4)"
    )
    parser.add_argument(
        "--class-colours",
        action="store_true",
        help="give each class its own main colour (an easier dataset for quick from-scratch training)",
    )


def run(args: argparse.Namespace) -> int:
    # Every setting is validated (SyntheticVisConfig) before a file is written; the dataset lands as one unit.
    splits = SyntheticSplits(
        num_train_videos=args.num_train_videos,
        num_val_videos=args.num_val_videos,
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        num_classes=args.num_classes,
        max_instances=args.max_instances,
        min_instances=args.min_instances,
        seed=args.seed,
        class_colours=args.class_colours,
        mp4=args.mp4,
        fps=args.fps,
    )
    configs = splits.configs()
    with staged_directory(args.output_dir, overwrite=args.overwrite) as staging:
        for name, config in configs.items():
            write_synthetic_vis_dataset(config, staging / name)
    for name in configs:
        logger.info("%s annotations: %s", name, Path(args.output_dir) / name / ANNOTATION_FILENAME)
    logger.info("train on it: scripts/train.py --synthetic --synthetic_dir %s ...", args.output_dir)
    return 0


__all__ = ["add_arguments", "run"]
