"""Training clips from a VIS `datasets.Dataset`: frames, the model's `labels` dict and a `torch` Dataset wrapper.

A sample is

    pixel_values  (T, 3, H_pad, W_pad) float32, through `TeViTImageProcessor` (resize, normalise, pad to 32)
    pixel_mask    (H_pad, W_pad) int64, 1 on the resized frame, 0 on padding
    labels        the model's per-clip targets:
        class_labels (K,) int64           contiguous label of each instance present in the clip
        boxes        (T, K, 4) float32    normalised (cx, cy, w, h) relative to the *unpadded* resized frame
        masks        (T, K, H_pad, W_pad) bool, at the padded input resolution
        valid        (T, K) bool          instance k is a target in frame t (boxes/masks are zero elsewhere)
    metadata      video_id, frame_indices (T,), instance_ids (K,) annotation ids, category_ids (K,), flipped,
                  scale (long, short), image_size (2,) resized (h, w), original_size (2,) (h, w)

The K instances are the non-crowd instances with a usable box in at least one frame of the clip, ordered by
annotation id (the official `unique(gt_ids)`); the same index k is the same instance in every frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset

from ..image_processing_tevit import TeViTImageProcessor
from ..masks_tevit import box_xyxy_to_cxcywh
from .clip_sampling import (
    DEFAULT_CLIP_LENGTH,
    DEFAULT_MIN_SIZE,
    SAMPLING_MODES,
    build_sampling_items,
    can_make_clip,
    clip_rng,
    sample_clip_frames,
    usable_instance_frames,
)
from .transforms import (
    DEFAULT_FLIP_PROBABILITY,
    DEFAULT_TRAIN_SCALES,
    ClipTransform,
    resize_masks,
    sample_clip_transform,
    scale_to_processor_size,
    transform_boxes,
    validate_scales,
)
from .youtube_vis import VisDataError, decode_segmentation, load_video_frames


logger = logging.getLogger(__name__)

# Redraws of another item after a bad clip when `skip_bad_clips=True`, before giving up.
DEFAULT_MAX_BAD_CLIP_REDRAWS = 10


def build_clip_sample(
    video: dict,
    frame_indices: Sequence[int],
    transform: ClipTransform,
    image_processor: TeViTImageProcessor,
) -> dict:
    """Load frames `frame_indices` of a dataset row, apply `transform` to all of them and build the targets.

    Returns the sample dict described in the module docstring.

    Raises:
        FileNotFoundError: a frame file is missing. VisDataError: a frame or mask disagrees with the video size,
        or an instance has a usable box but no segmentation in a sampled frame.
    """
    frame_indices = [int(index) for index in frame_indices]
    frames = load_video_frames(video, frame_indices)
    processed = image_processor.preprocess(
        frames,
        do_resize=True,
        size=scale_to_processor_size(transform.scale),
        input_data_format="channels_last",
        return_tensors="pt",
    )
    pixel_values, pixel_mask = processed["pixel_values"][0], processed["pixel_mask"][0]
    resized_size = tuple(int(side) for side in processed["image_sizes"][0])
    if transform.flip:
        # Official order: resize, flip, normalise, pad. Normalising is per pixel, so flipping the unpadded region
        # of the processor output is exactly that.
        height, width = resized_size
        pixel_values[..., :height, :width] = pixel_values[..., :height, :width].flip(-1)
    original_size = (int(video["height"]), int(video["width"]))
    labels, instance_ids, category_ids = _clip_targets(
        video, frame_indices, transform.flip, original_size, resized_size, tuple(pixel_values.shape[-2:])
    )
    metadata = {
        "video_id": int(video["video_id"]),
        "frame_indices": torch.tensor(frame_indices, dtype=torch.long),
        "instance_ids": torch.tensor(instance_ids, dtype=torch.long),
        "category_ids": torch.tensor(category_ids, dtype=torch.long),
        "flipped": transform.flip,
        "scale": transform.scale,
        "image_size": torch.tensor(resized_size, dtype=torch.long),
        "original_size": torch.tensor(original_size, dtype=torch.long),
    }
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": labels, "metadata": metadata}


def _clip_targets(
    video: dict,
    frame_indices: list[int],
    flip: bool,
    original_size: tuple[int, int],
    resized_size: tuple[int, int],
    padded_size: tuple[int, int],
) -> tuple[dict[str, torch.Tensor], list[int], list[int]]:
    """The model's `labels` dict of one clip plus the annotation and category ids of its K instances."""
    num_frames = len(frame_indices)
    candidates = []
    for instance in video["instances"]:
        usable = usable_instance_frames(instance)  # iscrowd instances are never usable
        in_clip = [usable[frame_index] for frame_index in frame_indices]
        if any(in_clip):
            candidates.append((instance, in_clip))
    candidates.sort(key=lambda candidate: candidate[0]["id"])
    num_instances = len(candidates)

    valid = torch.zeros(num_frames, num_instances, dtype=torch.bool)
    boxes_xyxy = torch.zeros(num_frames, num_instances, 4, dtype=torch.float32)
    original_masks, mask_positions = [], []
    for instance_position, (instance, in_clip) in enumerate(candidates):
        for time_position, frame_index in enumerate(frame_indices):
            if not in_clip[time_position]:
                continue
            x, y, width, height = instance["bboxes"][frame_index]
            valid[time_position, instance_position] = True
            boxes_xyxy[time_position, instance_position] = torch.tensor([x, y, x + width, y + height])
            where = (
                f"video {video['video_id']}, annotation {instance['id']}, frame {frame_index} "
                f"({video['file_names'][frame_index]}), field 'segmentations'"
            )
            segmentation = instance["segmentations"][frame_index]
            if segmentation is None:
                raise VisDataError(f"{where}: the frame has a box but no segmentation")
            original_masks.append(torch.from_numpy(decode_segmentation(segmentation, *original_size, where=where)))
            mask_positions.append((time_position, instance_position))

    masks = torch.zeros(num_frames, num_instances, *padded_size, dtype=torch.bool)
    if original_masks:
        resized_masks = resize_masks(torch.stack(original_masks), resized_size)
        if flip:
            resized_masks = resized_masks.flip(-1)
        time_index, instance_index = (torch.tensor(index) for index in zip(*mask_positions))
        masks[time_index, instance_index, : resized_size[0], : resized_size[1]] = resized_masks

    resized_height, resized_width = resized_size
    boxes_px = transform_boxes(boxes_xyxy, original_size, resized_size, flip)
    normaliser = boxes_px.new_tensor([resized_width, resized_height, resized_width, resized_height])
    boxes = box_xyxy_to_cxcywh(boxes_px / normaliser) * valid[..., None]
    labels = {
        "class_labels": torch.tensor([instance["label"] for instance, _ in candidates], dtype=torch.long),
        "boxes": boxes,
        "masks": masks,
        "valid": valid,
    }
    instance_ids = [int(instance["id"]) for instance, _ in candidates]
    category_ids = [int(instance["category_id"]) for instance, _ in candidates]
    return labels, instance_ids, category_ids


