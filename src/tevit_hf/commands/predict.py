"""`tevit-hf predict`: segment and track the instances of a video file or frame folder.

    tevit-hf predict VIDEO_OR_FRAMES_DIR --model DIR [--output-dir OUT] [--clip-length 36 --stride 18]
        [--threshold 0.0 --display-threshold 0.3 --device cpu --dtype auto]

Writes `results.json` (see `build_results_payload`) and an overlay video (`overlay.mp4`, or `.gif`) to the output
folder and prints a summary table. A video longer than the clip runs near-online (overlapping clips linked into
tracks); frames are streamed twice (inference, then the overlay) so memory stays bounded by the clip length.

    tevit-hf predict VIDEO --onnx model.onnx          # the forward in onnxruntime (`tevit-hf export`), same tracks
    tevit-hf predict VIDEOS_DIR | LIST.txt | ANN.json --model DIR --output-dir OUT   # many videos: predict_many.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..file_utils import atomic_text_stream, staged_directory
from ..model_loading import DEFAULT_DTYPE, DTYPE_CHOICES
from ..pipeline_tevit import resolve_clip_schedule
from ..tracking_tevit import DEFAULT_CLIP_LENGTH
from ..video_io import iter_video_frames, probe_video
from ..visualization import write_annotated_video


logger = logging.getLogger(__name__)

RESULTS_FILENAME = "results.json"
OVERLAY_STEM = "overlay"
OVERLAY_FORMATS = ("mp4", "gif")
# Instances below this score are written to results.json but not drawn on the overlay.
DEFAULT_DISPLAY_THRESHOLD = 0.3
# Frame rate of overlays for sources without timing (frame folders).
DEFAULT_OVERLAY_FPS = 10.0


@dataclass
class Prediction:
    """The outcome of `predict_video`: the instances, the files written and how long inference took."""

    instances: list[dict[str, Any]]
    payload: dict[str, Any]
    results_path: Path
    overlay_paths: list[Path]
    inference_seconds: float


# `--model demo` names the bundled demo model (a folder called "demo" in the working directory wins).
BUNDLED_MODEL_NAME = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video",
        help="video file (mp4, avi, ...) or folder of frame images; or many videos: a folder of videos, a .txt list "
        "of video paths, or a YouTube-VIS annotation .json (split across the processes of `accelerate launch`)",
    )
    parser.add_argument(
        "--frames-dir",
        help="folder the file_names of a YouTube-VIS annotation file are relative to (default: its folder)",
    )
    parser.add_argument(
        "--model",
        help=f"folder of a saved TeViT model (config, safetensors, processor), or `{BUNDLED_MODEL_NAME}` for the "
        "bundled demo model (required unless --onnx is given)",
    )
    parser.add_argument(
        "--onnx",
        help="run this `tevit-hf export --format onnx` file with onnxruntime (CPU) instead of PyTorch; the config and "
        "processor come from the file (needs the [export] extra)",
    )
    add_inference_arguments(parser, default_output_dir="predict_output")


def add_inference_arguments(parser: argparse.ArgumentParser, default_output_dir: str) -> None:
    """Arguments shared by `predict` and `demo`."""
    parser.add_argument(
        "--output-dir",
        default=default_output_dir,
        help=f"folder for results.json and the overlays, written as one unit (default: {default_output_dir})",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an --output-dir that holds earlier results (default: refuse)"
    )
    parser.add_argument(
        "--clip-length",
        type=int,
        default=DEFAULT_CLIP_LENGTH,
        help="frames per clip; longer videos run near-online over overlapping clips",
    )
    parser.add_argument("--stride", type=int, help="frames between clip starts (default: half the clip length)")
    parser.add_argument("--threshold", type=float, default=0.0, help="drop instances scoring below this")
    parser.add_argument("--mask-threshold", type=float, help="mask probability threshold (default: the config's)")
    parser.add_argument(
        "--display-threshold",
        type=float,
        default=DEFAULT_DISPLAY_THRESHOLD,
        help="instances scoring below this are kept in results.json but not drawn on the overlay",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default=DEFAULT_DTYPE,
        help="model dtype (default: auto, the dtype recorded in the model's config.json, as from_pretrained)",
    )
    parser.add_argument(
        "--overlay-format",
        choices=OVERLAY_FORMATS,
        action="append",
        help="overlay file type; repeat for several (default: mp4)",
    )


def resolve_model_dir(model: str | os.PathLike) -> str | os.PathLike:
    """`--model`: a folder, or `demo` for the bundled demo model (unless a folder of that name exists)."""
    if model == BUNDLED_MODEL_NAME and not Path(model).exists():
        from .demo import bundled_demo_model_dir  # lazily: demo builds on this module

        return bundled_demo_model_dir()
    return model


def run(args: argparse.Namespace) -> int:
    if args.onnx:
        if args.model:
            raise ValueError("give --model DIR or --onnx FILE, not both (the ONNX file carries its config)")
        if args.device != "cpu":
            raise ValueError(f"--onnx runs on onnxruntime's CPU provider; drop --device {args.device}")
        model_dir = args.onnx
    elif args.model:
        model_dir = resolve_model_dir(args.model)
    else:
        raise ValueError("give --model DIR (or `demo`), or --onnx FILE written by `tevit-hf export`")
    from .predict_many import is_video_collection, run_many

    if is_video_collection(args.video):
        return run_many(args, model_dir)
    prediction = run_inference_arguments(args, model_dir, args.video, default_overlay_formats=("mp4",))
    print(f"\nresults: {prediction.results_path}")
    for path in prediction.overlay_paths:
        print(f"overlay: {path}")
    return 0


def run_inference_arguments(
    args: argparse.Namespace,
    model_dir: str | os.PathLike,
    video: str | os.PathLike,
    default_overlay_formats: Sequence[str],
    extra_outputs: Callable[[Path, Prediction], None] | None = None,
    pipe: Any = None,
    progress_callback: Callable[[int, int | None], None] | None = None,
) -> Prediction:
    """The flow `predict`, `demo` and `app` share. Checks first (the video is readable, the device exists, the
    output folder holds no earlier work unless `--overwrite`, it can be created), then loads the model strictly
    (unless `pipe`, a pipeline already loaded from `model_dir`, is given: the app keeps its model between requests),
    segments `video` with the options of `add_inference_arguments` and writes results.json, the overlays and
    `extra_outputs(folder, prediction)` into a staging folder that becomes `--output-dir` as one unit.
    `progress_callback(clips_done, total_clips)` follows the clips. Prints the summary table; the returned paths
    are in `--output-dir`."""
    from ..model_loading import check_device, load_pipeline

    probe_video(video)
    check_device(args.device)
    output_dir = Path(args.output_dir)
    with staged_directory(output_dir, overwrite=args.overwrite) as staging:
        if pipe is None and getattr(args, "onnx", None):
            from ..onnx_model import load_onnx_pipeline

            pipe = load_onnx_pipeline(model_dir)
        elif pipe is None:
            pipe = load_pipeline(model_dir, device=args.device, dtype=args.dtype)
        prediction = predict_video(
            pipe,
            video,
            staging,
            clip_length=args.clip_length,
            stride=args.stride,
            threshold=args.threshold,
            mask_threshold=args.mask_threshold,
            display_threshold=args.display_threshold,
            overlay_formats=args.overlay_format or default_overlay_formats,
            model_name=str(model_dir),
            progress_callback=progress_callback,
        )
        if extra_outputs is not None:
            extra_outputs(staging, prediction)
    prediction = dataclasses.replace(
        prediction,
        results_path=output_dir / prediction.results_path.name,
        overlay_paths=[output_dir / path.name for path in prediction.overlay_paths],
    )
    print(format_summary_table(prediction.payload, prediction.inference_seconds))
    return prediction


def predict_video(
    pipe: Any,
    video: str | os.PathLike,
    output_dir: str | os.PathLike,
    clip_length: int = DEFAULT_CLIP_LENGTH,
    stride: int | None = None,
    threshold: float = 0.0,
    mask_threshold: float | None = None,
    display_threshold: float = DEFAULT_DISPLAY_THRESHOLD,
    overlay_formats: Sequence[str] = ("mp4",),
    model_name: str | None = None,
    show_progress: bool = True,
    progress_callback: Callable[[int, int | None], None] | None = None,
) -> Prediction:
    """Run a `VideoInstanceSegmentationPipeline` on a video file / frame folder and write results and overlays.

    `progress_callback(clips_done, total_clips)` is called after each clip (the pipeline's parameter).

    Returns:
        A `Prediction`; `results.json` and `overlay.<format>` are in `output_dir`.
    """
    for overlay_format in overlay_formats:
        if overlay_format not in OVERLAY_FORMATS:
            raise ValueError(f"overlay format must be one of {OVERLAY_FORMATS}, got {overlay_format!r}.")
    info = probe_video(video)
    clip_length, stride = resolve_clip_schedule(clip_length, stride)
    parameters = {"clip_length": clip_length, "stride": stride, "threshold": threshold}
    if mask_threshold is not None:
        parameters["mask_threshold"] = mask_threshold
    started = time.perf_counter()
    callback = {} if progress_callback is None else {"progress_callback": progress_callback}
    instances = pipe(os.fspath(video), return_rle=True, show_progress=show_progress, **parameters, **callback)
    inference_seconds = time.perf_counter() - started
    payload = build_results_payload(
        instances,
        video=os.fspath(video),
        num_frames=_num_frames(instances, info.num_frames),
        fps=info.fps,
        frame_size=(info.height, info.width),
        id2label=pipe.model.config.id2label,
        settings={
            "model": model_name,
            "clip_length": clip_length,
            "stride": stride,
            "threshold": threshold,
            "mask_threshold": mask_threshold if mask_threshold is not None else pipe.model.config.mask_threshold,
        },
    )
    if payload["num_frames"] != info.num_frames:
        # Recorded, never silent: the container promised another length than the decoder delivered.
        payload["container_num_frames"] = int(info.num_frames)
        logger.warning(
            "%s: %d frames were decoded, the container promises %d; results.json covers the decoded frames.",
            video,
            payload["num_frames"],
            info.num_frames,
        )
    output_dir = Path(output_dir)
    results_path = write_results_json(output_dir / RESULTS_FILENAME, payload)
    overlay_paths = [
        write_overlay(
            iter_video_frames(video),
            instances,
            output_dir / f"{OVERLAY_STEM}.{overlay_format}",
            fps=info.fps or DEFAULT_OVERLAY_FPS,
            id2label=pipe.model.config.id2label,
            display_threshold=display_threshold,
            num_frames=payload["num_frames"],
        )
        for overlay_format in overlay_formats
    ]
    return Prediction(instances, payload, results_path, overlay_paths, inference_seconds)


def _num_frames(instances: Sequence[Mapping[str, Any]], probed: int) -> int:
    # The decoded length is authoritative (a container's frame count can be off by a frame or two).
    return len(instances[0]["frame_valid"]) if instances else probed


def build_results_payload(
    instances: Sequence[Mapping[str, Any]],
    video: str,
    num_frames: int,
    fps: float | None,
    frame_size: tuple[int, int],
    id2label: Mapping[int, str],
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `results.json` document: the video, the settings, and the instances (JSON-serialisable).

    Each instance: `id`, `label` (name), `label_id`, `score`, `boxes` (per frame `[x1, y1, x2, y2]` in original pixels)
    and `segmentations` (per frame a COCO RLE `{"size": [H, W], "counts": str}`); both are `null` where the object is
    not visible (the pipeline's `visible`: no prediction, or an empty mask, which YouTube-VIS scores alike). `results_to_youtube_vis` turns it into YouTube-VIS results entries.
    """
    return {
        "video": video,
        "num_frames": int(num_frames),
        "fps": fps,
        "height": int(frame_size[0]),
        "width": int(frame_size[1]),
        **dict(settings or {}),
        "id2label": {str(key): str(value) for key, value in id2label.items()},
        "instances": ResultEntries(instances),
    }


class ResultEntries(Sequence):
    """The `instances` of a results document, each built from a pipeline instance when it is read.

    A long video's per-frame boxes as Python lists weigh several times the tracks they come from (111 tracks x
    5,000 frames: about 100 MB), so the document never holds them all: `write_results_json` streams one entry at a
    time, and every other reader (summary table, YouTube-VIS conversion, the metric) iterates the same way.
    """

    def __init__(self, instances: Sequence[Mapping[str, Any]]):
        self._instances = instances

    def __len__(self) -> int:
        return len(self._instances)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _results_entry(self._instances[index])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == len(self) and all(mine == theirs for mine, theirs in zip(self, other))

    __hash__ = None  # mutable-sequence semantics: equal by content, so not hashable

    def __repr__(self) -> str:
        return f"ResultEntries({len(self)} instances)"


def _results_entry(instance: Mapping[str, Any]) -> dict[str, Any]:
    visible = _as_list(instance["visible"])
    boxes = np.asarray(_as_array(instance["boxes"]), dtype=np.float64)
    return {
        "id": int(instance["id"]),
        "label": str(instance["label"]),
        "label_id": int(instance["label_id"]),
        "score": float(instance["score"]),
        "boxes": [
            [round(float(v), 2) for v in box] if seen and np.isfinite(box).all() else None
            for box, seen in zip(boxes, visible)
        ],
        "segmentations": [rle if seen else None for rle, seen in zip(instance["segmentations"], visible)],
    }


def write_results_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write a results document atomically, one instance at a time (the header indented, one instance per line)."""
    header = {key: value for key, value in payload.items() if key != "instances"}
    with atomic_text_stream(path) as stream:
        stream.write(json.dumps(header, indent=2)[: -len("\n}")] + ',\n  "instances": [')
        for index, entry in enumerate(payload["instances"]):
            stream.write(("," if index else "") + "\n    " + json.dumps(entry))
        stream.write("\n  ]\n}\n")
    return Path(path)


def results_to_youtube_vis(
    payload: Mapping[str, Any], video_id: int, label_to_category_id: Mapping[int, int] | None = None
) -> list[dict[str, Any]]:
    """YouTube-VIS results entries (`video_id`, `category_id`, `score`, `segmentations`) from a `results.json`.

    `label_to_category_id` defaults to `label_id + 1` (the YouTube-VIS-2019 rule); absent frames stay `null`.
    """
    results = []
    for instance in payload["instances"]:
        label = int(instance["label_id"])
        if label_to_category_id is not None and label not in label_to_category_id:
            raise ValueError(f"label_id {label} of instance {instance['id']} has no category id in the mapping.")
        results.append(
            {
                "video_id": int(video_id),
                "category_id": label + 1 if label_to_category_id is None else int(label_to_category_id[label]),
                "score": float(instance["score"]),
                "segmentations": instance["segmentations"],
            }
        )
    return results


def write_overlay(
    frames: Iterable[np.ndarray],
    instances: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    fps: float,
    id2label: Mapping[int, str],
    display_threshold: float = DEFAULT_DISPLAY_THRESHOLD,
    num_frames: int | None = None,
) -> Path:
    """Draw the pipeline's instances (label names, `label_id`) onto the frames and write MP4/GIF by suffix."""
    drawable = [{**instance, "label": int(instance["label_id"])} for instance in instances]
    frames = tqdm(frames, total=num_frames, desc=f"writing {Path(path).name}", unit="frame", leave=False)
    return write_annotated_video(
        frames, drawable, path, fps=fps, id2label=dict(id2label), score_threshold=display_threshold
    )


SUMMARY_COLUMNS = ("id", "label", "score", "frames", "first", "last")


def summary_rows(payload: Mapping[str, Any]) -> list[tuple[int, str, float, int, int | None, int | None]]:
    """One row per instance of a `results.json` document: id, label, score, number of frames where it is visible,
    first and last visible frame (None when it is never visible). The CLI's table and the app's table."""
    rows = []
    for instance in payload["instances"]:
        # Frames where the object is visible (segmentations are null where its mask is empty or missing).
        present = [index for index, rle in enumerate(instance["segmentations"]) if rle is not None]
        first, last = (present[0], present[-1]) if present else (None, None)
        rows.append((int(instance["id"]), str(instance["label"]), float(instance["score"]), len(present), first, last))
    return rows


def summary_header(payload: Mapping[str, Any], inference_seconds: float | None = None) -> str:
    """The one-line header of the summary: instances, frames, frame size and inference speed."""
    num_frames = payload["num_frames"]
    header = f"{len(payload['instances'])} instances in {num_frames} frames ({payload['width']}x{payload['height']})"
    if inference_seconds:
        header += f", inference {inference_seconds:.1f} s ({num_frames / inference_seconds:.1f} frames/s)"
    return header


def format_summary_table(payload: Mapping[str, Any], inference_seconds: float | None = None) -> str:
    """A plain-text table of the instances of a `results.json` document, with a one-line header."""
    rows = [SUMMARY_COLUMNS]
    for track_id, label, score, frames, first, last in summary_rows(payload):
        rows.append(
            (
                str(track_id),
                label,
                f"{score:.3f}",
                str(frames),
                "-" if first is None else str(first),
                "-" if last is None else str(last),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [summary_header(payload, inference_seconds), ""]
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(width) if column == 1 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(row, widths))
            )
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _as_list(values: Any) -> list[bool]:
    return [bool(value) for value in _as_array(values).reshape(-1)]


__all__ = [
    "Prediction",
    "add_arguments",
    "ResultEntries",
    "build_results_payload",
    "format_summary_table",
    "predict_video",
    "resolve_model_dir",
    "results_to_youtube_vis",
    "write_results_json",
    "run",
    "summary_header",
    "summary_rows",
    "write_overlay",
]
