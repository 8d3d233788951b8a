"""`tevit-hf make-synthetic`: write a synthetic YouTube-VIS-format dataset (logic: `tevit_hf.data.synthetic`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..data.synthetic import (
    ANNOTATION_FILENAME,
    MP4_CHOICES,
    SHAPE_CLASSES,
    SyntheticVisConfig,
    generate_synthetic_vis_dataset,
)
from ..file_utils import staged_directory


logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SyntheticVisConfig()
    parser.add_argument("--output-dir", required=True, help="dataset root to write (as one unit)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an --output-dir that holds earlier data (default: refuse)"
    )
    parser.add_argument("--num-videos", type=int, default=defaults.num_videos)
    parser.add_argument("--num-frames", type=int, default=defaults.num_frames)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument(
        "--num-classes", type=int, default=defaults.num_classes, help=f"at most {len(SHAPE_CLASSES)}: {SHAPE_CLASSES}"
    )
    parser.add_argument("--max-instances", type=int, default=defaults.max_instances)
    parser.add_argument("--min-instances", type=int, default=defaults.min_instances)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--fps", type=int, default=defaults.fps, help="frame rate of the MP4s")
    parser.add_argument("--mp4", choices=MP4_CHOICES, default=defaults.mp4, help="which videos also get an MP4")
    parser.add_argument(
        "--class-colours",
        action="store_true",
        help="give each class its own main colour (an easier dataset for quick from-scratch training)",
    )


def run(args: argparse.Namespace) -> int:
    # The settings are validated (SyntheticVisConfig) before a file is written; the dataset lands as one unit.
    with staged_directory(args.output_dir, overwrite=args.overwrite) as staging:
        generate_synthetic_vis_dataset(
            staging,
            num_videos=args.num_videos,
            num_frames=args.num_frames,
            height=args.height,
            width=args.width,
            num_classes=args.num_classes,
            max_instances=args.max_instances,
            min_instances=args.min_instances,
            seed=args.seed,
            mp4=args.mp4,
            fps=args.fps,
            class_colours=args.class_colours,
        )
    annotation_path = Path(args.output_dir) / ANNOTATION_FILENAME
    logger.info("annotations: %s", annotation_path)
    return 0


__all__ = ["add_arguments", "run"]
