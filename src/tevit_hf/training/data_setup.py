"""Training and validation data for `scripts/train.py`: the synthetic dataset, up-front checks, loaders.

Everything that can be wrong with the data (missing files, clips longer than every video, a batch larger than the
dataset) is checked here, before the model is built, so a bad run fails in seconds with a message naming the
argument, file and expected vs actual values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader, Sampler

from ..data.clip_dataset import YouTubeVISClipDataset
from ..data.collate import ClipCollator
from ..data.synthetic import (
    ANNOTATION_FILENAME,
    FRAMES_DIRNAME,
    SPLIT_DIRNAMES,
    SyntheticSplits,
    config_differences,
    recorded_config,
    write_synthetic_vis_dataset,
)
from ..data.youtube_vis import DEFAULT_FRAMES_DIRNAME, VisDatasetInfo, load_youtube_vis
from ..errors import OutputExistsError, TeViTError
from ..file_utils import staged_directory
from ..image_processing_tevit import TeViTImageProcessor


logger = logging.getLogger(__name__)

SYNTHETIC_DIRNAME = "synthetic_data"  # under --output_dir unless --synthetic_dir


class TrainingDataError(TeViTError, ValueError):
    """Training data or data arguments that cannot work; raised before training starts."""


@dataclass(frozen=True)
class DataPaths:
    """Annotation files and frame folders of the train (and optional validation) split."""

    train_annotations: str
    train_frames_dir: str
    val_annotations: str | None = None
    val_frames_dir: str | None = None


@dataclass
class ValidationSet:
    """Videos scored by the evaluation hook: dataset rows, label mapping and the annotation json (ground truth)."""

    videos: datasets.Dataset
    info: VisDatasetInfo
    annotation_file: str


def prepare_synthetic_data(
    root: str | os.PathLike, splits: SyntheticSplits, is_main_process: bool, replace_other: bool
) -> DataPaths:
    """Write the synthetic train/val datasets under `root` (main process only; reused when already there).

    A split folder holding another synthetic dataset (as `tevit-hf make-synthetic` with other settings writes) is
    replaced only when `replace_other` (the default folder inside an output folder the user agreed to overwrite);
    otherwise it is an error that names the differing settings. Each split lands as one unit. The caller must
    synchronise processes (`accelerator.wait_for_everyone()`) before reading the data.
    """
    root = Path(root)
    train_root, val_root = (root / name for name in SPLIT_DIRNAMES)
    paths = DataPaths(
        train_annotations=str(train_root / ANNOTATION_FILENAME),
        train_frames_dir=str(train_root / FRAMES_DIRNAME),
        val_annotations=str(val_root / ANNOTATION_FILENAME),
        val_frames_dir=str(val_root / FRAMES_DIRNAME),
    )
    if not is_main_process:
        return paths
    for name, config in splits.configs().items():
        split_root = root / name
        recorded = recorded_config(split_root)
        if recorded is not None and not config_differences(config, recorded):
            logger.info("reusing the synthetic %s split in %s", name, split_root)
            continue
        if recorded is not None and not replace_other:
            differences = "; ".join(config_differences(config, recorded))
            raise TrainingDataError(
                f"{split_root} holds another synthetic dataset ({differences}): give matching --synthetic_* "
                "options, another --synthetic_dir, or delete that folder"
            )
        logger.info("generating the synthetic %s split (%d videos) in %s", name, config.num_videos, split_root)
        try:
            # Only the default folder inside an output folder the user agreed to overwrite is replaced. Elsewhere a
            # split that another process (a side-by-side run) published meanwhile is kept, and used when it is ours.
            with staged_directory(split_root, overwrite=replace_other) as staging:
                write_synthetic_vis_dataset(config, staging)
        except OutputExistsError:
            published = recorded_config(split_root)
            if published is None:
                raise TrainingDataError(
                    f"{split_root} holds files that are not a synthetic dataset: give another --synthetic_dir, or "
                    "delete that folder"
                ) from None
            if config_differences(config, published):
                raise
            logger.info(
                "another process wrote the same synthetic %s split in %s meanwhile; using it", name, split_root
            )
    return paths


def check_data_paths(paths: DataPaths) -> None:
    """Fail early, naming the argument, when an annotation file or frames folder does not exist."""
    checks = [
        ("--train_annotations", paths.train_annotations, "file"),
        ("--train_frames_dir", paths.train_frames_dir, "dir"),
    ]
    if paths.val_annotations is not None:
        checks += [
            ("--val_annotations", paths.val_annotations, "file"),
            ("--val_frames_dir", paths.val_frames_dir, "dir"),
        ]
    for argument, path, kind in checks:
        exists = os.path.isfile(path) if kind == "file" else os.path.isdir(path)
        if not exists:
            what = "annotation file" if kind == "file" else "frames folder"
            raise TrainingDataError(f"{argument}: {what} {path} does not exist")


def resolve_data_paths(args, is_main_process: bool = True) -> DataPaths:
    """The data of training arguments `args`: the synthetic datasets (generated by the main process under
    `--synthetic_dir`, default `<output_dir>/synthetic_data`, or reused) or the given annotation files and frames.
    With synthetic data, other processes must wait for the main one before reading."""
    if args.synthetic:
        splits = SyntheticSplits(
            num_train_videos=args.synthetic_num_train_videos,
            num_val_videos=args.synthetic_num_val_videos,
            num_frames=args.synthetic_num_frames,
            height=args.synthetic_height,
            width=args.synthetic_width,
            num_classes=args.synthetic_num_classes,
            max_instances=args.synthetic_max_instances,
            seed=args.synthetic_seed,
            class_colours=args.synthetic_class_colours,
        )
        # The default folder lies inside the output folder, which the user owns for this run; a folder they name
        # (e.g. from `tevit-hf make-synthetic`) is reused, never replaced.
        root = args.synthetic_dir or os.path.join(args.output_dir, SYNTHETIC_DIRNAME)
        return prepare_synthetic_data(root, splits, is_main_process, replace_other=args.synthetic_dir is None)
    return DataPaths(
        train_annotations=args.train_annotations,
        train_frames_dir=resolve_frames_dir(args.train_annotations, args.train_frames_dir),
        val_annotations=args.val_annotations,
        val_frames_dir=resolve_frames_dir(args.val_annotations, args.val_frames_dir) if args.val_annotations else None,
    )


def resolve_frames_dir(annotation_file: str, frames_dir: str | None) -> str:
    """`frames_dir`, defaulting to `<annotation folder>/JPEGImages` (the YouTube-VIS layout)."""
    return frames_dir if frames_dir else str(Path(annotation_file).parent / DEFAULT_FRAMES_DIRNAME)


def build_train_dataset(
    paths: DataPaths,
    image_processor: TeViTImageProcessor,
    clip_length: int,
    sampling_mode: str,
    scales: Sequence[tuple[int, int]],
    scale_mode: str,
    flip_probability: float,
    seed: int,
    global_batch_size: int,
    skip_bad_clips: bool = False,
) -> tuple[YouTubeVISClipDataset, VisDatasetInfo]:
    """The training clip dataset, after checking that clips of `clip_length` and batches of `global_batch_size`
    (per-device batch x processes) can be made from it."""
    videos, info = load_youtube_vis(paths.train_annotations, paths.train_frames_dir)
    if not info.has_annotations or len(videos) == 0:
        raise TrainingDataError(f"--train_annotations {paths.train_annotations}: no videos with annotations")
    longest = max(videos["length"])
    if clip_length > longest:
        raise TrainingDataError(
            f"--clip_length {clip_length} is larger than every video of {paths.train_annotations} "
            f"(the longest has {longest} frames)"
        )
    try:
        dataset = YouTubeVISClipDataset(
            videos,
            image_processor=image_processor,
            clip_length=clip_length,
            sampling_mode=sampling_mode,
            scales=scales,
            scale_mode=scale_mode,
            flip_probability=flip_probability,
            seed=seed,
            skip_bad_clips=skip_bad_clips,
        )
    except ValueError as error:
        raise TrainingDataError(f"{paths.train_annotations}: {error} (--clip_length {clip_length})") from error
    if global_batch_size > len(dataset):
        raise TrainingDataError(
            f"the global batch ({global_batch_size} clips = --per_device_train_batch_size x processes) is larger than "
            f"the training set ({len(dataset)} items = annotated frames in {paths.train_annotations})"
        )
    return dataset, info


def build_validation_set(paths: DataPaths, train_info: VisDatasetInfo, max_videos: int | None = None) -> ValidationSet:
    """The validation videos; their categories must be those of the training set (same names)."""
    videos, info = load_youtube_vis(paths.val_annotations, paths.val_frames_dir)
    if not info.has_annotations:
        raise TrainingDataError(f"--val_annotations {paths.val_annotations}: no 'annotations' (ground truth) to score")
    if sorted(info.id2label.values()) != sorted(train_info.id2label.values()):
        raise TrainingDataError(
            f"--val_annotations {paths.val_annotations} has categories {sorted(info.id2label.values())}, the training "
            f"set {sorted(train_info.id2label.values())}"
        )
    if max_videos is not None:
        videos = videos.select(range(min(max_videos, len(videos))))
    return ValidationSet(videos=videos, info=info, annotation_file=paths.val_annotations)


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of `range(num_items)` that depends only on `(seed, epoch)`.

    Resuming in the middle of an epoch replays the same order (call `set_epoch` first), and iterating consumes no
    global random state.
    """

    def __init__(self, num_items: int, seed: int, shuffle: bool = True) -> None:
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_items))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())


def build_train_dataloader(
    dataset: YouTubeVISClipDataset, batch_size: int, seed: int, num_workers: int
) -> tuple[DataLoader, EpochShuffleSampler]:
    """Loader of collated clip batches (not yet `accelerator.prepare`d) and its epoch-seeded sampler."""
    sampler = EpochShuffleSampler(len(dataset), seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=ClipCollator(),
        num_workers=num_workers,
        # A dedicated generator: creating an epoch's iterator then draws nothing from the global RNG (exact resume).
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        drop_last=False,
    )
    return loader, sampler


__all__ = [
    "resolve_data_paths",
    "DataPaths",
    "EpochShuffleSampler",
    "TrainingDataError",
    "ValidationSet",
    "build_train_dataloader",
    "build_train_dataset",
    "build_validation_set",
    "check_data_paths",
    "prepare_synthetic_data",
    "resolve_frames_dir",
]
