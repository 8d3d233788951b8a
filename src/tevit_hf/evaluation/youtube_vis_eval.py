"""YouTube-VIS video instance segmentation AP, with the semantics of the official `ytvoseval.py`.

The official scorer is the youtubevos fork of the COCO API (`pycocotools.ytvos` / `pycocotools.ytvoseval`), which is
not on PyPI. This module re-implements its semantics on top of the standard `pycocotools.mask` RLE functions:

* a prediction is a *track*: one segmentation per frame of the video (`None` where the instance is absent);
* video-level IoU = sum over frames of |pred ∩ gt| / sum over frames of |pred ∪ gt|; frames where both are absent
  contribute nothing, a frame where only one is present adds its area to the union;
* the area of a track (for the small/medium/large ranges) is the mean of its non-zero per-frame areas (the `areas`
  field of the ground truth when present, the RLE areas of the predictions);
* crowd ground truths (`iscrowd=1`) are ignored regions that any number of predictions may match without counting
  as false positives; their IoU is the same video IoU as every other track (as in `ytvoseval`, unlike COCO images);
* per (video, category) the predictions are sorted by score and cut to the largest `maxDets`, then matched greedily
  at each IoU threshold exactly as COCOeval does; precision is interpolated at 101 recall points.

Area ranges default to the ones of the official YouTube-VIS scorer (small < 128², medium 128²–256², large > 256²);
`YouTubeVISEvalParams(area_ranges=AREA_RANGES_COCO)` gives COCO's 32²/96² split instead.

Metrics are in [0, 1]; a value of -1 means "no ground truth for this setting" (COCO convention).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..masks_tevit import rle_areas, to_coco_rle, video_mask_iou


logger = logging.getLogger(__name__)

# Upper bound of the "all" area range, as in the official scorer.
_MAX_AREA = 1e5**2
# The official matcher caps the threshold just below 1 so that a perfect IoU of 1.0 still matches at threshold 1.0.
_MAX_IOU_THRESHOLD = 1 - 1e-10

AREA_RANGES_YOUTUBE_VIS: dict[str, tuple[float, float]] = {
    "all": (0.0, _MAX_AREA),
    "small": (0.0, 128.0**2),
    "medium": (128.0**2, 256.0**2),
    "large": (256.0**2, _MAX_AREA),
}
AREA_RANGES_COCO: dict[str, tuple[float, float]] = {
    "all": (0.0, _MAX_AREA),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, _MAX_AREA),
}
AREA_RANGE_PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "youtube-vis": AREA_RANGES_YOUTUBE_VIS,
    "coco": AREA_RANGES_COCO,
}
RESULT_KEYS = ("video_id", "category_id", "score", "segmentations")


def _default_iou_thresholds() -> tuple[float, ...]:
    # linspace rather than arange: arange accumulates rounding error (0.5:0.05:0.95 would not hit 0.75 exactly).
    return tuple(float(value) for value in np.linspace(0.5, 0.95, 10))


def _default_recall_thresholds() -> tuple[float, ...]:
    return tuple(float(value) for value in np.linspace(0.0, 1.0, 101))


@dataclass(frozen=True)
class YouTubeVISEvalParams:
    """Evaluation settings; the defaults are those of the official YouTube-VIS scorer.

    Args:
        iou_thresholds: video-IoU thresholds (T=10: 0.50:0.05:0.95).
        recall_thresholds: recall points of the interpolated precision (R=101: 0:0.01:1).
        max_detections: per (video, category) detection caps, ascending (M=3: 1, 10, 100).
        area_ranges: name -> (min, max) mean track area in pixels; must contain "all".
    """

    iou_thresholds: tuple[float, ...] = field(default_factory=_default_iou_thresholds)
    recall_thresholds: tuple[float, ...] = field(default_factory=_default_recall_thresholds)
    max_detections: tuple[int, ...] = (1, 10, 100)
    area_ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(AREA_RANGES_YOUTUBE_VIS))

    def __post_init__(self) -> None:
        if "all" not in self.area_ranges:
            raise ValueError(f"area_ranges must contain 'all', got {list(self.area_ranges)}")
        if list(self.max_detections) != sorted(self.max_detections) or not self.max_detections:
            raise ValueError(f"max_detections must be a non-empty ascending sequence, got {self.max_detections}")

    @classmethod
    def from_area_preset(cls, preset: str) -> YouTubeVISEvalParams:
        """Default parameters with the area ranges of `preset` ("youtube-vis" or "coco")."""
        if preset not in AREA_RANGE_PRESETS:
            raise ValueError(f"unknown area range preset {preset!r}; expected one of {list(AREA_RANGE_PRESETS)}")
        return cls(area_ranges=dict(AREA_RANGE_PRESETS[preset]))


@dataclass(frozen=True)
class VideoInfo:
    """Size and length of one annotated video."""

    video_id: int
    height: int
    width: int
    length: int


@dataclass
class Track:
    """One ground-truth instance or one predicted instance, over all frames of its video.

    `rles[t]` is a compressed RLE dict (counts as bytes) or None when the instance is absent from frame t;
    `pixel_areas` (T,) holds the RLE area per frame (0 where absent); `average_area` is the mean of the non-zero
    per-frame areas used for the area ranges.
    """

    track_id: int
    video_id: int
    category_id: int
    score: float
    iscrowd: bool
    rles: list[dict | None]
    pixel_areas: np.ndarray
    average_area: float


@dataclass
class YouTubeVISGroundTruth:
    """A parsed and validated YouTube-VIS annotation file."""

    videos: dict[int, VideoInfo]
    category_names: dict[int, str]
    tracks: list[Track]

    @property
    def video_ids(self) -> list[int]:
        return sorted(self.videos)

    @property
    def category_ids(self) -> list[int]:
        return sorted(self.category_names)


def _require_keys(entry: Any, keys: Iterable[str], where: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; present keys are {sorted(entry)}")


def _to_rle(segmentation: Any, height: int, width: int, where: str) -> dict | None:
    """Convert one frame's segmentation (polygons, RLE or null) into a compressed RLE with bytes counts."""
    try:
        return to_coco_rle(segmentation, height, width)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _track_from_segmentations(
    segmentations: Any,
    video: VideoInfo,
    where: str,
    *,
    track_id: int,
    category_id: int,
    score: float,
    iscrowd: bool,
    annotated_areas: Sequence[float | None] | None = None,
) -> Track:
    if not isinstance(segmentations, (list, tuple)):
        raise ValueError(f"{where}: 'segmentations' must be a list (one entry per frame), got {type(segmentations)}")
    if len(segmentations) != video.length:
        raise ValueError(
            f"{where}: 'segmentations' has {len(segmentations)} frames, expected {video.length} "
            f"(length of video {video.video_id})"
        )
    rles = [
        _to_rle(segmentation, video.height, video.width, f"{where}.segmentations[{frame}]")
        for frame, segmentation in enumerate(segmentations)
    ]
    pixel_areas = rle_areas(rles)
    if annotated_areas is not None:
        if not isinstance(annotated_areas, (list, tuple)) or len(annotated_areas) != video.length:
            got = len(annotated_areas) if isinstance(annotated_areas, (list, tuple)) else type(annotated_areas)
            raise ValueError(f"{where}: 'areas' must have one entry per frame ({video.length}), got {got}")
        nonzero_areas = [float(area) for area in annotated_areas if area]
    else:
        nonzero_areas = [area for area in pixel_areas.tolist() if area]
    average_area = float(np.mean(nonzero_areas)) if nonzero_areas else 0.0
    return Track(track_id, video.video_id, category_id, score, iscrowd, rles, pixel_areas, average_area)


