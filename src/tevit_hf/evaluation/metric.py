"""`evaluate.Metric` wrapper of the YouTube-VIS AP (`youtube_vis_eval`).

Design of the inputs (one row = one evaluated video):

* `predictions`: the list of YouTube-VIS result entries of that video, each
  `{"video_id", "category_id", "score", "segmentations": [per-frame RLE {"size": [H, W], "counts": str} or None]}`
  (bytes counts and uncompressed RLEs are converted to compressed string RLEs when added);
* `references`: that video's id. It tells the metric which videos were evaluated, so a video whose predictions
  list is empty still counts its ground truths as misses, and a subset of the dataset (a shard, `--max-videos`)
  is scored against the ground truth of that subset only.

The ground truth is the YouTube-VIS annotation json (path or loaded dict), given at construction
(`YouTubeVISAP(annotations=...)`, `evaluate.load(path, annotations=...)`) or at `compute(annotations=...)`.

Distributed evaluation uses evaluate's mechanism: every process builds the metric with the same
`num_process`, its own `process_id` and a shared `experiment_id` (and `cache_dir` on a shared filesystem), adds
its own videos, and calls `compute()`; process 0 gathers all rows and returns the metrics, the others get None.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

from ..masks_tevit import to_coco_rle
from .youtube_vis_eval import (
    RESULT_KEYS,
    YouTubeVISEvalParams,
    compute_precision_recall,
    load_youtube_vis_ground_truth,
    parse_youtube_vis_results,
    summarize_precision_recall,
)


_DESCRIPTION = """\
YouTube-VIS video instance segmentation AP with the semantics of the official `ytvoseval` scorer: video-level mask
IoU (intersections and unions summed over frames), IoU thresholds 0.50:0.05:0.95, 101-point interpolated precision,
max detections 1/10/100 per video and category, area ranges by the mean visible area, crowd regions ignored.
"""

_CITATION = """\
@inproceedings{yang2019video,
  title={Video Instance Segmentation},
  author={Yang, Linjie and Fan, Yuchen and Xu, Ning},
  booktitle={ICCV},
  year={2019}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one list per video of result entries {"video_id": int, "category_id": int, "score": float,
        "segmentations": list with one compressed RLE {"size": [H, W], "counts": str} or None per frame}.
    references: the id of each video (int), in the same order as `predictions`.
    annotations (compute only, optional): YouTube-VIS annotation json path or dict, if not given at construction.
    area_ranges (compute only, optional): "youtube-vis" (default, official 128²/256²) or "coco" (32²/96²).
Returns:
    AP, AP50, AP75, AP_small, AP_medium, AP_large, AR1, AR10, AR100, AR_small, AR_medium, AR_large (floats in
    [0, 1], -1 when a setting has no ground truth) and per_category_AP {category name: AP}.
Examples:
    >>> metric = YouTubeVISAP(annotations="valid.json")
    >>> metric.add_batch(predictions=[video_1_results, video_2_results], references=[1, 2])
    >>> metric.compute()["AP"]
"""

_SEGMENTATION_FEATURE = {"size": [datasets.Value("int64")], "counts": datasets.Value("string")}
_RESULT_ENTRY_FEATURE = {
    "video_id": datasets.Value("int64"),
    "category_id": datasets.Value("int64"),
    "score": datasets.Value("float64"),
    # A Python list in a `datasets` feature is a list of structs; its items may be None (instance absent).
    "segmentations": [_SEGMENTATION_FEATURE],
}
FEATURES = datasets.Features({"predictions": [_RESULT_ENTRY_FEATURE], "references": datasets.Value("int64")})


def _normalize_segmentation(segmentation: Any, where: str) -> dict | None:
    """Turn a frame's RLE into the stored form: compressed counts as str, size as two ints."""
    if segmentation is None:
        return None
    if not isinstance(segmentation, Mapping) or "counts" not in segmentation or "size" not in segmentation:
        raise ValueError(f"{where}: expected an RLE dict with 'size' and 'counts' or None, got {segmentation!r:.80}")
    height, width = (int(value) for value in segmentation["size"])
    try:
        rle = to_coco_rle(segmentation, height, width)  # the one RLE reader: validates, compresses
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _normalize_video_predictions(entries: Sequence[Mapping], video_id: int, where: str) -> list[dict]:
    normalized = []
    for index, entry in enumerate(entries):
        entry_where = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{entry_where}: expected a result dict, got {type(entry).__name__}")
        missing = [key for key in RESULT_KEYS if key not in entry]
        if missing:
            raise ValueError(f"{entry_where}: missing key(s) {missing}")
        if int(entry["video_id"]) != video_id:
            raise ValueError(f"{entry_where}: video_id {int(entry['video_id'])} differs from its reference {video_id}")
        normalized.append(
            {
                "video_id": video_id,
                "category_id": int(entry["category_id"]),
                "score": float(entry["score"]),
                "segmentations": [
                    _normalize_segmentation(segmentation, f"{entry_where}.segmentations[{frame}]")
                    for frame, segmentation in enumerate(entry["segmentations"])
                ],
            }
        )
    return normalized


def group_results_by_video(
    results: Sequence[Mapping], video_ids: Sequence[int]
) -> tuple[list[list[Mapping]], list[int]]:
    """Split a flat results list into the metric's rows: (predictions per video, video ids).

    Every id of `video_ids` gets a row (possibly with no predictions); results of other videos raise.
    """
    grouped: dict[int, list[Mapping]] = defaultdict(list)
    wanted = [int(video_id) for video_id in video_ids]
    wanted_set = set(wanted)
    for index, entry in enumerate(results):
        video_id = int(entry["video_id"])
        if video_id not in wanted_set:
            raise ValueError(f"results[{index}]: video_id {video_id} is not among the evaluated video ids")
        grouped[video_id].append(entry)
    return [grouped[video_id] for video_id in wanted], wanted


class YouTubeVISAP(evaluate.Metric):
    """YouTube-VIS AP as an `evaluate.Metric` (see the module docstring for the input design).

    Args:
        annotations: YouTube-VIS annotation json path or dict (may instead be passed to `compute`).
        area_ranges: "youtube-vis" (official) or "coco" area range preset.
        **kwargs: `evaluate.EvaluationModule` arguments (num_process, process_id, experiment_id, cache_dir, ...).
    """

    def __init__(
        self, annotations: str | os.PathLike | Mapping | None = None, area_ranges: str = "youtube-vis", **kwargs
    ):
        super().__init__(**kwargs)
        self.annotations = annotations
        self.area_ranges = area_ranges

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=FEATURES,
            reference_urls=["https://youtube-vos.org/dataset/vis/", "https://github.com/youtubevos/cocoapi"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs) -> None:
        """Add rows: `predictions` (one list of result entries per video) and `references` (the video ids)."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(
                    f"got {len(predictions)} prediction lists for {len(references)} references (one list per video)"
                )
            references = [int(video_id) for video_id in references]
            predictions = [
                _normalize_video_predictions(entries, video_id, f"predictions[{row}]")
                for row, (entries, video_id) in enumerate(zip(predictions, references))
            ]
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs) -> None:
        """Add one video: `prediction` (its list of result entries) and `reference` (its id)."""
        self.add_batch(predictions=[prediction], references=[reference], **kwargs)

    def _compute(
        self,
        predictions: Sequence[Sequence[Mapping]],
        references: Sequence[int],
        annotations: str | os.PathLike | Mapping | None = None,
        area_ranges: str | None = None,
    ) -> dict[str, Any]:
        annotations = annotations if annotations is not None else self.annotations
        if annotations is None:
            raise ValueError("YouTubeVISAP needs the annotation json: pass annotations= at construction or compute")
        params = YouTubeVISEvalParams.from_area_preset(area_ranges or self.area_ranges)
        ground_truth = load_youtube_vis_ground_truth(annotations)
        results = [entry for video_entries in predictions for entry in video_entries]
        tracks = parse_youtube_vis_results(results, ground_truth)
        precision, recall = compute_precision_recall(ground_truth, tracks, params, video_ids=list(references))
        names = [ground_truth.category_names[category] for category in ground_truth.category_ids]
        return summarize_precision_recall(precision, recall, params, names)
