"""Masks and boxes as data: the project's one implementation of COCO RLE, mask areas and boxes, and video mask IoU.

Used by post-processing (`image_processing_tevit`), the near-online linker (`tracking_tevit`), the pipeline, the
YouTube-VIS metric (`evaluation/`), the dataset code and the synthetic generator (`data/`).

- **RLE.** A per-frame mask is a COCO RLE dict `{"size": [H, W], "counts": str}` (compressed counts as `str`, so it
  is JSON serialisable, as the official `test_vis.py` writes). `encode_masks_rle` / `encode_mask_rle` encode,
  `decode_mask_rle` / `decode_masks_rle` decode, `to_coco_rle` turns any frame segmentation of a YouTube-VIS file
  (polygons, uncompressed or compressed RLE, `None`) into the form pycocotools computes on.
- **Video mask IoU** (`video_mask_iou`): the spatio-temporal IoU that YouTube-VIS defines,
  `sum_t |A_t & B_t| / sum_t |A_t | B_t|`, computed on RLEs (no mask is decoded); a frame whose entry is `None` is
  absent (an empty mask).
- **Boxes.** The tensor box ops live in `ops_tevit` (the model needs them) and are re-exported here
  (`box_cxcywh_to_xyxy`, `box_xyxy_to_cxcywh`, `box_xywh_to_xyxy`, `box_area`, `pairwise_box_iou`); `rle_boxes_xywh`
  gives the COCO `[x, y, w, h]` box of RLE masks.

pycocotools is imported lazily: only the RLE paths need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from .ops_tevit import box_area, box_cxcywh_to_xyxy, box_xywh_to_xyxy, box_xyxy_to_cxcywh, pairwise_box_iou


logger = logging.get_logger(__name__)


def coco_mask_api():
    """The `pycocotools.mask` module (`ImportError` naming the fix when pycocotools is missing)."""
    # Imported lazily (and inside try/except so Hub remote-code import checks do not require it).
    try:
        from pycocotools import mask as coco_mask
    except ImportError as error:
        raise ImportError("RLE encoding/decoding needs pycocotools: `pip install pycocotools`.") from error
    return coco_mask


def _to_numpy_bool(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).astype(bool, copy=False)


def encode_masks_rle(masks: np.ndarray | torch.Tensor) -> list[dict[str, Any]]:
    """Encode binary masks `(N, H, W)` as COCO RLE dicts `{"size": [H, W], "counts": str}` (one pycocotools call).

    The masks are laid out in Fortran order as pycocotools requires and `counts` is decoded to `str` so that the result
    is JSON serialisable (the official `test_vis.py` does the same).
    """
    array = _to_numpy_bool(masks)
    if array.ndim != 3:
        raise ValueError(f"encode_masks_rle expects masks of shape (N, H, W), got shape {tuple(array.shape)}.")
    if array.shape[0] == 0:
        return []
    encoded = coco_mask_api().encode(np.asfortranarray(array.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in encoded]


def encode_mask_rle(mask: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """Encode one binary mask `(H, W)` as a COCO RLE dict `{"size": [H, W], "counts": str}`."""
    array = _to_numpy_bool(mask)
    if array.ndim != 2:
        raise ValueError(f"encode_mask_rle expects a mask of shape (H, W), got shape {tuple(array.shape)}.")
    return encode_masks_rle(array[None])[0]


def empty_mask_rle(height: int, width: int) -> dict[str, Any]:
    """The RLE of an all-background `(height, width)` mask."""
    return encode_mask_rle(np.zeros((height, width), dtype=bool))


def decode_mask_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE dict (compressed `counts` as str/bytes, or uncompressed `counts` as a list) to `(H, W)` bool."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"An RLE must be a mapping with 'size' and 'counts', got {type(rle).__name__}: {rle!r:.80}")
    coco_mask = coco_mask_api()
    height, width = (int(size) for size in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        compressed = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return coco_mask.decode(compressed).astype(bool)


def decode_masks_rle(rles: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    """Decode per-frame RLEs (one size) to a `(T, H, W)` bool tensor; the dense form a caller asks for."""
    if len(rles) == 0:
        raise ValueError("decode_masks_rle needs at least one RLE (the frame size comes from them).")
    return torch.from_numpy(np.stack([decode_mask_rle(rle) for rle in rles]))


def to_coco_rle(segmentation: Any, height: int, width: int) -> dict[str, Any] | None:
    """One frame's segmentation -> a compressed RLE with `bytes` counts (what pycocotools computes on), or None.

    Accepts a compressed RLE (`counts` str or bytes), an uncompressed RLE (`counts` list), a list of polygons, or
    `None` / `[]` (absent in this frame: returns None, as the official scorer treats falsy entries).

    Raises:
        ValueError: malformed polygons or RLE, or an RLE whose size is not `[height, width]`.
    """
    if segmentation is None or (isinstance(segmentation, list) and len(segmentation) == 0):
        return None
    coco_mask = coco_mask_api()
    if isinstance(segmentation, list):
        try:
            return coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        except Exception as error:  # pycocotools raises bare Exceptions/TypeErrors on malformed polygons
            raise ValueError(f"invalid polygon segmentation ({error})") from error
    if not isinstance(segmentation, Mapping):
        raise ValueError(
            f"a segmentation must be an RLE dict, a list of polygons or null, got {type(segmentation).__name__}"
        )
    missing = [key for key in ("size", "counts") if key not in segmentation]
    if missing:
        raise ValueError(f"missing key(s) {missing}; present keys are {sorted(segmentation)}")
    size = [int(value) for value in segmentation["size"]]
    if size != [height, width]:
        raise ValueError(f"RLE size {size} does not match the video size [height, width] = {[height, width]}")
    counts = segmentation["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return coco_mask.frPyObjects({"size": size, "counts": counts}, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise ValueError(f"RLE 'counts' must be a string or a list of ints, got {type(counts).__name__}")
    return _checked_compressed_rle({"size": size, "counts": counts})


def _checked_compressed_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """`rle` if its counts describe exactly a `size` mask. pycocotools accepts some malformed counts strings and then
    reads past them (garbage masks, or very slow scoring), so each one is decoded and encoded again by pycocotools:
    a valid RLE comes back unchanged (pycocotools writes the one canonical form)."""
    coco_mask = coco_mask_api()
    height, width = rle["size"]
    try:
        canonical = coco_mask.encode(np.asfortranarray(coco_mask.decode(rle)))
    except Exception as error:  # pycocotools raises bare Exceptions on malformed counts
        raise ValueError(f"invalid RLE 'counts' ({error})") from error
    if canonical["counts"] != rle["counts"]:
        raise ValueError(
            f"invalid RLE 'counts' {rle['counts'][:20]!r}: its runs do not cover the {height}x{width} mask exactly "
            "(a COCO RLE's run lengths must add up to height * width)"
        )
    return rle


def rle_areas(rles: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
    """Pixel areas `(N,)` float64 of RLE masks; a `None` entry (absent) has area 0."""
    areas = np.zeros(len(rles), dtype=np.float64)
    present = [index for index, rle in enumerate(rles) if rle is not None]
    if present:
        areas[present] = coco_mask_api().area([rles[index] for index in present])
    return areas


def rle_boxes_xywh(rles: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """COCO `[x, y, w, h]` boxes `(N, 4)` float64 of the RLE masks (all zero for an empty mask)."""
    if len(rles) == 0:
        return np.zeros((0, 4), dtype=np.float64)
    return np.asarray(coco_mask_api().toBbox(list(rles)), dtype=np.float64).reshape(-1, 4)


def video_mask_iou(
    tracks_a: Sequence[Sequence[Mapping[str, Any] | None]],
    tracks_b: Sequence[Sequence[Mapping[str, Any] | None]],
    areas_a: np.ndarray | None = None,
    areas_b: np.ndarray | None = None,
) -> np.ndarray:
    """Spatio-temporal mask IoU of every pair of two sets of tracks over the same frames (the YouTube-VIS IoU).

    Args:
        tracks_a, tracks_b: `A` and `B` tracks, each a sequence of T per-frame RLEs (str or bytes counts; `None` for
            a frame where the track is absent, i.e. an empty mask).
        areas_a, areas_b: optional precomputed per-frame areas `(A, T)` / `(B, T)` (see `rle_areas`).

    Returns:
        `(A, B)` float64: `sum_t |a_t & b_t| / sum_t |a_t | b_t|`, 0 where the union is empty. Intersections are
        exact pixel counts (pycocotools' crowd IoU `|a & b| / |a|` times `|a|`, rounded).
    """
    num_a, num_b = len(tracks_a), len(tracks_b)
    if num_a == 0 or num_b == 0:
        return np.zeros((num_a, num_b), dtype=np.float64)
    num_frames = len(tracks_a[0])
    if any(len(track) != num_frames for track in (*tracks_a, *tracks_b)):
        raise ValueError("video_mask_iou needs tracks of one length (the same frames).")
    if areas_a is None:
        areas_a = np.stack([rle_areas(track) for track in tracks_a])
    if areas_b is None:
        areas_b = np.stack([rle_areas(track) for track in tracks_b])
    areas_a = np.asarray(areas_a, dtype=np.float64).reshape(num_a, num_frames)
    areas_b = np.asarray(areas_b, dtype=np.float64).reshape(num_b, num_frames)
    coco_mask = coco_mask_api()
    intersections = np.zeros((num_a, num_b), dtype=np.float64)
    for frame in range(num_frames):
        rows = [index for index in range(num_a) if tracks_a[index][frame] is not None and areas_a[index, frame] > 0]
        columns = [index for index in range(num_b) if tracks_b[index][frame] is not None]
        if not rows or not columns:
            continue
        # With iscrowd=1 pycocotools returns |a & b| / |a|, so one C call gives every pairwise intersection.
        intersection_over_a = np.asarray(
            coco_mask.iou(
                [tracks_a[row][frame] for row in rows],
                [tracks_b[column][frame] for column in columns],
                [1] * len(columns),
            ),
            dtype=np.float64,
        ).reshape(len(rows), len(columns))
        intersections[np.ix_(rows, columns)] += np.rint(intersection_over_a * areas_a[rows, frame, None])
    unions = areas_a.sum(1)[:, None] + areas_b.sum(1)[None, :] - intersections
    return np.divide(intersections, unions, out=np.zeros_like(intersections), where=unions > 0)


__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "coco_mask_api",
    "decode_mask_rle",
    "decode_masks_rle",
    "empty_mask_rle",
    "encode_mask_rle",
    "encode_masks_rle",
    "pairwise_box_iou",
    "rle_areas",
    "rle_boxes_xywh",
    "to_coco_rle",
    "video_mask_iou",
]