def _read_json(source: str | os.PathLike | Any) -> Any:
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{os.fspath(source)} does not exist (or is not a file).")
        with open(source, encoding="utf-8") as handle:
            try:
                return json.load(handle)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{os.fspath(source)} is not valid JSON: {error}") from error
    return source


def load_youtube_vis_ground_truth(
    annotations: str | os.PathLike | Mapping | YouTubeVISGroundTruth,
) -> YouTubeVISGroundTruth:
    """Parse and validate a YouTube-VIS/OVIS annotation file (path or already-loaded dict).

    Expected format: `videos` [{id, height, width, file_names or length}], `categories` [{id, name}],
    `annotations` [{id, video_id, category_id, segmentations (per frame: RLE, polygons or null), areas (optional,
    per frame), iscrowd (optional, default 0)}].
    """
    if isinstance(annotations, YouTubeVISGroundTruth):
        return annotations
    source_name = str(annotations) if isinstance(annotations, (str, os.PathLike)) else "annotations"
    dataset = _read_json(annotations)
    _require_keys(dataset, ("videos", "annotations", "categories"), source_name)

    videos: dict[int, VideoInfo] = {}
    for index, video in enumerate(dataset["videos"]):
        where = f"{source_name}: videos[{index}]"
        _require_keys(video, ("id", "height", "width"), where)
        if "file_names" in video:
            length = len(video["file_names"])
        elif "length" in video:
            length = int(video["length"])
        else:
            raise ValueError(f"{where}: needs 'file_names' or 'length' to know the number of frames")
        video_id = int(video["id"])
        if video_id in videos:
            raise ValueError(f"{where}: duplicate video id {video_id}")
        videos[video_id] = VideoInfo(video_id, int(video["height"]), int(video["width"]), length)

    category_names: dict[int, str] = {}
    for index, category in enumerate(dataset["categories"]):
        _require_keys(category, ("id",), f"{source_name}: categories[{index}]")
        category_names[int(category["id"])] = str(category.get("name", category["id"]))

    tracks = []
    for index, annotation in enumerate(dataset["annotations"]):
        where = f"{source_name}: annotations[{index}]"
        _require_keys(annotation, ("video_id", "category_id", "segmentations"), where)
        video_id, category_id = int(annotation["video_id"]), int(annotation["category_id"])
        if video_id not in videos:
            raise ValueError(f"{where}: unknown video_id {video_id} (not in 'videos')")
        if category_id not in category_names:
            raise ValueError(f"{where}: unknown category_id {category_id}; known ids {sorted(category_names)}")
        tracks.append(
            _track_from_segmentations(
                annotation["segmentations"],
                videos[video_id],
                f"{where} (video_id={video_id})",
                track_id=int(annotation.get("id", index + 1)),
                category_id=category_id,
                score=1.0,
                iscrowd=bool(annotation.get("iscrowd", 0)),
                annotated_areas=annotation.get("areas"),
            )
        )
    return YouTubeVISGroundTruth(videos, category_names, tracks)


