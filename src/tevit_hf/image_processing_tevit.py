# Copyright 2026 The tevit-hf Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Image processor for TeViT: videos in, `pixel_values` out; model outputs in, per-video instances out.

Pre-processing reproduces the official TeViT test pipeline (mmdet `Resize(keep_ratio=True)` with mmcv `imrescale`,
`Normalize`, `Pad(size_divisor=32)`), see the spec section 4.2:

1. keep-ratio resize with `s = min(longest_edge / max(h, w), shortest_edge / min(h, w))` and new size
   `(int(w * s + 0.5), int(h * s + 0.5))`, bilinear without antialiasing (cv2 `INTER_LINEAR` semantics, implemented
   with `torch.nn.functional.interpolate(align_corners=False)`; uint8 frames are rounded back to uint8 as cv2 does);
2. rescale by 1/255 and normalise with the ImageNet mean/std the official config uses (RGB);
3. pad bottom/right with zeros *after* normalisation to a multiple of 32, then to the largest video of the batch.

Post-processing reproduces `tevit_roi_head.py::simple_test` (spec section 4.3): every selected (query, class) pair is
an instance whose boxes are mapped to original pixels and whose RoI mask logits are pasted into the original frame
with mmdet's `_do_paste_mask` (`ops_tevit.paste_masks_in_image`), then thresholded with `>= mask_threshold`.

