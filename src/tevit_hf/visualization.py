"""Draw video instance segmentation results onto frames and write them as MP4 or GIF.

Input is the per-video instance list produced by `TeViTImageProcessor.post_process_video_instance_segmentation`
and `TeViTNearOnlineTracker.track`: dicts with `id`, `label`, `score`, `boxes` `(T, 4)` xyxy pixels of the
original frame, and either `masks` `(T, H, W)` bool or `segmentations` (T per-frame COCO RLE dicts), plus an
optional `frame_valid` `(T,)` bool. Each instance gets a translucent mask, a one-pixel contour, its box and an
"id label score" tag, all in a colour that depends only on its track id (stable across frames, runs and videos).
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .masks_tevit import decode_mask_rle
from .video_io import write_video


DEFAULT_MASK_ALPHA = 0.5
DEFAULT_BOX_WIDTH = 2
DEFAULT_FONT_SIZE = 12
# Hue step between consecutive ids: the golden ratio conjugate spreads any run of ids evenly around the wheel.
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
_COLOR_SATURATION = 0.85
_COLOR_VALUE = 0.95
_TEXT_PADDING = 2


def color_for_id(track_id: int) -> tuple[int, int, int]:
    """Deterministic, well-separated RGB colour of a track id (no hashing, so it is stable across processes)."""
    hue = (int(track_id) * _GOLDEN_RATIO_CONJUGATE) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, _COLOR_SATURATION, _COLOR_VALUE)
    return round(red * 255), round(green * 255), round(blue * 255)


def instance_caption(instance: Mapping[str, Any], id2label: Mapping[int | str, str] | None = None) -> str:
    """The "id label score" tag of an instance, e.g. `"3 person 0.87"` (the label index when no name is known)."""
    label = int(instance["label"])
    name = str(label)
    if id2label is not None:
        name = str(id2label.get(label, id2label.get(str(label), label)))
    return f"{int(instance['id'])} {name} {float(instance['score']):.2f}"


def draw_instances(
    frame: np.ndarray,
    masks: Sequence[np.ndarray | None] | None = None,
    boxes: Sequence[Sequence[float] | None] | None = None,
    track_ids: Sequence[int] = (),
    captions: Sequence[str] | None = None,
    alpha: float = DEFAULT_MASK_ALPHA,
    box_width: int = DEFAULT_BOX_WIDTH,
    font_size: int = DEFAULT_FONT_SIZE,
) -> np.ndarray:
    """Draw N instances onto one frame.

    Args:
        frame: `(H, W, 3)` uint8 RGB; not modified.
        masks: N masks `(H, W)` bool (or `None` entries / `None` for no masks).
        boxes: N boxes `(x1, y1, x2, y2)` in pixels (or `None` entries / `None` for no boxes); non-finite boxes
            are skipped.
        track_ids: N ids choosing the colours.
        captions: N strings drawn at the top-left of each box (or of the mask's extent when there is no box).
        alpha: mask opacity in [0, 1].
        box_width: box outline width in pixels.
        font_size: caption font size in pixels.

    Returns:
        A new `(H, W, 3)` uint8 frame.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be a (H, W, 3) uint8 array, got shape {frame.shape} and dtype {frame.dtype}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    num_instances = len(track_ids)
    for name, values in (("masks", masks), ("boxes", boxes), ("captions", captions)):
        if values is not None and len(values) != num_instances:
            raise ValueError(f"{name} has {len(values)} entries but track_ids has {num_instances}.")
    height, width = frame.shape[:2]
    canvas = frame.astype(np.float32)
    colors = [np.array(color_for_id(track_id), dtype=np.float32) for track_id in track_ids]

    for index in range(num_instances):
        mask = None if masks is None else masks[index]
        if mask is None:
            continue
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (height, width):
            raise ValueError(f"Mask {index} has shape {mask.shape}, expected the frame size {(height, width)}.")
        canvas[mask] = (1.0 - alpha) * canvas[mask] + alpha * colors[index]
        canvas[_mask_contour(mask)] = colors[index]

    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for index in range(num_instances):
        color = tuple(int(c) for c in colors[index])
        anchor = None
        box = None if boxes is None else boxes[index]
        if box is not None and all(math.isfinite(float(v)) for v in box):
            x1, y1, x2, y2 = (float(v) for v in box)
            draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=color, width=box_width)
            anchor = (x1, y1)
        elif masks is not None and masks[index] is not None and np.asarray(masks[index]).any():
            rows, cols = np.nonzero(np.asarray(masks[index], dtype=bool))
            anchor = (float(cols.min()), float(rows.min()))
        if captions is not None and anchor is not None:
            _draw_caption(draw, captions[index], anchor, color, font, height, width)
    return np.asarray(image)