def parse_youtube_vis_results(
    results: str | os.PathLike | Sequence[Mapping], ground_truth: YouTubeVISGroundTruth
) -> list[Track]:
    """Validate and parse results [{video_id, category_id, score, segmentations}] against the ground truth."""
    source_name = str(results) if isinstance(results, (str, os.PathLike)) else "results"
    entries = _read_json(results)
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"{source_name}: expected a list of result entries, got {type(entries).__name__}")
    tracks = []
    for index, entry in enumerate(entries):
        where = f"{source_name}[{index}]"
        _require_keys(entry, RESULT_KEYS, where)
        try:
            video_id, category_id, score = int(entry["video_id"]), int(entry["category_id"]), float(entry["score"])
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{where}: 'video_id' and 'category_id' must be integers and 'score' a number "
                f"({entry['video_id']!r}, {entry['category_id']!r}, {entry['score']!r})"
            ) from error
        if video_id not in ground_truth.videos:
            raise ValueError(f"{where}: unknown video_id {video_id} (not in the annotation file's 'videos')")
        if category_id not in ground_truth.category_names:
            raise ValueError(
                f"{where}: unknown category_id {category_id}; the annotation file has {ground_truth.category_ids}"
            )
        if not math.isfinite(score):
            raise ValueError(f"{where}: 'score' must be a finite number, got {entry['score']!r}")
        tracks.append(
            _track_from_segmentations(
                entry["segmentations"],
                ground_truth.videos[video_id],
                f"{where} (video_id={video_id})",
                track_id=index + 1,
                category_id=category_id,
                score=score,
                iscrowd=False,
            )
        )
    return tracks