RLE lives in `masks_tevit` (`encode_mask_rle`, `encode_masks_rle`, `decode_mask_rle` are re-exported here for old
imports). This module also holds the YouTube-VIS results writer (`to_youtube_vis_results`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import ChannelDimension, PILImageResampling, infer_channel_dimension_format
from transformers.processing_utils import ImagesKwargs
from transformers.utils import TensorType, auto_docstring, logging

from .masks_tevit import decode_mask_rle, empty_mask_rle, encode_mask_rle, encode_masks_rle, rle_areas
from .ops_tevit import box_cxcywh_to_xyxy, paste_masks_in_image
from .video_io import iter_video_frames, split_video_batch


logger = logging.get_logger(__name__)

# Official TeViT normalisation (mmdet `img_norm_cfg`, 0-255 scale) expressed on the 0-1 scale after `rescale`.
TEVIT_IMAGE_MEAN = [123.675 / 255, 116.28 / 255, 103.53 / 255]
TEVIT_IMAGE_STD = [58.395 / 255, 57.12 / 255, 57.375 / 255]
# Official test scale (640, 360) with keep_ratio=True.
TEVIT_DEFAULT_SIZE = {"longest_edge": 640, "shortest_edge": 360}
TEVIT_PAD_SIZE_DIVISOR = 32

# Largest value of an 8-bit pixel: uint8 frames are rounded and clipped back to [0, 255] after resizing (cv2 does).
_UINT8_MAX = 255.0
# Upper bound on pasted pixels (masks x H x W) per `paste_masks_in_image` call; grid_sample also allocates a grid of
# twice that size, so one chunk peaks at roughly 4 * 4 bytes * this number (~128 MiB).
_PASTE_CHUNK_ELEMENTS = 1 << 23
# Resampling filters we implement with torch (cv2-compatible, no antialiasing) and their `interpolate` modes.
_TORCH_RESAMPLE_MODES = {
    int(PILImageResampling.NEAREST): "nearest",
    int(PILImageResampling.BILINEAR): "bilinear",
    int(PILImageResampling.BICUBIC): "bicubic",
}
_SUPPORTED_INPUT_CHANNELS = (1, 3, 4)
_REQUIRED_OUTPUT_FIELDS = ("selected_scores", "selected_labels", "selected_boxes", "selected_mask_logits")


class TeViTImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    pad_size_divisor (`int`, *optional*, defaults to `32`):
        Each video is padded (bottom/right, zeros after normalisation) to a height and width divisible by this.
    """

    pad_size_divisor: int


# ----------------------------------------------------------------------------------------------------------------
# YouTube-VIS results
# ----------------------------------------------------------------------------------------------------------------


def map_labels_to_categories(
    id2label: Mapping[Any, str], categories: Sequence[Mapping[str, Any]] | Mapping[Any, str]
) -> dict[int, int]:
    """The project's one rule from model labels to a dataset's category ids (demo, evaluate, training evaluation).

    1. **By name**: when every model class name (`config.id2label`) is a category name, each label maps to the
       category of that name (the normal case: a model trained or converted for the dataset).
    2. **By position**, only when the names differ but the counts agree: the i-th smallest label maps to the i-th
       smallest category id (with a warning). For YouTube-VIS 2019 (ids 1..40) this is the official `label + 1`,
       which is also what `to_youtube_vis_results` uses when given no mapping.
    3. Otherwise a `ValueError` naming both sides: the model cannot be scored on this dataset.

    Args:
        id2label: the model's label -> class name.
        categories: the dataset's categories: the annotation json's `categories` list (`{"id", "name"}` dicts) or a
            mapping category id -> name.
    """
    if isinstance(categories, Mapping):
        category_names = {int(category_id): str(name) for category_id, name in categories.items()}
    else:
        category_names = {int(category["id"]): str(category["name"]) for category in categories}
    by_name = {name: category_id for category_id, name in category_names.items()}
    names = {int(label): str(name) for label, name in id2label.items()}
    if set(names.values()) <= set(by_name):
        return {label: by_name[name] for label, name in names.items()}
    if len(names) != len(category_names):
        raise ValueError(
            f"the model has {len(names)} labels {sorted(names.values())[:5]}... but the dataset has "
            f"{len(category_names)} categories {sorted(by_name)[:5]}...; they cannot be matched (give the model the "
            "dataset's category names in config.id2label)"
        )
    logger.warning(
        "Model class names %s are not the dataset's categories: mapping the i-th label to the i-th smallest "
        "category id.",
        sorted(names.values())[:5],
    )
    return dict(zip(sorted(names), sorted(category_names)))


def to_youtube_vis_results(
    instances: Sequence[Mapping[str, Any]],
    video_id: int,
    label_to_category_id: Mapping[int, int] | None = None,
    absent_frames_as_null: bool = False,
) -> list[dict[str, Any]]:
    """YouTube-VIS results entries (the `results.json` format of CodaLab / `YTVOSeval`) for one video.

    Args:
        instances: the instances of one video as returned by
            `TeViTImageProcessor.post_process_video_instance_segmentation` (with `masks` `(T, H, W)` or with
            `segmentations`, a list of T per-frame RLE dicts); `frame_valid` `(T,)` is optional.
        video_id: the dataset's id of the video (from `videos[*].id` of the annotation json).
        label_to_category_id: model label -> dataset category id, from `map_labels_to_categories`. Defaults to
            `label + 1` (that rule for a dataset whose category ids are 1..C, e.g. YouTube-VIS 2019).
        absent_frames_as_null: write `None` instead of an empty RLE for frames where an instance is marked absent
            (`frame_valid` False). The default follows the official `test_vis.py`, which writes an RLE for every frame
            (absent frames are empty masks); the YouTube-VIS API accepts both.
    Returns:
        One dict per instance: `{"video_id", "score", "category_id", "segmentations"}`; `segmentations` has one entry
        per frame, each an RLE `{"size": [H, W], "counts": str}` (or `None`, see `absent_frames_as_null`).
    """
    results = []
    for index, instance in enumerate(instances):
        label = int(instance["label"])
        if label_to_category_id is None:
            category_id = label + 1
        elif label in label_to_category_id:
            category_id = int(label_to_category_id[label])
        else:
            raise ValueError(
                f"Instance {index} of video {video_id} has label {label}, which is missing from "
                f"`label_to_category_id` (known labels: {sorted(label_to_category_id)})."
            )
        if "segmentations" in instance:
            segmentations = [dict(rle) for rle in instance["segmentations"]]
        elif "masks" in instance:
            segmentations = encode_masks_rle(instance["masks"])
        else:
            raise ValueError(f"Instance {index} of video {video_id} has neither 'masks' nor 'segmentations'.")
        frame_valid = instance.get("frame_valid")
        if absent_frames_as_null and frame_valid is not None:
            segmentations = [rle if bool(valid) else None for rle, valid in zip(segmentations, frame_valid)]
        results.append(
            {
                "video_id": video_id,
                "score": float(instance["score"]),
                "category_id": category_id,
                "segmentations": segmentations,
            }
        )
    return results


# ----------------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------------


def get_keep_ratio_resize_size(
    height: int, width: int, longest_edge: int | None, shortest_edge: int | None
) -> tuple[int, int]:
    """mmcv `rescale_size`: the `(new_height, new_width)` that fits `(longest_edge, shortest_edge)` keeping the ratio.

    `scale = min(longest_edge / max(h, w), shortest_edge / min(h, w))` (a missing bound is ignored) and each side is
    rounded with `int(side * scale + 0.5)`. Small frames are scaled up, as mmcv does.
    Examples with (640, 360): 1280x720 -> 640x360, 640x480 -> 480x360, 1920x1080 -> 640x360 (width x height).
    """
    candidates = []
    if longest_edge is not None:
        candidates.append(longest_edge / max(height, width))
    if shortest_edge is not None:
        candidates.append(shortest_edge / min(height, width))
    if not candidates:
        raise ValueError("A keep-ratio resize needs `longest_edge` and/or `shortest_edge`.")
    scale = min(candidates)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | torch.Tensor)


def make_batched_videos(videos: Any) -> list[Any]:
    """Split the `videos` argument of `preprocess` into a list of videos, by the one rule of
    `video_io.split_video_batch` (shared with the pipeline): a list of frames (PIL images, image paths, 2-D/3-D
    arrays) is ONE video, a list of videos (lists of frames, 4-D arrays, video file / frame folder paths) is a BATCH,
    a 5-D array is a batch. Video files and frame folders are decoded with `video_io.iter_video_frames`.
    """
    videos, _ = split_video_batch(videos)
    return [list(iter_video_frames(video)) if isinstance(video, str | os.PathLike) else video for video in videos]


def _shape_only(shape: Sequence[int]) -> np.ndarray:
    # `infer_channel_dimension_format` only reads the shape: a zero-stride view avoids copying (GPU) tensors.
    return np.broadcast_to(np.zeros((), dtype=np.uint8), tuple(shape))


def _open_frame_file(path: str | os.PathLike, where: str) -> PIL.Image.Image:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: frame file not found: {os.fspath(path)!r}.")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"{where}: cannot read {os.fspath(path)!r} as an image ({error}). Video files must be decoded into "
            "frames first (see the project's video_io module)."
        ) from error


def _frame_to_chw_tensor(frame: Any, input_data_format: ChannelDimension | None, where: str) -> torch.Tensor:
    """One frame (PIL image, path, `(H, W)`, `(H, W, C)` or `(C, H, W)` array/tensor) -> `(3, H, W)` RGB tensor.

    uint8 frames stay uint8; other dtypes become float32. Grayscale is replicated to 3 channels and the alpha channel
    of RGBA is dropped (as cv2/mmcv `imread` does).
    """
    if isinstance(frame, str | os.PathLike):
        frame = _open_frame_file(frame, where)
    if isinstance(frame, PIL.Image.Image):
        if frame.mode != "RGB":
            frame = frame.convert("RGB")
        return torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    if not _is_array(frame):
        raise TypeError(f"{where}: unsupported frame type {type(frame).__name__}.")
    if isinstance(frame, torch.Tensor):
        tensor = frame.detach().cpu()
    else:
        array = np.ascontiguousarray(frame)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    if tensor.ndim == 2:
        tensor = tensor[None]
    elif tensor.ndim == 3:
        channel_format = input_data_format
        if channel_format is None:
            try:
                channel_format = infer_channel_dimension_format(
                    _shape_only(tensor.shape), num_channels=_SUPPORTED_INPUT_CHANNELS
                )
            except ValueError as error:
                raise ValueError(
                    f"{where}: cannot find the channel axis of a frame of shape {tuple(tensor.shape)}; expected "
                    f"{_SUPPORTED_INPUT_CHANNELS} channels first or last (pass `input_data_format`)."
                ) from error
        if ChannelDimension(channel_format) == ChannelDimension.LAST:
            tensor = tensor.permute(2, 0, 1)
    else:
        raise ValueError(f"{where}: a frame must have 2 or 3 dims, got shape {tuple(tensor.shape)}.")
    num_channels = tensor.shape[0]
    if num_channels == 1:
        tensor = tensor.expand(3, -1, -1)
    elif num_channels == 4:
        tensor = tensor[:3]
    elif num_channels != 3:
        raise ValueError(
            f"{where}: expected 1 (grayscale), 3 (RGB) or 4 (RGBA) channels, got {num_channels} "
            f"(frame shape {tuple(frame.shape)}, input_data_format={input_data_format})."
        )
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    if tensor.dtype != torch.uint8:
        tensor = tensor.to(torch.float32)
    return tensor.contiguous()


def _video_frames(video: Any, input_data_format: ChannelDimension | None, video_index: int):
    """Yield `(3, H, W)` tensors for the frames of one video (a list of frames or a 4-D array/tensor)."""
    frame_format = input_data_format
    if _is_array(video):
        if frame_format is None:
            try:
                # Decide the layout once per video so that one ambiguous frame cannot flip it.
                frame_format = infer_channel_dimension_format(
                    _shape_only(video.shape), num_channels=_SUPPORTED_INPUT_CHANNELS
                )
            except ValueError as error:
                raise ValueError(
                    f"Video {video_index}: cannot find the channel axis of an array of shape {tuple(video.shape)}; "
                    "expected (T, H, W, C) or (T, C, H, W) with C in (1, 3, 4) (or pass `input_data_format`)."
                ) from error
    for frame_index, frame in enumerate(video):
        yield _frame_to_chw_tensor(frame, frame_format, f"Video {video_index}, frame {frame_index}")


def _resize_frame(frame: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """`(3, h, w)` uint8/float -> `(3, height, width)` float32, cv2-style (no antialias, half-pixel centres)."""
    is_uint8 = frame.dtype == torch.uint8
    frame = frame.to(torch.float32)
    if tuple(frame.shape[-2:]) == (height, width):
        return frame
    options = {} if mode == "nearest" else {"align_corners": False}
    resized = F.interpolate(frame[None], size=(height, width), mode=mode, **options)[0]
    if is_uint8:
        # cv2 returns uint8 for uint8 input (round half up, saturate); mmcv normalises that uint8 image.
        resized = torch.floor(resized + 0.5).clamp_(0.0, _UINT8_MAX)
    return resized


@dataclass(frozen=True)
class _PreprocessSettings:
    """The pre-processing options of one `preprocess` call (its arguments, else the processor's attributes)."""

    do_resize: bool
    size: dict[str, int]
    resample: PILImageResampling | int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: list[float]
    image_std: list[float]
    do_pad: bool
    pad_size_divisor: int
    pad_size: Mapping[str, int] | None


def _check_video_lengths(batch: Sequence[Any]) -> None:
    """Every video has frames, and all have as many (batches are not padded along time)."""
    lengths = [len(video) for video in batch]
    for index, length in enumerate(lengths):
        if length == 0:
            raise ValueError(f"Video {index} has no frames.")
        if length != lengths[0]:
            raise ValueError(
                f"All videos in a batch must have the same number of frames: video 0 has {lengths[0]} frames "
                f"but video {index} has {length}. Process videos of different lengths in separate calls."
            )


def _rescale_and_normalize(pixels: torch.Tensor, settings: _PreprocessSettings) -> torch.Tensor:
    """Step 3 of `preprocess`: `(T, 3, h, w)` float32 pixels times `rescale_factor`, then `(x - mean) / std`."""
    if settings.do_rescale:
        pixels = pixels * settings.rescale_factor
    if settings.do_normalize:
        mean = torch.tensor(settings.image_mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(settings.image_std, dtype=torch.float32)[:, None, None]
        pixels = (pixels - mean) / std
    return pixels


def _pad_videos(
    videos: Sequence[torch.Tensor], image_sizes: Sequence[tuple[int, int]], padded_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4 of `preprocess`: zero-pad `(T, 3, h, w)` videos bottom/right into `(B, T, 3, H_pad, W_pad)`
    `pixel_values`, with the `(B, H_pad, W_pad)` int64 `pixel_mask` (1 on each video's `(h, w)`, 0 on padding).
    """
    padded_height, padded_width = padded_size
    num_frames = videos[0].shape[0]
    pixel_values = torch.zeros(len(videos), num_frames, 3, padded_height, padded_width, dtype=torch.float32)
    pixel_mask = torch.zeros(len(videos), padded_height, padded_width, dtype=torch.int64)
    for video_index, (video_pixels, (height, width)) in enumerate(zip(videos, image_sizes)):
        pixel_values[video_index, :, :, :height, :width] = video_pixels
        pixel_mask[video_index, :height, :width] = 1
    return pixel_values, pixel_mask


def _to_batch_feature(data: dict[str, torch.Tensor], return_tensors: str | TensorType | None) -> BatchFeature:
    """Step 5 of `preprocess`: torch tensors for `return_tensors="pt"`, NumPy arrays for `"np"` or None."""
    if return_tensors is None or TensorType(return_tensors) == TensorType.NUMPY:
        return BatchFeature(data={key: value.numpy() for key, value in data.items()})
    if TensorType(return_tensors) != TensorType.PYTORCH:
        raise ValueError(f"`return_tensors` must be 'pt', 'np' or None, got {return_tensors!r}.")
    return BatchFeature(data=data, tensor_type=TensorType.PYTORCH)


def _as_size_pairs(sizes: Any, batch_size: int, name: str) -> list[tuple[int, int]]:
    if isinstance(sizes, torch.Tensor):
        sizes = sizes.detach().cpu().tolist()
    elif isinstance(sizes, np.ndarray):
        sizes = sizes.tolist()
    sizes = list(sizes)
    if len(sizes) != batch_size:
        raise ValueError(f"`{name}` has {len(sizes)} entries but the outputs hold {batch_size} videos.")
    pairs = []
    for index, size in enumerate(sizes):
        if len(size) != 2:
            raise ValueError(f"`{name}[{index}]` must be (height, width), got {size}.")
        pairs.append((int(size[0]), int(size[1])))
    return pairs


def _get_output_field(outputs: Any, name: str) -> Any:
    # Model outputs (`ModelOutput` is itself a Mapping that omits None fields) and plain dicts are both accepted.
    if isinstance(outputs, Mapping):
        return outputs.get(name)
    return getattr(outputs, name, None)


def _get_selected_outputs(outputs: Any) -> tuple[Any, Any, Any, Any]:
    """Step 1 of post-processing: `(scores, labels, boxes, mask_logits)` of the outputs, with checked shapes."""
    fields = {name: _get_output_field(outputs, name) for name in _REQUIRED_OUTPUT_FIELDS}
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        raise ValueError(f"The outputs lack {missing}; expected TeViT outputs with {list(_REQUIRED_OUTPUT_FIELDS)}.")
    scores, labels = fields["selected_scores"], fields["selected_labels"]
    boxes, mask_logits = fields["selected_boxes"], fields["selected_mask_logits"]
    if boxes.ndim != 4 or mask_logits.ndim != 5 or scores.ndim != 2:
        raise ValueError(
            "Expected selected_scores (B, K), selected_boxes (B, T, K, 4), selected_mask_logits (B, T, K, M, M); "
            f"got {tuple(scores.shape)}, {tuple(boxes.shape)}, {tuple(mask_logits.shape)}."
        )
    batch_size, num_frames, num_instances = boxes.shape[:3]
    if tuple(mask_logits.shape[:3]) != (batch_size, num_frames, num_instances) or tuple(scores.shape) != (
        batch_size,
        num_instances,
    ):
        raise ValueError(
            f"Inconsistent shapes: selected_scores {tuple(scores.shape)}, selected_boxes {tuple(boxes.shape)}, "
            f"selected_mask_logits {tuple(mask_logits.shape)}."
        )
    return scores, labels, boxes, mask_logits


def _resolve_target_sizes(outputs: Any, target_sizes: Any, image_sizes: Any) -> Any:
    """The sizes to paste into: `target_sizes`, else `image_sizes`, else the outputs' `image_sizes`."""
    if target_sizes is not None:
        return target_sizes
    target_sizes = image_sizes if image_sizes is not None else _get_output_field(outputs, "image_sizes")
    if target_sizes is None:
        raise ValueError(
            "Pass `target_sizes` (e.g. inputs['original_sizes']) or `image_sizes` (inputs['image_sizes']): "
            "the outputs do not say which size to paste the masks into."
        )
    return target_sizes


def _select_instances(scores: torch.Tensor, threshold: float, top_k: int | None, device: torch.device) -> torch.Tensor:
    """Step 2 of post-processing: slots of one video's `(K,)` scores, best first (stable for ties), that reach
    `threshold`, at most `top_k` of them.
    """
    order = torch.sort(scores, descending=True, stable=True).indices.to(device)
    order = order[scores.to(device)[order] >= threshold]
    if top_k is not None:
        order = order[:top_k]
    return order


def _boxes_to_pixels(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Step 3 of post-processing: normalised `(..., 4)` `(cx, cy, w, h)` boxes -> float32 xyxy in `height` x `width`
    pixels.
    """
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    return box_cxcywh_to_xyxy(boxes.detach().float()) * scale


def _build_instances(
    order: torch.Tensor,
    instance_ids: Any,
    labels: Any,
    scores: torch.Tensor,
    boxes: torch.Tensor,
    frame_valid: torch.Tensor,
    pasted: list[Any],
    return_rle: bool,
) -> list[dict[str, Any]]:
    """Step 5 of post-processing: the instance dicts of one video (see `post_process_video_instance_segmentation`).

    `order` holds the kept slots; `instance_ids` (`(K,)` or None: the slot is the id), `labels` and `scores` are
    indexed by slot, while `boxes` / `frame_valid` `(T, k, ...)` and `pasted` (masks or RLEs) are indexed by rank.
    """
    instances = []
    for rank, slot in enumerate(order.tolist()):
        instance = {
            "id": int(instance_ids[slot]) if instance_ids is not None else slot,
            "label": int(labels[slot]),
            "score": float(scores[slot]),
            "boxes": boxes[:, rank],
            "frame_valid": frame_valid[:, rank],
        }
        instance["segmentations" if return_rle else "masks"] = pasted[rank]
        instance["visible"] = (
            torch.from_numpy(rle_areas(pasted[rank]) > 0) if return_rle else pasted[rank].flatten(1).any(1)
        )
        instances.append(instance)
    return instances


# ----------------------------------------------------------------------------------------------------------------
# The processor
# ----------------------------------------------------------------------------------------------------------------


@auto_docstring(custom_intro="Constructs a TeViT video processor (PIL / NumPy / torch only, no torchvision).")
class TeViTImageProcessor(BaseImageProcessor):
    r"""
    do_resize (`bool`, *optional*, defaults to `True`):
        Resize every frame keeping its aspect ratio (mmcv `imrescale` rule, see `get_keep_ratio_resize_size`).
    size (`dict[str, int]`, *optional*, defaults to `{"longest_edge": 640, "shortest_edge": 360}`):
        Keep-ratio fit bounds (`longest_edge` and/or `shortest_edge`), or `{"height", "width"}` for a fixed size.
    resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`):
        `NEAREST`, `BILINEAR` or `BICUBIC`, implemented like cv2 (no antialiasing), as the official pipeline.
    do_rescale (`bool`, *optional*, defaults to `True`):
        Multiply pixel values by `rescale_factor`.
    rescale_factor (`float`, *optional*, defaults to `1 / 255`):
        Rescale factor.
    do_normalize (`bool`, *optional*, defaults to `True`):
        Normalise with `image_mean` / `image_std` (per RGB channel).
    image_mean (`list[float]`, *optional*, defaults to `[123.675, 116.28, 103.53] / 255`):
        Channel means (RGB, on the rescaled scale).
    image_std (`list[float]`, *optional*, defaults to `[58.395, 57.12, 57.375] / 255`):
        Channel standard deviations.
    do_pad (`bool`, *optional*, defaults to `True`):
        Pad bottom/right with zeros (after normalisation) to a multiple of `pad_size_divisor`, then to the largest
        video of the batch (or to `pad_size`).
    pad_size_divisor (`int`, *optional*, defaults to `32`):
        Padded height and width are multiples of this.
    pad_size (`dict[str, int]`, *optional*):
        Fixed `{"height", "width"}` to pad every video to (must fit every resized video).
    """

    model_input_names = ["pixel_values", "pixel_mask"]
    valid_kwargs = TeViTImageProcessorKwargs

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | None = None,
        resample: PILImageResampling | int = PILImageResampling.BILINEAR,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | list[float] | None = None,
        image_std: float | list[float] | None = None,
        do_pad: bool = True,
        pad_size_divisor: int = TEVIT_PAD_SIZE_DIVISOR,
        pad_size: dict[str, int] | None = None,
        **kwargs,
    ) -> None:
        r"""
        pad_size_divisor (`int`, *optional*, defaults to `32`):
            Padded height and width are multiples of this.
        """
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.size = dict(size) if size is not None else dict(TEVIT_DEFAULT_SIZE)
        self.resample = PILImageResampling(int(resample))
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean) if image_mean is not None else list(TEVIT_IMAGE_MEAN)
        self.image_std = list(image_std) if image_std is not None else list(TEVIT_IMAGE_STD)
        self.do_pad = do_pad
        self.pad_size_divisor = pad_size_divisor
        self.pad_size = dict(pad_size) if pad_size is not None else None
        self._validate_settings(
            self.size, self.resample, self.rescale_factor, self.image_mean, self.image_std, self.pad_size_divisor
        )

    # -- settings --------------------------------------------------------------------------------------------------

    @staticmethod
    def _validate_settings(
        size: Mapping[str, int],
        resample: Any,
        rescale_factor: float,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        pad_size_divisor: int,
    ) -> None:
        keys = {key for key, value in dict(size).items() if value is not None}
        if not (keys and (keys <= {"longest_edge", "shortest_edge"} or keys == {"height", "width"})):
            raise ValueError(
                "`size` must be {'longest_edge': int, 'shortest_edge': int} (keep-ratio fit, either key alone also "
                f"works) or {{'height': int, 'width': int}}; got {dict(size)}."
            )
        if any(int(value) <= 0 for key, value in size.items() if key in keys):
            raise ValueError(f"`size` values must be positive, got {dict(size)}.")
        if int(resample) not in _TORCH_RESAMPLE_MODES:
            supported = [PILImageResampling(value).name for value in _TORCH_RESAMPLE_MODES]
            raise ValueError(f"`resample` must be one of {supported}, got {resample!r}.")
        if not isinstance(rescale_factor, int | float) or rescale_factor <= 0:
            raise ValueError(f"`rescale_factor` must be a positive number, got {rescale_factor!r}.")
        for name, values in (("image_mean", image_mean), ("image_std", image_std)):
            if len(values) != 3:
                raise ValueError(f"`{name}` needs 3 values (R, G, B), got {list(values)}.")
        if any(float(value) == 0.0 for value in image_std):
            raise ValueError(f"`image_std` must be non-zero, got {list(image_std)}.")
        if not isinstance(pad_size_divisor, int) or pad_size_divisor <= 0:
            raise ValueError(f"`pad_size_divisor` must be a positive int, got {pad_size_divisor!r}.")

    def get_resized_size(self, height: int, width: int, size: Mapping[str, int] | None = None) -> tuple[int, int]:
        """`(new_height, new_width)` of a `height` x `width` frame under `size` (defaults to `self.size`)."""
        size = dict(self.size if size is None else size)
        if size.get("height") is not None and size.get("width") is not None:
            return int(size["height"]), int(size["width"])
        return get_keep_ratio_resize_size(height, width, size.get("longest_edge"), size.get("shortest_edge"))

    # -- pre-processing --------------------------------------------------------------------------------------------

    def __call__(self, videos: Any = None, **kwargs) -> BatchFeature:
        """Alias of `preprocess`; also accepts the frames under `images=` like other image processors."""
        if videos is None:
            videos = kwargs.pop("images", None)
        if videos is None:
            raise ValueError("No input: pass `videos` (a video or a list of videos).")
        return self.preprocess(videos, **kwargs)

    @auto_docstring
    def preprocess(
        self,
        videos: Any,
        do_resize: bool | None = None,
        size: dict[str, int] | None = None,
        resample: PILImageResampling | int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | list[float] | None = None,
        image_std: float | list[float] | None = None,
        do_pad: bool | None = None,
        pad_size_divisor: int | None = None,
        pad_size: dict[str, int] | None = None,
        input_data_format: str | ChannelDimension | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        videos (`Any`):
            One video or a list of videos. A video is a list of PIL images, a list of frame file paths (opened with
            PIL), a list of `(H, W)` / `(H, W, C)` / `(C, H, W)` arrays or tensors, one `(T, H, W, C)` /
            `(T, C, H, W)` array or tensor, or a video file / frame folder path (decoded with `video_io`); a 5-D
            array is a batch. See `make_batched_videos`
            for how a single video is told from a batch. Grayscale frames are replicated to RGB and the alpha channel
            of RGBA frames is dropped. Arrays are read as RGB. Videos of different lengths in one batch raise a
            `ValueError` (batches are not padded along time); videos of different sizes are padded to the largest.
        pad_size_divisor (`int`, *optional*):
            Padded height and width are multiples of this (32 by default).
        pad_size (`dict[str, int]`, *optional*):
            Fixed `{"height", "width"}` to pad every video to (must fit every resized video).
        input_data_format (`str` or `ChannelDimension`, *optional*):
            Channel layout of array frames (`"channels_first"` / `"channels_last"`); inferred once per 4-D video.

        Returns a `BatchFeature` with `pixel_values` `(B, T, 3, H_pad, W_pad)` float32, `pixel_mask`
        `(B, H_pad, W_pad)` int64 (1 on the resized video, 0 on padding), `image_sizes` `(B, 2)` (resized unpadded
        `(height, width)`) and `original_sizes` `(B, 2)`. Raises `FileNotFoundError` for a missing frame path and
        `ValueError` for frames of different sizes inside one video, empty videos or unreadable frames.
        """
        settings = self._resolve_preprocess_settings(
            kwargs,
            do_resize=do_resize,
            size=size,
            resample=resample,
            do_rescale=do_rescale,
            rescale_factor=rescale_factor,
            do_normalize=do_normalize,
            image_mean=image_mean,
            image_std=image_std,
            do_pad=do_pad,
            pad_size_divisor=pad_size_divisor,
            pad_size=pad_size,
        )
        channel_format = ChannelDimension(input_data_format) if input_data_format is not None else None
        batch = make_batched_videos(videos)
        _check_video_lengths(batch)

        processed_videos, image_sizes, original_sizes = [], [], []
        for video_index, video in enumerate(batch):
            pixels, original_size = self._convert_and_resize_video(video, video_index, channel_format, settings)
            processed_videos.append(_rescale_and_normalize(pixels, settings))
            image_sizes.append(tuple(pixels.shape[-2:]))
            original_sizes.append(original_size)

        padded_size = self._padded_size(image_sizes, settings.do_pad, settings.pad_size_divisor, settings.pad_size)
        pixel_values, pixel_mask = _pad_videos(processed_videos, image_sizes, padded_size)
        data = {
            "pixel_values": pixel_values,
            "pixel_mask": pixel_mask,
            "image_sizes": torch.tensor(image_sizes, dtype=torch.int64),
            "original_sizes": torch.tensor(original_sizes, dtype=torch.int64),
        }
        return _to_batch_feature(data, return_tensors)

    def _resolve_preprocess_settings(self, unused_kwargs: Mapping[str, Any], **arguments: Any) -> _PreprocessSettings:
        """Step 1 of `preprocess`: the call's arguments over the processor's attributes, validated.

        `unused_kwargs` are the extra keyword arguments `preprocess` received: any set one is refused, except the
        transformers-wide `do_convert_rgb` / `data_format` (TeViT frames are always RGB, channels first).
        """
        ignored = {key for key, value in unused_kwargs.items() if value is not None}
        ignored -= {"do_convert_rgb", "data_format"}  # always RGB, always channels-first
        if ignored:
            raise TypeError(f"TeViTImageProcessor.preprocess got unexpected arguments: {sorted(ignored)}.")
        values = {name: getattr(self, name) if value is None else value for name, value in arguments.items()}
        settings = _PreprocessSettings(
            **{
                **values,
                "size": dict(values["size"]),
                "image_mean": list(values["image_mean"]),
                "image_std": list(values["image_std"]),
            }
        )
        self._validate_settings(
            settings.size,
            settings.resample,
            settings.rescale_factor,
            settings.image_mean,
            settings.image_std,
            settings.pad_size_divisor,
        )
        return settings

    def _convert_and_resize_video(
        self, video: Any, video_index: int, channel_format: ChannelDimension | None, settings: _PreprocessSettings
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Step 2 of `preprocess`: one video's frames as a resized `(T, 3, h, w)` float32 tensor, and its original
        `(height, width)`. Every frame must have the size of frame 0; all get the size `get_resized_size` gives it.
        """
        resize_mode = _TORCH_RESAMPLE_MODES[int(settings.resample)]
        frames, original_size = [], None
        for frame_index, frame in enumerate(_video_frames(video, channel_format, video_index)):
            frame_size = tuple(frame.shape[-2:])
            if original_size is None:
                original_size = frame_size
                target_size = self.get_resized_size(*frame_size, settings.size) if settings.do_resize else frame_size
            elif frame_size != original_size:
                raise ValueError(
                    f"Video {video_index}: frame {frame_index} is {frame_size[0]}x{frame_size[1]} (HxW) but frame 0 "
                    f"is {original_size[0]}x{original_size[1]}; all frames of a video must share one size."
                )
            if 0 in frame_size:
                raise ValueError(
                    f"Video {video_index}: frame {frame_index} is empty ({frame_size[0]}x{frame_size[1]})."
                )
            if frame.is_floating_point() and not bool(torch.isfinite(frame).all()):
                raise ValueError(f"Video {video_index}: frame {frame_index} has NaN or infinite pixel values.")
            if settings.do_rescale and frame.dtype != torch.uint8 and frame.numel() and float(frame.max()) <= 1.0:
                logger.warning_once(
                    "The frames look already rescaled to [0, 1] while `do_rescale=True`; pass `do_rescale=False` "
                    "if they are."
                )
            frames.append(_resize_frame(frame, *target_size, resize_mode))
        return torch.stack(frames), original_size

    @staticmethod
    def _padded_size(
        image_sizes: list[tuple[int, int]], do_pad: bool, pad_size_divisor: int, pad_size: Mapping[str, int] | None
    ) -> tuple[int, int]:
        """Common `(height, width)` of the batch: each video padded to the divisor, then to the largest one."""
        if not do_pad:
            if len(set(image_sizes)) > 1:
                raise ValueError(
                    f"Videos of different resized sizes {sorted(set(image_sizes))} need `do_pad=True` to be batched."
                )
            return image_sizes[0]
        height = max(math.ceil(h / pad_size_divisor) * pad_size_divisor for h, _ in image_sizes)
        width = max(math.ceil(w / pad_size_divisor) * pad_size_divisor for _, w in image_sizes)
        if pad_size is not None:
            target_height, target_width = int(pad_size["height"]), int(pad_size["width"])
            largest = (max(h for h, _ in image_sizes), max(w for _, w in image_sizes))
            if target_height < largest[0] or target_width < largest[1]:
                raise ValueError(
                    f"`pad_size` {target_height}x{target_width} (HxW) is smaller than the largest resized video "
                    f"{largest[0]}x{largest[1]}."
                )
            return target_height, target_width
        return height, width

    # -- post-processing -------------------------------------------------------------------------------------------

    def post_process_video_instance_segmentation(
        self,
        outputs: Any,
        target_sizes: Any = None,
        threshold: float = 0.0,
        mask_threshold: float = 0.5,
        return_rle: bool = False,
        top_k: int | None = None,
        image_sizes: Any = None,
    ) -> list[list[dict[str, Any]]]:
        """Turn TeViT outputs into per-video instances with boxes and masks in original pixels (spec section 4.3).

        Args:
            outputs: a `TeViTVideoInstanceSegmentationOutput` or any mapping / object with
                - `selected_scores` `(B, K)` video-level scores, `selected_labels` `(B, K)` class indices;
                - `selected_boxes` `(B, T, K, 4)` normalised `(cx, cy, w, h)` relative to the unpadded frame;
                - `selected_mask_logits` `(B, T, K, M, M)` RoI mask logits in box coordinates;
                - optional `frame_valid` `(B, T, K)` bool (`(T, K)` when B == 1): False marks frames where the
                  instance is absent (e.g. a linked track before it appears); those frames get an empty mask and
                  NaN boxes. Absent means "all frames valid";
                - optional `instance_ids` `(B, K)` integer ids (e.g. track ids); default: the slot `k` of the instance
                  in the selection;
                - optional `image_sizes` `(B, 2)` unpadded input sizes (the TeViT model output carries them).
            target_sizes: `(B, 2)` `(height, width)` to paste into, normally `inputs["original_sizes"]`. When None,
                the unpadded (resized) input sizes are used: the `image_sizes` argument, else `outputs.image_sizes`;
                with neither a `ValueError` is raised.
            threshold: keep instances with `score >= threshold` (the official model has no threshold: 0.0).
            mask_threshold: a pixel is in the mask when its pasted probability is `>= mask_threshold`.
            return_rle: give per-frame COCO RLEs under `segmentations` instead of dense `masks`; dense masks of the
                whole video are then never held in memory at once.
            top_k: keep at most this many instances (the best scores) per video; None keeps all.
            image_sizes: `(B, 2)` unpadded input sizes, `inputs["image_sizes"]` (see `target_sizes`).

        Returns:
            Per video, instances sorted by descending score, each a dict:
            - `id` (int), `label` (int), `score` (float);
            - `boxes` `(T, 4)` float32 xyxy in target pixels (NaN rows where the instance is absent);
            - `frame_valid` `(T,)` bool: frames where the instance has a prediction;
            - `visible` `(T,)` bool: frames where its mask is not empty (the object is seen there);
            - `masks` `(T, H, W)` bool, or with `return_rle=True` `segmentations`: T RLE dicts
              `{"size": [H, W], "counts": str}` (empty masks for absent frames).
        """
        if not 0.0 <= mask_threshold <= 1.0:
            raise ValueError(f"`mask_threshold` must be in [0, 1], got {mask_threshold}.")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
            raise ValueError(f"`top_k` must be a non-negative int or None, got {top_k!r}.")
        scores, labels, boxes, mask_logits = _get_selected_outputs(outputs)
        batch_size, num_frames, num_instances = boxes.shape[:3]
        frame_valid = self._frame_valid(
            _get_output_field(outputs, "frame_valid"), batch_size, num_frames, num_instances, boxes.device
        )
        instance_ids = _get_output_field(outputs, "instance_ids")
        sizes = _as_size_pairs(_resolve_target_sizes(outputs, target_sizes, image_sizes), batch_size, "target_sizes")

        results = []
        for video_index in range(batch_size):
            video_scores = scores[video_index].detach().float()
            order = _select_instances(video_scores, threshold, top_k, boxes.device)
            height, width = sizes[video_index]
            kept_boxes = _boxes_to_pixels(boxes[video_index][:, order], height, width)  # (T, k, 4)
            kept_valid = (
                frame_valid[video_index][:, order]
                if frame_valid is not None
                else torch.ones(num_frames, len(order), dtype=torch.bool, device=boxes.device)
            )
            pasted = self._paste_video_masks(
                mask_logits[video_index][:, order], kept_boxes, kept_valid, height, width, mask_threshold, return_rle
            )
            kept_boxes = kept_boxes.masked_fill(~kept_valid[..., None], float("nan"))
            ids = instance_ids[video_index] if instance_ids is not None else None
            results.append(
                _build_instances(
                    order, ids, labels[video_index], video_scores, kept_boxes, kept_valid, pasted, return_rle
                )
            )
        return results

    @staticmethod
    def _frame_valid(
        frame_valid: Any, batch_size: int, num_frames: int, num_instances: int, device: torch.device
    ) -> torch.Tensor | None:
        if frame_valid is None:
            return None
        frame_valid = torch.as_tensor(frame_valid).to(device=device, dtype=torch.bool)
        if frame_valid.ndim == 2 and batch_size == 1:
            frame_valid = frame_valid[None]
        if tuple(frame_valid.shape) != (batch_size, num_frames, num_instances):
            raise ValueError(
                f"`frame_valid` must be (B, T, K) = {(batch_size, num_frames, num_instances)} (or (T, K) for one "
                f"video), got {tuple(frame_valid.shape)}."
            )
        return frame_valid

    @staticmethod
    def _paste_video_masks(
        mask_logits: torch.Tensor,
        boxes: torch.Tensor,
        frame_valid: torch.Tensor,
        height: int,
        width: int,
        mask_threshold: float,
        return_rle: bool,
    ) -> list[Any]:
        """Step 4 of post-processing: paste `(T, k, M, M)` logits with `(T, k, 4)` pixel boxes into `height` x `width`
        frames, binarised with `>= mask_threshold`.

        Returns per instance a `(T, H, W)` bool tensor, or a list of T RLE dicts when `return_rle`. Frames where
        `frame_valid` `(T, k)` is False stay empty. Work is chunked so at most `_PASTE_CHUNK_ELEMENTS` pixels are
        pasted at once.
        """
        num_frames, num_kept = boxes.shape[:2]
        # Instance-major (instance, frame) pairs so that consecutive chunks fill one instance after another.
        instance_index, frame_index = torch.nonzero(frame_valid.T, as_tuple=True)
        chunk = max(1, _PASTE_CHUNK_ELEMENTS // max(1, height * width))
        if return_rle:
            empty_rle = empty_mask_rle(height, width)
            rles = [[empty_rle] * num_frames for _ in range(num_kept)]
        else:
            masks = torch.zeros(num_kept, num_frames, height, width, dtype=torch.bool, device=mask_logits.device)
        for begin in range(0, instance_index.numel(), chunk):
            instances = instance_index[begin : begin + chunk]
            frames = frame_index[begin : begin + chunk]
            probabilities = mask_logits[frames, instances].detach().float().sigmoid()
            binary = paste_masks_in_image(probabilities, boxes[frames, instances], height, width) >= mask_threshold
            if return_rle:
                for instance, frame, rle in zip(instances.tolist(), frames.tolist(), encode_masks_rle(binary)):
                    rles[instance][frame] = rle
            else:
                masks[instances, frames] = binary
        if return_rle:
            # Independent dicts per frame so that callers may mutate one without touching the others.
            return [[dict(rle) for rle in instance_rles] for instance_rles in rles]
        return list(masks.unbind(0))


__all__ = [
    "TeViTImageProcessor",
    "TeViTImageProcessorKwargs",
    "decode_mask_rle",
    "encode_mask_rle",
    "encode_masks_rle",
    "get_keep_ratio_resize_size",
    "make_batched_videos",
    "map_labels_to_categories",
    "to_youtube_vis_results",
]
