"""`tevit-hf evaluate`: run TeViT on a YouTube-VIS-format dataset (or take a results file) and score YouTube-VIS AP.

    tevit-hf evaluate --model DIR --annotations ANN --frames-dir DIR [--near-online --clip-length 36 --stride 18]
    tevit-hf evaluate --annotations ANN --results results.json

Inference writes `results.json` (the CodaLab format) to `--output-dir`; in both modes the metrics are printed as a
table and written to `<output-dir>/metrics.json`. Offline inference (default) runs every video as one clip, as the
released TeViT code does; `--near-online` runs overlapping clips linked by `TeViTNearOnlineTracker`.

Inference is the many-videos path of `tevit-hf predict` (`predict_many`): under `accelerate launch` the videos are
split across the processes (`--device cuda`: one GPU each) and the main process merges and scores them; one document
per video is kept under `<output-dir>/videos`, so a killed run resumes (`--overwrite` starts again).

    accelerate launch --num_processes 8 -m tevit_hf.commands.cli evaluate --model DIR --annotations ANN \
        --frames-dir DIR --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..evaluation.youtube_vis_eval import (
    AREA_RANGE_PRESETS,
    YouTubeVISEvalParams,
    evaluate_youtube_vis,
    format_metrics_table,
    load_youtube_vis_ground_truth,
)
from ..file_utils import write_json_atomic
from ..tracking_tevit import DEFAULT_CLIP_LENGTH, DEFAULT_STRIDE


logger = logging.getLogger(__name__)

RESULTS_FILENAME = "results.json"
METRICS_FILENAME = "metrics.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="YouTube-VIS-format annotation json with ground truth")
    parser.add_argument("--results", help="score this existing results json instead of running a model")
    parser.add_argument("--model", help="folder of a saved TeViT model (and its image processor config)")
    parser.add_argument("--frames-dir", help="folder the videos' file_names are relative to")
    parser.add_argument("--near-online", action="store_true", help="overlapping clips linked by the tracker")
    parser.add_argument("--clip-length", type=int, default=DEFAULT_CLIP_LENGTH, help="frames per clip (near-online)")
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE, help="frames between clip starts (near-online)")
    parser.add_argument(
        "--output-dir",
        help="where results.json and metrics.json go (default: the results file's "
        "folder with --results, else ./evaluation_output)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device for inference, e.g. cpu or cuda:0 (`cuda` under `accelerate launch`: one GPU per process)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="predict every video again (default: videos already in --output-dir/videos with the same settings are "
        "skipped, so a killed run resumes)",
    )
    parser.add_argument("--max-videos", type=int, help="evaluate only the first N videos of the annotation file")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="mask binarisation threshold")
    parser.add_argument(
        "--area-ranges",
        choices=sorted(AREA_RANGE_PRESETS),
        default="youtube-vis",
        help="small/medium/large split: official YouTube-VIS (128^2/256^2) or COCO (32^2/96^2)",
    )


def run(args: argparse.Namespace) -> int:
    if args.max_videos is not None and args.max_videos < 1:
        raise ValueError(f"--max-videos must be >= 1, got {args.max_videos}")
    ground_truth = load_youtube_vis_ground_truth(args.annotations)
    # Videos keep the annotation file's order, so --max-videos takes the first N of the file.
    video_ids = None if args.max_videos is None else list(ground_truth.videos)[: args.max_videos]
    if args.results:
        if args.model:
            logger.warning("--results given: scoring %s, not running --model %s", args.results, args.model)
        output_dir = Path(args.output_dir) if args.output_dir else Path(args.results).resolve().parent
        results: Any = args.results
    else:
        if not args.model or not args.frames_dir:
            raise ValueError("give --results FILE, or --model DIR and --frames-dir DIR to run inference")
        from .predict_many import process_state

        output_dir = Path(args.output_dir or "evaluation_output")
        results = run_inference(
            model_dir=args.model,
            annotation_file=args.annotations,
            frames_dir=args.frames_dir,
            video_ids=video_ids,
            near_online=args.near_online,
            clip_length=args.clip_length,
            stride=args.stride,
            device=args.device,
            mask_threshold=args.mask_threshold,
            output_dir=output_dir,
            overwrite=args.overwrite,
        )
        if not process_state().is_main_process:
            return 0  # under `accelerate launch` the main process scores the merged results
        logger.info("wrote %d result entries to %s", len(results), output_dir / RESULTS_FILENAME)
    params = YouTubeVISEvalParams.from_area_preset(args.area_ranges)
    metrics = evaluate_youtube_vis(ground_truth, results, video_ids=video_ids, params=params)
    print(format_metrics_table(metrics))
    metrics_path = write_json_atomic(output_dir / METRICS_FILENAME, metrics)
    logger.info("wrote %s", metrics_path)
    return 0


def run_inference(
    model_dir: str | os.PathLike,
    annotation_file: str | os.PathLike,
    frames_dir: str | os.PathLike,
    video_ids: list[int] | None = None,
    near_online: bool = False,
    clip_length: int = DEFAULT_CLIP_LENGTH,
    stride: int = DEFAULT_STRIDE,
    device: str = "cpu",
    mask_threshold: float = 0.5,
    output_dir: str | os.PathLike = "evaluation_output",
    overwrite: bool = False,
    config_overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run a saved TeViT model on the videos of a YouTube-VIS-format dataset; returns the results entries.

    The many-videos path of `tevit-hf predict` (`predict_many`): split across the processes of `accelerate launch`,
    one document per video under `output_dir/videos` (a rerun resumes), merged into `output_dir/results.json` and
    `index.json`. Offline (default) runs every video as one clip, as the released TeViT code; `near_online` runs
    `clip_length` clips every `stride` frames linked by the tracker. `config_overrides` changes config fields read at
    inference only (e.g. `inference_messenger_tokens`, an ablation of the paper) after the strict load; they are part
    of the recorded settings, so a resume never mixes documents predicted with other values.
    """
    from ..image_processing_tevit import map_labels_to_categories
    from ..model_loading import check_device, load_pipeline
    from .predict_many import list_videos, predict_many, process_state

    state = process_state()
    if device == "cuda" and state.num_processes > 1:
        device = f"cuda:{state.local_process_index}"
    check_device(device)
    items, categories = list_videos(annotation_file, frames_dir=frames_dir)
    if video_ids is not None:
        wanted = set(video_ids)
        items = [item for item in items if item.video_id in wanted]
    # The one strict loader: safetensors only, and config and weights must agree (no randomly filled tensors).
    pipe = load_pipeline(model_dir, device=device)
    for key, value in (config_overrides or {}).items():
        setattr(pipe.model.config, key, value)
    label_to_category = map_labels_to_categories(pipe.model.config.id2label, categories)
    parameters = {"clip_length": clip_length, "stride": stride, "threshold": 0.0, "mask_threshold": mask_threshold}
    settings = {
        "source": os.fspath(annotation_file),
        "model": os.fspath(model_dir),
        "near_online": near_online,
        "clip_length": clip_length if near_online else None,
        "stride": stride if near_online else None,
        "mask_threshold": mask_threshold,
        "config_overrides": dict(config_overrides or {}),
    }
    predict_many(
        pipe,
        items,
        output_dir,
        parameters,
        settings,
        label_to_category=label_to_category,
        offline=not near_online,
        overwrite=overwrite,
    )
    return json.loads((Path(output_dir) / RESULTS_FILENAME).read_text(encoding="utf-8"))