def compute_video_iou(predictions: Sequence[Track], ground_truths: Sequence[Track]) -> np.ndarray:
    """Video-level IoU between every prediction and every ground truth track of ONE video.

    Returns:
        (D, G) float64: sum_t |p_t ∩ g_t| / sum_t |p_t ∪ g_t|, 0 where the union is empty.
    """
    if not predictions or not ground_truths:
        return np.zeros((len(predictions), len(ground_truths)), dtype=np.float64)
    return video_mask_iou(
        [track.rles for track in predictions],
        [track.rles for track in ground_truths],
        np.stack([track.pixel_areas for track in predictions]),
        np.stack([track.pixel_areas for track in ground_truths]),
    )


@dataclass
class _MatchRecord:
    """Matching of one (video, category, area range): detections sorted by descending score."""

    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    num_regular_ground_truths: int


def greedy_match(
    ious: np.ndarray, ground_truth_ignored: np.ndarray, ground_truth_crowd: np.ndarray, iou_thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy matching, vectorised over the IoU thresholds.

    Args:
        ious: (D, G) detections sorted by descending score; ground truths sorted with ignored ones LAST.
        ground_truth_ignored: (G,) bool. ground_truth_crowd: (G,) bool (crowds may be matched repeatedly).
        iou_thresholds: (T,).

    Returns:
        matched (T, D) bool and matched_to_ignored (T, D) bool. Each detection takes, among the still available
        ground truths with IoU >= threshold, the best regular one (ties: the later one), else the best ignored one.
    """
    num_detections, num_ground_truths = ious.shape
    num_thresholds = len(iou_thresholds)
    matched = np.zeros((num_thresholds, num_detections), dtype=bool)
    matched_to_ignored = np.zeros((num_thresholds, num_detections), dtype=bool)
    if num_detections == 0 or num_ground_truths == 0:
        return matched, matched_to_ignored
    thresholds = np.minimum(np.asarray(iou_thresholds, dtype=np.float64), _MAX_IOU_THRESHOLD)[:, None]
    num_regular = int(np.count_nonzero(~ground_truth_ignored))
    taken = np.zeros((num_thresholds, num_ground_truths), dtype=bool)
    threshold_rows = np.arange(num_thresholds)

    def last_best(candidate_scores: np.ndarray) -> np.ndarray:
        # Index of the LAST maximum per row (the official loop replaces its match on ties).
        width = candidate_scores.shape[1]
        return width - 1 - np.argmax(candidate_scores[:, ::-1], axis=1)

    for detection in range(num_detections):
        detection_ious = ious[detection][None, :]
        candidates = (~taken | ground_truth_crowd[None, :]) & (detection_ious >= thresholds)  # (T, G)
        candidate_scores = np.where(candidates, detection_ious, -np.inf)
        choice = np.full(num_thresholds, -1)
        if num_regular < num_ground_truths:
            has_ignored = candidates[:, num_regular:].any(1)
            choice = np.where(has_ignored, num_regular + last_best(candidate_scores[:, num_regular:]), choice)
        if num_regular > 0:
            has_regular = candidates[:, :num_regular].any(1)
            choice = np.where(has_regular, last_best(candidate_scores[:, :num_regular]), choice)
        found = choice >= 0
        matched[:, detection] = found
        matched_to_ignored[:, detection] = found & ground_truth_ignored[np.maximum(choice, 0)]
        taken[threshold_rows[found], choice[found]] = True
    return matched, matched_to_ignored


def _group_tracks(tracks: Iterable[Track]) -> dict[tuple[int, int], list[Track]]:
    groups: dict[tuple[int, int], list[Track]] = defaultdict(list)
    for track in tracks:
        groups[track.video_id, track.category_id].append(track)
    return groups


def compute_precision_recall(
    ground_truth: YouTubeVISGroundTruth,
    predictions: Sequence[Track],
    params: YouTubeVISEvalParams,
    video_ids: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run matching and accumulation.

    Returns:
        precision (T, R, K, A, M) and recall (T, K, A, M), -1 where a setting has no regular ground truth; K follows
        `ground_truth.category_ids`, A the order of `params.area_ranges`, M `params.max_detections`.
    """
    iou_thresholds = np.asarray(params.iou_thresholds, dtype=np.float64)
    recall_thresholds = np.asarray(params.recall_thresholds, dtype=np.float64)
    area_ranges = list(params.area_ranges.values())
    category_ids = ground_truth.category_ids
    evaluated_videos = sorted(set(ground_truth.video_ids if video_ids is None else (int(v) for v in video_ids)))
    unknown = sorted(set(evaluated_videos) - set(ground_truth.videos))
    if unknown:
        raise ValueError(f"video_ids {unknown[:10]} are not in the annotation file")
    evaluated_set = set(evaluated_videos)
    ground_truth_groups = _group_tracks(track for track in ground_truth.tracks if track.video_id in evaluated_set)
    prediction_groups = _group_tracks(track for track in predictions if track.video_id in evaluated_set)
    max_detections = params.max_detections[-1]
    # Sort detections by score (stable, as the official mergesort) and keep the top maxDets per (video, category).
    for key, group in prediction_groups.items():
        order = np.argsort([-track.score for track in group], kind="mergesort")[:max_detections]
        prediction_groups[key] = [group[index] for index in order]

    # records[category index][area index] = per-video match records, in ascending video id order.
    records: list[list[list[_MatchRecord]]] = [[[] for _ in area_ranges] for _ in category_ids]
    for video_id in tqdm(evaluated_videos, desc="YouTube-VIS matching", leave=False, disable=None):
        video_ground_truths = [track for category in category_ids for track in ground_truth_groups[video_id, category]]
        video_predictions = [track for category in category_ids for track in prediction_groups[video_id, category]]
        video_ious = compute_video_iou(video_predictions, video_ground_truths)
        prediction_offset = ground_truth_offset = 0
        for category_index, category in enumerate(category_ids):
            ground_truths = ground_truth_groups[video_id, category]
            detections = prediction_groups[video_id, category]
            num_ground_truths, num_detections = len(ground_truths), len(detections)
            ious = video_ious[
                prediction_offset : prediction_offset + num_detections,
                ground_truth_offset : ground_truth_offset + num_ground_truths,
            ]
            prediction_offset += num_detections
            ground_truth_offset += num_ground_truths
            if num_ground_truths == 0 and num_detections == 0:
                continue
            _match_video_category(
                ious, ground_truths, detections, area_ranges, iou_thresholds, records[category_index]
            )
    return _accumulate(records, params, iou_thresholds, recall_thresholds, len(category_ids))


def _match_video_category(
    ious: np.ndarray,
    ground_truths: Sequence[Track],
    detections: Sequence[Track],
    area_ranges: Sequence[tuple[float, float]],
    iou_thresholds: np.ndarray,
    records_per_area: list[list[_MatchRecord]],
) -> None:
    crowd = np.array([track.iscrowd for track in ground_truths], dtype=bool)
    ground_truth_areas = np.array([track.average_area for track in ground_truths], dtype=np.float64)
    detection_areas = np.array([track.average_area for track in detections], dtype=np.float64)
    scores = np.array([track.score for track in detections], dtype=np.float64)
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    for area_index, (area_min, area_max) in enumerate(area_ranges):
        ignored = crowd | (ground_truth_areas < area_min) | (ground_truth_areas > area_max)
        # The matching only depends on the ignore pattern, which is often shared between area ranges.
        key = ignored.tobytes()
        if key not in cache:
            order = np.argsort(ignored, kind="mergesort")  # ignored ground truths last, as the official sort
            cache[key] = greedy_match(ious[:, order], ignored[order], crowd[order], iou_thresholds)
        matched, matched_to_ignored = cache[key]
        outside = (detection_areas < area_min) | (detection_areas > area_max)
        # Unmatched detections outside the area range are not false positives of this range.
        detection_ignored = matched_to_ignored | (~matched & outside[None, :])
        records_per_area[area_index].append(
            _MatchRecord(scores, matched, detection_ignored, int(np.count_nonzero(~ignored)))
        )


def _accumulate(
    records: list[list[list[_MatchRecord]]],
    params: YouTubeVISEvalParams,
    iou_thresholds: np.ndarray,
    recall_thresholds: np.ndarray,
    num_categories: int,
) -> tuple[np.ndarray, np.ndarray]:
    num_thresholds, num_recalls = len(iou_thresholds), len(recall_thresholds)
    num_areas, num_max_detections = len(params.area_ranges), len(params.max_detections)
    precision = -np.ones((num_thresholds, num_recalls, num_categories, num_areas, num_max_detections))
    recall = -np.ones((num_thresholds, num_categories, num_areas, num_max_detections))
    for category_index in range(num_categories):
        for area_index in range(num_areas):
            video_records = records[category_index][area_index]
            if not video_records:
                continue
            num_regular = sum(record.num_regular_ground_truths for record in video_records)
            if num_regular == 0:
                continue
            for max_index, max_detections in enumerate(params.max_detections):
                scores = np.concatenate([record.scores[:max_detections] for record in video_records])
                order = np.argsort(-scores, kind="mergesort")
                matched = np.concatenate([r.matched[:, :max_detections] for r in video_records], axis=1)[:, order]
                ignored = np.concatenate([r.ignored[:, :max_detections] for r in video_records], axis=1)[:, order]
                true_positives = np.cumsum(matched & ~ignored, axis=1, dtype=np.float64)
                false_positives = np.cumsum(~matched & ~ignored, axis=1, dtype=np.float64)
                num_detections = len(scores)
                if num_detections == 0:
                    recall[:, category_index, area_index, max_index] = 0
                    precision[:, :, category_index, area_index, max_index] = 0
                    continue
                recalls = true_positives / num_regular
                precisions = true_positives / (true_positives + false_positives + np.spacing(1))
                recall[:, category_index, area_index, max_index] = recalls[:, -1]
                # Interpolated precision: the max precision at any higher recall (right-to-left running max).
                precisions = np.maximum.accumulate(precisions[:, ::-1], axis=1)[:, ::-1]
                for threshold_index in range(num_thresholds):
                    positions = np.searchsorted(recalls[threshold_index], recall_thresholds, side="left")
                    reachable = positions < num_detections
                    values = np.zeros(num_recalls)
                    values[reachable] = precisions[threshold_index, positions[reachable]]
                    precision[threshold_index, :, category_index, area_index, max_index] = values
    return precision, recall


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize_precision_recall(
    precision: np.ndarray, recall: np.ndarray, params: YouTubeVISEvalParams, category_names: Sequence[str]
) -> dict[str, Any]:
    """Reduce the precision/recall arrays to the standard YouTube-VIS metrics (floats in [0, 1], -1 = no GT).

    Keys: AP, AP50, AP75, AP_<area> for every non-"all" area range, AR<m> for every max-detections value,
    AR_<area>, and `per_category_AP` {category name: AP over thresholds at area "all" and the largest maxDets}.
    """
    area_names = list(params.area_ranges)
    all_index = area_names.index("all")
    last = len(params.max_detections) - 1
    thresholds = np.asarray(params.iou_thresholds)

    def at_threshold(array: np.ndarray, threshold: float) -> np.ndarray:
        matches = np.flatnonzero(np.isclose(thresholds, threshold))
        return array[matches] if matches.size else np.full((1,), -1.0)

    metrics: dict[str, Any] = {"AP": _mean_valid(precision[:, :, :, all_index, last])}
    metrics["AP50"] = _mean_valid(at_threshold(precision[:, :, :, all_index, last], 0.5))
    metrics["AP75"] = _mean_valid(at_threshold(precision[:, :, :, all_index, last], 0.75))
    for area_index, name in enumerate(area_names):
        if name != "all":
            metrics[f"AP_{name}"] = _mean_valid(precision[:, :, :, area_index, last])
    for max_index, max_detections in enumerate(params.max_detections):
        metrics[f"AR{max_detections}"] = _mean_valid(recall[:, :, all_index, max_index])
    for area_index, name in enumerate(area_names):
        if name != "all":
            metrics[f"AR_{name}"] = _mean_valid(recall[:, :, area_index, last])
    metrics["per_category_AP"] = {
        name: _mean_valid(precision[:, :, category_index, all_index, last])
        for category_index, name in enumerate(_unique_names(category_names))
    }
    return metrics


def _unique_names(names: Sequence[str]) -> list[str]:
    counts: dict[str, int] = defaultdict(int)
    for name in names:
        counts[name] += 1
    seen: dict[str, int] = defaultdict(int)
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if counts[name] == 1 else f"{name} ({seen[name]})")
    return unique


