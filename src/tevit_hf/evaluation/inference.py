"""Run TeViT on the videos of a YouTube-VIS-format dataset and write YouTube-VIS results entries.

Shared by `tevit-hf evaluate` and the training evaluation hook. Offline inference (the default) runs the whole video
as one clip through `TeViTClipRunner`, as the released TeViT code does; near-online inference runs overlapping
clips through `TeViTNearOnlineTracker` (whose clips go through its own `TeViTClipRunner`). Labels map to the
dataset's category ids with the one rule, `map_labels_to_categories`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ..data.youtube_vis import load_video_frames
from ..image_processing_tevit import map_labels_to_categories, to_youtube_vis_results
from ..inference_tevit import TeViTClipRunner
from ..tracking_tevit import DEFAULT_CLIP_LENGTH, DEFAULT_STRIDE, TeViTNearOnlineTracker


def dataset_categories(info: Any) -> dict[int, str]:
    """Category id -> name of a loaded dataset (`VisDatasetInfo` of `tevit_hf.data.load_youtube_vis`)."""
    return {int(info.label2category_id[label]): str(name) for label, name in info.id2label.items()}


def dataset_label_mapping(id2label: Mapping[Any, str], info: Any) -> dict[int, int]:
    """Model label -> category id of a loaded dataset (`map_labels_to_categories` on its categories)."""
    return map_labels_to_categories(id2label, dataset_categories(info))


def make_video_predictor(
    model: torch.nn.Module,
    image_processor: Any,
    near_online: bool = False,
    clip_length: int = DEFAULT_CLIP_LENGTH,
    stride: int = DEFAULT_STRIDE,
    mask_threshold: float = 0.5,
) -> TeViTClipRunner | TeViTNearOnlineTracker:
    """The offline clip runner (whole video = one clip) or, with `near_online`, the near-online tracker."""
    if near_online:
        return TeViTNearOnlineTracker(
            model, image_processor, clip_length=clip_length, stride=stride, mask_threshold=mask_threshold
        )
    return TeViTClipRunner(model, image_processor, mask_threshold=mask_threshold)


def predict_dataset_video(
    predictor: TeViTClipRunner | TeViTNearOnlineTracker, video: Mapping[str, Any], label_to_category: Mapping[int, int]
) -> list[dict[str, Any]]:
    """YouTube-VIS results entries of one dataset row (see `make_video_predictor`)."""
    num_frames = len(video["file_names"])
    if isinstance(predictor, TeViTNearOnlineTracker):
        instances = predictor.track(_iter_frames(video), num_frames=num_frames)
    else:
        instances = predictor(load_video_frames(video, range(num_frames)))
    return to_youtube_vis_results(instances, int(video["video_id"]), label_to_category)


def _iter_frames(video: Mapping[str, Any]) -> Iterator[Any]:
    # One frame at a time so that near-online memory stays bounded by the clip length.
    for frame_index in range(len(video["file_names"])):
        yield load_video_frames(video, [frame_index])[0]


__all__ = ["dataset_categories", "dataset_label_mapping", "make_video_predictor", "predict_dataset_video"]
