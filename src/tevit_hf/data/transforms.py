"""Clip-level training augmentations of the official TeViT pipeline (spec 5.3): one random keep-ratio resize and
one horizontal-flip decision, drawn once per clip and applied to every frame, mask and box of that clip.

Resize follows mmdet `Resize(keep_ratio=True)` with mmcv `rescale_size`: frames are resized by
`TeViTImageProcessor` (bilinear without antialiasing, like cv2) with `size={"longest_edge": max(scale),
"shortest_edge": min(scale)}`, masks here with nearest neighbour, boxes scaled per axis and clipped to the resized
frame. Flip follows mmdet `RandomFlip` after the resize: frames and masks are mirrored on the resized frame and
boxes map to `x1' = W - x2`, `x2' = W - x1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


SCALE_MODES = ("range", "value")
# Official training scales as (long edge, short edge): `img_scale=[(640, 360), (960, 480)]`.
DEFAULT_TRAIN_SCALES: tuple[tuple[int, int], ...] = ((640, 360), (960, 480))
DEFAULT_FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class ClipTransform:
    """The augmentation drawn for one clip.

    scale: (long edge, short edge) bound of the keep-ratio fit. flip: mirror every frame horizontally.
    """

    scale: tuple[int, int]
    flip: bool


def validate_scales(scales: Sequence[Sequence[int]], scale_mode: str) -> tuple[tuple[int, int], ...]:
    """Check and normalise `scales` (a list of (edge, edge) pairs) for `scale_mode` ("range" or "value")."""
    if scale_mode not in SCALE_MODES:
        raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
    normalised = tuple((int(scale[0]), int(scale[1])) for scale in scales)
    if not normalised or any(len(scale) != 2 or min(scale) <= 0 for scale in scales):
        raise ValueError(f"scales must be a non-empty list of positive (edge, edge) pairs, got {scales!r}")
    if scale_mode == "range" and len(normalised) not in (1, 2):
        raise ValueError(f"'range' scale mode takes 1 or 2 scales (the range ends), got {len(normalised)}")
    return normalised


def sample_clip_transform(
    rng: np.random.Generator,
    scales: Sequence[tuple[int, int]] = DEFAULT_TRAIN_SCALES,
    scale_mode: str = "range",
    flip_probability: float = DEFAULT_FLIP_PROBABILITY,
) -> ClipTransform:
    """Draw one clip's resize scale and flip decision (mmdet `Resize.random_sample*` and `RandomFlip`).

    "range": the long edge uniform in [min, max] of the scales' long edges and the short edge uniform in [min, max]
    of their short edges (integers, both ends included). "value": one of `scales`, uniformly.
    """
    scales = validate_scales(scales, scale_mode)
    if len(scales) == 1:
        scale = scales[0]
    elif scale_mode == "range":
        long_edges = [max(scale) for scale in scales]
        short_edges = [min(scale) for scale in scales]
        scale = (
            int(rng.integers(min(long_edges), max(long_edges) + 1)),
            int(rng.integers(min(short_edges), max(short_edges) + 1)),
        )
    else:
        scale = scales[int(rng.integers(len(scales)))]
    flip = bool(rng.random() < flip_probability)
    return ClipTransform(scale=scale, flip=flip)


def scale_to_processor_size(scale: tuple[int, int]) -> dict[str, int]:
    """The `TeViTImageProcessor` `size` of a clip scale: mmcv fits the long side to max(scale), the short to min."""
    return {"longest_edge": max(scale), "shortest_edge": min(scale)}


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(N, H, W)` bool -> `(N, h, w)` bool, nearest neighbour (cv2 `INTER_NEAREST` = torch "nearest")."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size))
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5


def transform_boxes(
    boxes_xyxy: torch.Tensor, original_size: tuple[int, int], resized_size: tuple[int, int], flip: bool
) -> torch.Tensor:
    """Map `(..., 4)` xyxy pixel boxes of the original frame to the resized (and flipped) frame, clipped to it."""
    (height, width), (new_height, new_width) = original_size, resized_size
    factors = boxes_xyxy.new_tensor([new_width / width, new_height / height] * 2)
    boxes = boxes_xyxy * factors
    boxes = torch.stack(
        [
            boxes[..., 0].clamp(0, new_width),
            boxes[..., 1].clamp(0, new_height),
            boxes[..., 2].clamp(0, new_width),
            boxes[..., 3].clamp(0, new_height),
        ],
        dim=-1,
    )
    if flip:
        boxes = torch.stack([new_width - boxes[..., 2], boxes[..., 1], new_width - boxes[..., 0], boxes[..., 3]], -1)
    return boxes


__all__ = [
    "DEFAULT_FLIP_PROBABILITY",
    "DEFAULT_TRAIN_SCALES",
    "SCALE_MODES",
    "ClipTransform",
    "resize_masks",
    "sample_clip_transform",
    "scale_to_processor_size",
    "transform_boxes",
    "validate_scales",
]
