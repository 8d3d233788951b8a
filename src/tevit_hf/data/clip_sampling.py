"""Which frames form a training clip (spec 5.2, official `datasets/youtubevis.py`).

Items are *annotated frames*: frames where at least one non-crowd instance has a usable box (not null, area > 0,
w >= 1, h >= 1: the same filter as the targets), in videos whose shorter side is at least `min_size`. Densely
annotated, long videos are therefore sampled more often, as in the official loader.

Two modes build a clip of T frames from an item (video v, frame f):
- "random" (official): `[f] + T-1 other annotated frames of v` drawn without replacement, in random order, with no
  temporal window. Videos with fewer than T annotated frames cannot make a clip.
- "window": the T consecutive frames starting at f (moved back to `length - T` near the end of the video); frames
  inside the window may have no annotation. Videos shorter than T cannot make a clip.
An item whose video cannot make a clip is replaced by another random item (the official `_rand_another`); drawing
uniformly among the items that can is the same distribution without the retry loop.

All randomness of an item comes from `clip_rng(seed, epoch, index)`, so a clip depends only on those three numbers
(deterministic across workers and exact on resume).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


SAMPLING_MODES = ("random", "window")
DEFAULT_CLIP_LENGTH = 5
DEFAULT_MIN_SIZE = 32


def clip_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of item `index` in `epoch`: independent of workers, order and earlier draws."""
    return np.random.default_rng([seed, epoch, index])


def is_usable_box(box: Sequence[float] | None, area: float | None) -> bool:
    """The official per-frame GT filter: a box counts unless it is null, `area <= 0`, `w < 1` or `h < 1`.

    A null area (files without `areas`) falls back to the box area.
    """
    if box is None:
        return False
    width, height = box[2], box[3]
    if area is None:
        area = width * height
    return area > 0 and width >= 1 and height >= 1


def usable_instance_frames(instance: dict) -> list[bool]:
    """Per frame: whether this instance is a training target there (non-crowd and a usable box)."""
    if instance["iscrowd"]:
        return [False] * len(instance["bboxes"])
    return [is_usable_box(box, area) for box, area in zip(instance["bboxes"], instance["areas"])]


def annotated_frame_indices(video: dict) -> list[int]:
    """Frames of a dataset row with at least one training target, ascending."""
    annotated = np.zeros(video["length"], dtype=bool)
    for instance in video["instances"]:
        annotated |= np.asarray(usable_instance_frames(instance), dtype=bool)
    return np.flatnonzero(annotated).tolist()


def build_sampling_items(
    videos: Iterable[dict], min_size: int = DEFAULT_MIN_SIZE
) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """Items `(video_index, frame_index)` over annotated frames of videos with short side >= `min_size`.

    Returns the items and, per video index, its annotated frames (empty for filtered videos).
    """
    items: list[tuple[int, int]] = []
    annotated_per_video: list[list[int]] = []
    for video_index, video in enumerate(videos):
        frames = annotated_frame_indices(video) if min(video["height"], video["width"]) >= min_size else []
        annotated_per_video.append(frames)
        items.extend((video_index, frame_index) for frame_index in frames)
    return items, annotated_per_video


def can_make_clip(annotated_frames: Sequence[int], length: int, clip_length: int, mode: str) -> bool:
    """Whether a video with these annotated frames and `length` frames can give a clip of `clip_length`."""
    if mode == "random":
        return len(annotated_frames) >= clip_length
    return length >= clip_length


def sample_clip_frames(
    rng: np.random.Generator,
    reference_frame: int,
    annotated_frames: Sequence[int],
    length: int,
    clip_length: int,
    mode: str = "random",
) -> list[int]:
    """Frame indices of a clip built around `reference_frame` (see the module doc for the two modes).

    Raises:
        ValueError: the video cannot make a clip (check `can_make_clip` first) or an unknown mode.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
    if not can_make_clip(annotated_frames, length, clip_length, mode):
        raise ValueError(
            f"a {mode!r} clip of {clip_length} frames needs more frames: {len(annotated_frames)} annotated of {length}"
        )
    if mode == "window":
        start = min(reference_frame, length - clip_length)
        return list(range(start, start + clip_length))
    others = [frame for frame in annotated_frames if frame != reference_frame]
    chosen = rng.choice(len(others), size=clip_length - 1, replace=False) if clip_length > 1 else []
    return [reference_frame, *(others[position] for position in chosen)]


__all__ = [
    "DEFAULT_CLIP_LENGTH",
    "DEFAULT_MIN_SIZE",
    "SAMPLING_MODES",
    "annotated_frame_indices",
    "build_sampling_items",
    "can_make_clip",
    "clip_rng",
    "is_usable_box",
    "sample_clip_frames",
    "usable_instance_frames",
]
