"""Batch training clips of different sizes: pad frames, pixel masks and GT masks to the largest clip.

Padding goes bottom/right with zeros, the processor's convention (zeros after normalisation), so a padded clip is
the same as one the processor padded to the larger size. Box targets need no change: they are normalised to each
clip's unpadded frame, which `pixel_mask` still marks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def collate_clips(samples: Sequence[dict], return_metadata: bool = False) -> dict:
    """Stack samples of `YouTubeVISClipDataset` (or `build_clip_sample`) into a model batch.

    Returns:
        pixel_values `(B, T, 3, H, W)` float32, pixel_mask `(B, H, W)` int64 and labels (a list of B dicts whose
        masks are padded to `(T, K, H, W)`), where H, W are the largest padded sizes of the batch; with
        `return_metadata`, also `metadata` (the list of the samples' metadata dicts). Without it the batch holds
        only model inputs, so `model(**batch)` works.

    Raises:
        ValueError: an empty batch or clips of different lengths T.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of clips")
    lengths = [sample["pixel_values"].shape[0] for sample in samples]
    if len(set(lengths)) != 1:
        raise ValueError(f"all clips of a batch need the same number of frames T, got {lengths}")
    height = max(sample["pixel_values"].shape[-2] for sample in samples)
    width = max(sample["pixel_values"].shape[-1] for sample in samples)
    first = samples[0]["pixel_values"]
    pixel_values = first.new_zeros((len(samples), lengths[0], first.shape[1], height, width))
    pixel_mask = torch.zeros(len(samples), height, width, dtype=torch.long)
    labels = []
    for index, sample in enumerate(samples):
        sample_height, sample_width = sample["pixel_values"].shape[-2:]
        pixel_values[index, ..., :sample_height, :sample_width] = sample["pixel_values"]
        pixel_mask[index, :sample_height, :sample_width] = sample["pixel_mask"]
        clip_labels = dict(sample["labels"])
        masks = clip_labels["masks"]
        padded_masks = masks.new_zeros((*masks.shape[:2], height, width))
        padded_masks[..., :sample_height, :sample_width] = masks
        clip_labels["masks"] = padded_masks
        labels.append(clip_labels)
    batch = {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": labels}
    if return_metadata:
        batch["metadata"] = [sample.get("metadata", {}) for sample in samples]
    return batch


@dataclass(frozen=True)
class ClipCollator:
    """Picklable `collate_fn` for a `DataLoader` (works with worker processes); see `collate_clips`."""

    return_metadata: bool = False

    def __call__(self, samples: Sequence[dict]) -> dict:
        return collate_clips(samples, return_metadata=self.return_metadata)


__all__ = ["ClipCollator", "collate_clips"]
