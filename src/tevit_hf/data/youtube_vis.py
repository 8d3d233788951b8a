"""Load YouTube-VIS 2019/2021/2022, OVIS and custom annotation files of the same format into `datasets`.

One row per video. Frames stay on disk: a row keeps its frames folder (`frames_dir`) and the frame file names
relative to it, and pixels are read only when a clip is built (`load_video_frames`). Segmentations are kept per
frame as the json text of the original entry (compressed RLE, uncompressed RLE or polygons) and decoded on demand
with pycocotools (`decode_segmentation`), so loading a file costs no mask decoding.

Category ids are mapped to contiguous labels 0..C-1 in sorted-id order, as the official loader's `cat2label`; the
mapping is returned in a `VisDatasetInfo` whose `id2label` a `TeViTConfig` takes.

Expected json (https://youtube-vos.org/dataset/vis/, OVIS uses the same keys):

    {"videos": [{"id", "height", "width", "file_names", "length"?}],
     "annotations"?: [{"id", "video_id", "category_id", "segmentations", "bboxes", "areas"?, "iscrowd"?}],
     "categories": [{"id", "name", "supercategory"?}]}

Per-frame entries of `segmentations`, `bboxes` and `areas` are `null` where the instance is absent. Test-split
files have no `annotations`; their videos load with empty `instances`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

from ..errors import TeViTError
from ..masks_tevit import decode_mask_rle, to_coco_rle


logger = logging.getLogger(__name__)

DEFAULT_FRAMES_DIRNAME = "JPEGImages"

INSTANCE_FEATURES = {
    "id": datasets.Value("int64"),
    "category_id": datasets.Value("int64"),
    "label": datasets.Value("int64"),
    "iscrowd": datasets.Value("bool"),
    # Per frame: json text of the segmentation entry, or None where the instance is absent.
    "segmentations": datasets.List(datasets.Value("string")),
    # Per frame: [x, y, w, h] in pixels, or None.
    "bboxes": datasets.List(datasets.List(datasets.Value("float64"), length=4)),
    # Per frame: mask area in pixels, or None.
    "areas": datasets.List(datasets.Value("float64")),
}

VIS_VIDEO_FEATURES = datasets.Features(
    {
        "video_id": datasets.Value("int64"),
        "frames_dir": datasets.Value("string"),
        "file_names": datasets.List(datasets.Value("string")),
        "height": datasets.Value("int32"),
        "width": datasets.Value("int32"),
        "length": datasets.Value("int32"),
        "instances": datasets.List(INSTANCE_FEATURES),
    }
)

_REQUIRED_VIDEO_KEYS = ("id", "file_names", "height", "width")
_REQUIRED_ANNOTATION_KEYS = ("id", "video_id", "category_id", "segmentations", "bboxes")
_REQUIRED_CATEGORY_KEYS = ("id", "name")


class VisDataError(TeViTError, ValueError):
    """Malformed VIS annotations or frames; the message names the file, video, annotation and field."""


@dataclass(frozen=True)
class VisDatasetInfo:
    """Label mapping and locations of a loaded VIS dataset.

    id2label: contiguous label (0..C-1) -> category name; pass it to `TeViTConfig(id2label=...)`.
    label2category_id / category_id2label: contiguous label <-> the dataset's category id (for results json).
    """

    id2label: dict[int, str]
    label2category_id: dict[int, int]
    category_id2label: dict[int, int]
    annotation_file: str
    frames_dir: str
    has_annotations: bool

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {name: label for label, name in self.id2label.items()}


def load_youtube_vis(
    annotation_file: str | os.PathLike,
    frames_dir: str | os.PathLike | None = None,
    check_frames: bool = False,
) -> tuple[datasets.Dataset, VisDatasetInfo]:
    """Load a YouTube-VIS-format annotation file as a `datasets.Dataset` of videos (features `VIS_VIDEO_FEATURES`).

    Args:
        annotation_file: the json (YouTube-VIS 2019/2021/2022, OVIS or custom; annotations optional).
        frames_dir: folder the videos' `file_names` are relative to; default `<json folder>/JPEGImages`.
        check_frames: also check now that every frame file exists (otherwise a missing frame fails when read).

    Returns:
        (dataset, info): one row per video in file order; `info` holds the label mapping.

    Raises:
        VisDataError: missing keys, unknown video or category ids, per-frame lists of the wrong length,
            segmentations whose size disagrees with the video, missing frames (with `check_frames`).
    """
    annotation_file = Path(annotation_file)
    frames_dir = Path(frames_dir) if frames_dir is not None else annotation_file.parent / DEFAULT_FRAMES_DIRNAME
    try:
        with open(annotation_file, encoding="utf-8") as handle:
            raw = json.load(handle)
    except json.JSONDecodeError as error:
        raise VisDataError(f"{annotation_file}: not valid json ({error})") from error
    source = str(annotation_file)
    if not isinstance(raw, dict):
        raise VisDataError(f"{source}: expected a json object at the top level, got {type(raw).__name__}")
    for key in ("videos", "categories"):
        if key not in raw:
            raise VisDataError(f"{source}: missing top-level key {key!r}")

    category_names = _parse_categories(raw["categories"], source)
    sorted_category_ids = sorted(category_names)
    info = VisDatasetInfo(
        id2label={label: category_names[category_id] for label, category_id in enumerate(sorted_category_ids)},
        label2category_id=dict(enumerate(sorted_category_ids)),
        category_id2label={category_id: label for label, category_id in enumerate(sorted_category_ids)},
        annotation_file=source,
        frames_dir=str(frames_dir.resolve()),
        has_annotations="annotations" in raw,
    )

    rows: dict[int, dict[str, Any]] = {}
    for index, video in enumerate(raw["videos"]):
        row = _parse_video(video, index, source, info.frames_dir)
        if row["video_id"] in rows:
            raise VisDataError(f"{source}: duplicate video id {row['video_id']} in 'videos'")
        rows[row["video_id"]] = row
    for annotation in raw.get("annotations") or []:
        instance, video_id = _parse_annotation(annotation, rows, info.category_id2label, source)
        rows[video_id]["instances"].append(instance)

    if check_frames:
        for row in rows.values():
            for file_name in row["file_names"]:
                if not os.path.isfile(os.path.join(row["frames_dir"], file_name)):
                    raise VisDataError(
                        f"{source}: video {row['video_id']}: frame file {file_name!r} (field 'file_names') not found "
                        f"under {row['frames_dir']}"
                    )
    dataset = datasets.Dataset.from_list(list(rows.values()), features=VIS_VIDEO_FEATURES)
    logger.info(
        "loaded %s: %d videos, %d instances, %d categories",
        source,
        len(dataset),
        sum(len(row["instances"]) for row in rows.values()),
        info.num_labels,
    )
    return dataset, info


def _parse_categories(categories: Any, source: str) -> dict[int, str]:
    if not isinstance(categories, list) or not categories:
        raise VisDataError(f"{source}: 'categories' must be a non-empty list")
    names: dict[int, str] = {}
    for index, category in enumerate(categories):
        for key in _REQUIRED_CATEGORY_KEYS:
            if key not in category:
                raise VisDataError(f"{source}: category #{index} is missing field {key!r}")
        category_id = int(category["id"])
        if category_id in names:
            raise VisDataError(f"{source}: duplicate category id {category_id} in 'categories'")
        names[category_id] = str(category["name"])
    return names


def _parse_video(video: dict, index: int, source: str, frames_dir: str) -> dict[str, Any]:
    where = f"{source}: video {video.get('id', f'#{index}')}"
    for key in _REQUIRED_VIDEO_KEYS:
        if key not in video:
            raise VisDataError(f"{where} is missing field {key!r}")
    file_names = video["file_names"]
    if not isinstance(file_names, list) or not file_names or not all(isinstance(name, str) for name in file_names):
        raise VisDataError(f"{where}: field 'file_names' must be a non-empty list of strings")
    length = int(video.get("length", len(file_names)))
    if length != len(file_names):
        raise VisDataError(f"{where}: field 'length' is {length} but 'file_names' has {len(file_names)} entries")
    height, width = int(video["height"]), int(video["width"])
    if height <= 0 or width <= 0:
        raise VisDataError(f"{where}: fields 'height'/'width' must be positive, got {height}x{width}")
    return {
        "video_id": int(video["id"]),
        "frames_dir": frames_dir,
        "file_names": file_names,
        "height": height,
        "width": width,
        "length": length,
        "instances": [],
    }


def _parse_annotation(
    annotation: dict, rows: dict[int, dict], category_id2label: dict[int, int], source: str
) -> tuple[dict[str, Any], int]:
    annotation_id = annotation.get("id", "?")
    video_id = annotation.get("video_id")
    where = f"{source}: video {video_id}, annotation {annotation_id}"
    for key in _REQUIRED_ANNOTATION_KEYS:
        if key not in annotation:
            raise VisDataError(f"{where} is missing field {key!r}")
    video_id = int(video_id)
    if video_id not in rows:
        raise VisDataError(f"{where}: field 'video_id' refers to no video in 'videos'")
    category_id = int(annotation["category_id"])
    if category_id not in category_id2label:
        raise VisDataError(
            f"{where}: field 'category_id' is {category_id}, not one of the categories {sorted(category_id2label)}"
        )
    row = rows[video_id]
    num_frames, height, width = row["length"], row["height"], row["width"]
    per_frame: dict[str, list] = {}
    for key in ("segmentations", "bboxes", "areas"):
        values = annotation.get(key)
        if values is None and key == "areas":
            values = [None] * num_frames
        if not isinstance(values, list) or len(values) != num_frames:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise VisDataError(f"{where}: field {key!r} must have one entry per frame ({num_frames}), got {got}")
        per_frame[key] = values

    segmentations = []
    for frame_index, segmentation in enumerate(per_frame["segmentations"]):
        if segmentation is None:
            segmentations.append(None)
            continue
        size = segmentation.get("size") if isinstance(segmentation, dict) else None
        if isinstance(segmentation, dict) and (size is None or "counts" not in segmentation):
            raise VisDataError(f"{where}: field 'segmentations' frame {frame_index}: an RLE needs 'size' and 'counts'")
        if size is not None and [int(size[0]), int(size[1])] != [height, width]:
            raise VisDataError(
                f"{where}: field 'segmentations' frame {frame_index} has size {list(size)} but the video is "
                f"{[height, width]} (height, width)"
            )
        segmentations.append(json.dumps(segmentation))
    bboxes = []
    for frame_index, box in enumerate(per_frame["bboxes"]):
        if box is not None and (not isinstance(box, list | tuple) or len(box) != 4):
            raise VisDataError(f"{where}: field 'bboxes' frame {frame_index} must be [x, y, w, h] or null, got {box}")
        bboxes.append(None if box is None else [float(value) for value in box])
    instance = {
        "id": int(annotation_id),
        "category_id": category_id,
        "label": category_id2label[category_id],
        "iscrowd": bool(annotation.get("iscrowd", 0)),
        "segmentations": segmentations,
        "bboxes": bboxes,
        "areas": [None if area is None else float(area) for area in per_frame["areas"]],
    }
    return instance, video_id


def decode_segmentation(
    segmentation: str | dict | list, height: int, width: int, where: str = "segmentation"
) -> np.ndarray:
    """Decode one frame's segmentation entry to a `(height, width)` bool mask with pycocotools.

    Accepts the json text stored in the dataset or the parsed entry: compressed RLE (`counts` str), uncompressed
    RLE (`counts` list, as in the YouTube-VIS 2019 train file) or a list of polygons. `where` names the video,
    annotation and frame in errors.
    """
    if isinstance(segmentation, str):
        segmentation = json.loads(segmentation)
    if isinstance(segmentation, list):  # polygons
        mask = decode_mask_rle(to_coco_rle(segmentation, height, width))
    elif isinstance(segmentation, dict) and "size" in segmentation and "counts" in segmentation:
        mask = decode_mask_rle(segmentation)
    else:
        raise VisDataError(f"{where}: unsupported segmentation entry {str(segmentation)[:80]}")
    if mask.shape != (height, width):
        raise VisDataError(f"{where}: mask size {list(mask.shape)} disagrees with the video {[height, width]}")
    return mask


def load_video_frames(video: dict, frame_indices: Sequence[int]) -> np.ndarray:
    """Read frames `frame_indices` of a dataset row as `(T, height, width, 3)` uint8 RGB.

    Raises:
        FileNotFoundError: a frame file is missing (the message names the video and file).
        VisDataError: a frame's size disagrees with the video's `height`/`width`.
    """
    height, width = video["height"], video["width"]
    frames = np.empty((len(frame_indices), height, width, 3), dtype=np.uint8)
    for position, frame_index in enumerate(frame_indices):
        file_name = video["file_names"][frame_index]
        path = os.path.join(video["frames_dir"], file_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"video {video['video_id']}: frame {frame_index} file {file_name!r} (field 'file_names') not found "
                f"under {video['frames_dir']}"
            )
        with Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
        if frame.shape[:2] != (height, width):
            raise VisDataError(
                f"video {video['video_id']}: frame {file_name!r} is {list(frame.shape[:2])} (height, width) but "
                f"the video's fields 'height'/'width' say {[height, width]}"
            )
        frames[position] = frame
    return frames


__all__ = [
    "INSTANCE_FEATURES",
    "VIS_VIDEO_FEATURES",
    "VisDataError",
    "VisDatasetInfo",
    "decode_segmentation",
    "load_video_frames",
    "load_youtube_vis",
]