class YouTubeVISClipDataset(Dataset):
    """Training clips of a VIS dataset, sampled like the official TeViT loader (spec 5.2/5.3).

    One item per annotated frame (see `clip_sampling`); item `index` gives the clip built around it with a random
    scale and flip shared by all its frames. Every random choice of item `index` comes from
    `clip_rng(seed, epoch, index)`, so the sample depends only on (seed, epoch, index): identical with any number of
    DataLoader workers, and exact when training resumes. Call `set_epoch(epoch)` before creating each epoch's
    iterator (with `persistent_workers=True` the workers keep the epoch they were started with).

    Args:
        videos: rows from `load_youtube_vis`.
        image_processor: normalisation and padding (its `size` is replaced by the sampled clip scale);
            default `TeViTImageProcessor()`.
        clip_length: T frames per clip (official 5).
        sampling_mode: "random" (official) or "window" (T consecutive frames).
        scales: (long edge, short edge) pairs; official `((640, 360), (960, 480))`.
        scale_mode: "range" (official base config) or "value" (the "MST" config).
        flip_probability: probability of a horizontal flip of the whole clip.
        min_size: videos whose shorter side is below this are not sampled (official 32).
        seed: base seed.
        skip_bad_clips: when True, a clip that fails to load (missing frame, mask of the wrong size, box without
            mask) is logged as a warning and replaced by another random item; when False (default) the error
            propagates, naming the video and field.
    """

    def __init__(
        self,
        videos: datasets.Dataset,
        image_processor: TeViTImageProcessor | None = None,
        clip_length: int = DEFAULT_CLIP_LENGTH,
        sampling_mode: str = "random",
        scales: Sequence[tuple[int, int]] = DEFAULT_TRAIN_SCALES,
        scale_mode: str = "range",
        flip_probability: float = DEFAULT_FLIP_PROBABILITY,
        min_size: int = DEFAULT_MIN_SIZE,
        seed: int = 0,
        skip_bad_clips: bool = False,
        max_bad_clip_redraws: int = DEFAULT_MAX_BAD_CLIP_REDRAWS,
    ) -> None:
        if sampling_mode not in SAMPLING_MODES:
            raise ValueError(f"sampling_mode must be one of {SAMPLING_MODES}, got {sampling_mode!r}")
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        self.videos = videos
        self.image_processor = image_processor if image_processor is not None else TeViTImageProcessor()
        self.clip_length = clip_length
        self.sampling_mode = sampling_mode
        self.scales = validate_scales(scales, scale_mode)
        self.scale_mode = scale_mode
        self.flip_probability = flip_probability
        self.seed = seed
        self.epoch = 0
        self.skip_bad_clips = skip_bad_clips
        self.max_bad_clip_redraws = max_bad_clip_redraws

        summary = videos.select_columns(["height", "width", "length", "instances"])
        self.items, self.annotated_frames = build_sampling_items(summary, min_size=min_size)
        lengths = summary["length"]
        self._clip_ready = np.array(
            [
                can_make_clip(self.annotated_frames[video_index], lengths[video_index], clip_length, sampling_mode)
                for video_index, _ in self.items
            ],
            dtype=bool,
        )
        self._ready_items = np.flatnonzero(self._clip_ready)
        if len(self._ready_items) == 0:
            raise ValueError(
                f"no video can make a {sampling_mode!r} clip of {clip_length} frames (videos need >= {clip_length} "
                f"{'annotated ' if sampling_mode == 'random' else ''}frames and a short side >= {min_size})"
            )
        self._lengths = lengths
        logger.info(
            "%d training items (annotated frames) in %d videos; %d can start a clip of %d frames",
            len(self.items),
            sum(bool(frames) for frames in self.annotated_frames),
            len(self._ready_items),
            clip_length,
        )
        # Never silent: videos that can never start a clip (too short, or too few annotated frames) are named.
        unusable = sorted(
            {
                video_index
                for video_index, frames in enumerate(self.annotated_frames)
                if frames and not can_make_clip(frames, lengths[video_index], clip_length, sampling_mode)
            }
        )
        if unusable:
            ids = videos.select(unusable)["video_id"] if "video_id" in videos.column_names else unusable
            logger.warning(
                "%d of %d videos are never sampled: they cannot make a %r clip of %d frames (video ids %s%s).",
                len(unusable),
                len(self.annotated_frames),
                sampling_mode,
                clip_length,
                list(ids[:10]),
                ", ..." if len(unusable) > 10 else "",
            )

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips `__getitem__` returns (part of every item's seed)."""
        self.epoch = int(epoch)

    def _draw_ready_item(self, rng: np.random.Generator) -> int:
        return int(self._ready_items[rng.integers(len(self._ready_items))])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} items")
        rng = clip_rng(self.seed, self.epoch, index)
        item = index if self._clip_ready[index] else self._draw_ready_item(rng)
        for _ in range(self.max_bad_clip_redraws + 1):
            video_index, reference_frame = self.items[item]
            frame_indices = sample_clip_frames(
                rng,
                reference_frame,
                self.annotated_frames[video_index],
                self._lengths[video_index],
                self.clip_length,
                self.sampling_mode,
            )
            transform = sample_clip_transform(rng, self.scales, self.scale_mode, self.flip_probability)
            video = self.videos[video_index]
            try:
                return build_clip_sample(video, frame_indices, transform, self.image_processor)
            except (FileNotFoundError, VisDataError) as error:
                if not self.skip_bad_clips:
                    raise
                logger.warning("skipping a bad clip of video %s: %s", video["video_id"], error)
                item = self._draw_ready_item(rng)
        raise RuntimeError(
            f"item {index}: {self.max_bad_clip_redraws + 1} clips in a row failed to load; see the warnings above"
        )


__all__ = ["YouTubeVISClipDataset", "build_clip_sample"]