def annotate_video(
    frames: Iterable[np.ndarray],
    instances: Sequence[Mapping[str, Any]],
    id2label: Mapping[int | str, str] | None = None,
    score_threshold: float = 0.0,
    alpha: float = DEFAULT_MASK_ALPHA,
    draw_boxes: bool = True,
    font_size: int = DEFAULT_FONT_SIZE,
) -> Iterator[np.ndarray]:
    """Lazily draw a video's instances onto its frames, one frame at a time.

    An instance is drawn in frame t when its score is >= `score_threshold`, its `frame_valid[t]` (if given)
    is true and its mask in frame t (if masks are given) is not empty: frames where a track is absent stay
    clean. RLE masks are decoded one frame at a time.

    Args:
        frames: the T `(H, W, 3)` uint8 RGB frames the instances were predicted on (original size).
        instances: the per-video instance list (see the module docstring).
        id2label: optional label names (`config.id2label`).
        score_threshold: instances scoring below this are not drawn.
        alpha, draw_boxes, font_size: drawing style.

    Yields:
        T annotated `(H, W, 3)` uint8 frames.
    """
    shown = [instance for instance in instances if float(instance["score"]) >= score_threshold]
    captions = [instance_caption(instance, id2label) for instance in shown]
    track_ids = [int(instance["id"]) for instance in shown]
    num_frames = _common_num_frames(shown)
    all_boxes = [None if instance.get("boxes") is None else _to_numpy(instance["boxes"]) for instance in shown]
    frame_index = -1
    for frame_index, frame in enumerate(frames):
        if num_frames is not None and frame_index >= num_frames:
            raise ValueError(f"Got more frames than the {num_frames} frames the instances describe.")
        masks, boxes, present = [], [], []
        for instance, instance_boxes in zip(shown, all_boxes):
            mask = _instance_mask(instance, frame_index)
            valid = instance.get("frame_valid")
            is_present = (valid is None or bool(valid[frame_index])) and (mask is None or bool(mask.any()))
            present.append(is_present)
            masks.append(mask if is_present else None)
            show_box = draw_boxes and instance_boxes is not None and is_present
            boxes.append(instance_boxes[frame_index] if show_box else None)
        yield draw_instances(
            frame,
            masks=masks,
            boxes=boxes,
            track_ids=track_ids,
            captions=[caption if is_present else "" for caption, is_present in zip(captions, present)],
            alpha=alpha,
            font_size=font_size,
        )
    if num_frames is not None and frame_index + 1 != num_frames:
        raise ValueError(f"Got {frame_index + 1} frames but the instances describe {num_frames} frames.")


def write_annotated_video(
    frames: Iterable[np.ndarray],
    instances: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    fps: float,
    **annotate_kwargs: Any,
) -> Path:
    """Draw the instances onto the frames (`annotate_video`) and write MP4 or GIF by suffix (`write_video`)."""
    return write_video(annotate_video(frames, instances, **annotate_kwargs), path, fps)


# ----------------------------------------------------------------------------------------------------------------
# internals


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensors, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _common_num_frames(instances: Sequence[Mapping[str, Any]]) -> int | None:
    lengths = set()
    for instance in instances:
        for key in ("masks", "segmentations", "boxes", "frame_valid"):
            if instance.get(key) is not None:
                lengths.add(len(instance[key]))
    if len(lengths) > 1:
        raise ValueError(f"Instances disagree on the number of frames: {sorted(lengths)}.")
    return lengths.pop() if lengths else None


def _instance_mask(instance: Mapping[str, Any], frame_index: int) -> np.ndarray | None:
    if instance.get("masks") is not None:
        return _to_numpy(instance["masks"][frame_index]).astype(bool)
    if instance.get("segmentations") is not None:
        return decode_mask_rle(instance["segmentations"][frame_index])
    return None


def _mask_contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it (the mask minus its erosion)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _draw_caption(
    draw: ImageDraw.ImageDraw, text: str, anchor: tuple[float, float], color, font, height: int, width: int
) -> None:
    if not text:
        return
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_width, text_height = right - left + 2 * _TEXT_PADDING, bottom - top + 2 * _TEXT_PADDING
    x, y = anchor
    # Above the box when there is room, else just inside its top edge; always inside the frame (boxes may not be).
    y = y - text_height if y - text_height >= 0 else y
    x = min(max(0.0, x), max(0.0, width - text_width))
    y = min(max(0.0, y), max(0.0, height - text_height))
    draw.rectangle((x, y, x + text_width, y + text_height), fill=color)
    # Dark text on light colours, white on dark ones (ITU-R BT.601 luma).
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    text_color = (0, 0, 0) if luma > 128 else (255, 255, 255)
    draw.text((x + _TEXT_PADDING - left, y + _TEXT_PADDING - top), text, fill=text_color, font=font)