def evaluate_youtube_vis(
    annotations: str | os.PathLike | Mapping | YouTubeVISGroundTruth,
    results: str | os.PathLike | Sequence[Mapping],
    *,
    video_ids: Sequence[int] | None = None,
    params: YouTubeVISEvalParams | None = None,
) -> dict[str, Any]:
    """Score YouTube-VIS results against an annotation file.

    Args:
        annotations: YouTube-VIS annotation json (path or loaded dict) or a parsed `YouTubeVISGroundTruth`.
        results: list (or json path) of {video_id, category_id, score, segmentations: per-frame RLE or null}.
        video_ids: evaluate only these videos (default: every video of the annotation file); results of other
            videos are ignored, ground truths of listed videos without results count as misses.
        params: evaluation settings (default: the official YouTube-VIS ones).

    Returns:
        dict of metrics, see `summarize_precision_recall`.
    """
    params = params or YouTubeVISEvalParams()
    ground_truth = load_youtube_vis_ground_truth(annotations)
    predictions = parse_youtube_vis_results(results, ground_truth)
    if not predictions:
        where = f" in {os.fspath(results)}" if isinstance(results, (str, os.PathLike)) else ""
        logger.warning("No results%s: every ground-truth instance counts as missed, so AP is 0.", where)
    precision, recall = compute_precision_recall(ground_truth, predictions, params, video_ids)
    names = [ground_truth.category_names[category] for category in ground_truth.category_ids]
    return summarize_precision_recall(precision, recall, params, names)


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """Render metrics (as returned by `evaluate_youtube_vis`) as a plain-text table in percent."""

    def cell(value: float) -> str:
        return "   n/a" if value < 0 else f"{100 * value:6.2f}"

    summary = [(name, value) for name, value in metrics.items() if isinstance(value, (int, float))]
    lines = ["metric            value", "-" * 24]
    lines += [f"{name:<16} {cell(value)}" for name, value in summary]
    per_category = metrics.get("per_category_AP", {})
    if per_category:
        width = max(16, *(len(name) for name in per_category))
        lines += ["", f"{'category':<{width}} {'AP':>6}", "-" * (width + 7)]
        lines += [f"{name:<{width}} {cell(value)}" for name, value in per_category.items()]
    return "\n".join(lines)
