"""YouTube-VIS evaluation: the video AP metric (official `ytvoseval` semantics) and its `evaluate` wrapper.

`YouTubeVISAP` (the `evaluate.Metric`) is imported lazily so that `import tevit_hf.evaluation` stays light.
"""

from .youtube_vis_eval import (
    AREA_RANGE_PRESETS,
    AREA_RANGES_COCO,
    AREA_RANGES_YOUTUBE_VIS,
    YouTubeVISEvalParams,
    YouTubeVISGroundTruth,
    compute_precision_recall,
    compute_video_iou,
    evaluate_youtube_vis,
    format_metrics_table,
    load_youtube_vis_ground_truth,
    parse_youtube_vis_results,
    summarize_precision_recall,
)


def __getattr__(name: str):
    if name in ("YouTubeVISAP", "group_results_by_video"):
        from . import metric

        return getattr(metric, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AREA_RANGES_COCO",
    "AREA_RANGES_YOUTUBE_VIS",
    "AREA_RANGE_PRESETS",
    "YouTubeVISAP",
    "YouTubeVISEvalParams",
    "YouTubeVISGroundTruth",
    "compute_precision_recall",
    "compute_video_iou",
    "evaluate_youtube_vis",
    "format_metrics_table",
    "group_results_by_video",
    "load_youtube_vis_ground_truth",
    "parse_youtube_vis_results",
    "summarize_precision_recall",
]
