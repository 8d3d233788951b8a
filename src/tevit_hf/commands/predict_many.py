"""`tevit-hf predict` over many videos, split across the processes of `accelerate launch`, resumable.

    tevit-hf predict VIDEOS_DIR | LIST.txt | ANNOTATIONS.json --model DIR [--frames-dir DIR] --output-dir OUT
    accelerate launch --num_processes 8 -m tevit_hf.commands.cli predict ...      (the same, on 8 processes)

Sources (`list_videos`): a folder of videos (its video files and frame folders; a folder that holds images directly
is ONE video, the single-video path), a `.txt` list (one video path per line, relative to the list's folder), or a
YouTube-VIS annotation `.json` (its `videos`, frames under `--frames-dir`; labels map to its categories).

Every process takes its share of the unfinished videos (Accelerate's `PartialState.split_between_processes`) and
writes one document per finished video, `videos/<video_id>.json` (the single-video results.json plus `video_id` and
`results`, its YouTube-VIS entries), atomically. The main process then merges them, in source order, into
`results.json` (YouTube-VIS results: `video_id`, `category_id`, `score`, `segmentations`) and `index.json` (per
video: id, source, frames, instances, seconds, its document). A rerun skips the videos whose document exists (a
killed run resumes); `--overwrite` starts again. Throughput (videos/s, frames/s) is printed and kept in the index.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TeViTError
from ..file_utils import write_json_atomic
from ..video_io import IMAGE_EXTENSIONS, natural_sort_key


logger = logging.getLogger(__name__)

VIDEOS_SUBDIR = "videos"
INDEX_FILENAME = "index.json"
RESULTS_FILENAME = "results.json"
LIST_SUFFIXES = (".txt",)
ANNOTATION_SUFFIXES = (".json",)


@dataclass
class VideoItem:
    """One video of a collection: its id (YouTube-VIS `video_id`), how to read it, and what is known of it."""

    video_id: int
    source: str | list[str]
    description: str
    num_frames: int | None = None
    frame_size: tuple[int, int] | None = None


def is_video_collection(source: str | os.PathLike) -> bool:
    """A list file, an annotation file, or a folder that is not itself a frame folder (holds no images directly)."""
    path = Path(source)
    if path.is_file():
        return path.suffix.lower() in LIST_SUFFIXES + ANNOTATION_SUFFIXES
    if path.is_dir():
        return not any(child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS for child in path.iterdir())
    return False


def list_videos(
    source: str | os.PathLike, frames_dir: str | os.PathLike | None = None
) -> tuple[list[VideoItem], dict[int, str] | None]:
    """The videos of a collection in source order, and the categories (id -> name) of an annotation file.

    Raises:
        TeViTError: an empty collection, a list line naming a missing file, an annotation file without `videos`.
    """
    path = Path(source)
    categories = None
    if path.is_dir():
        children = sorted(
            (child for child in path.iterdir() if not child.name.startswith(".")),
            key=lambda child: natural_sort_key(child.name),
        )
        items = [
            VideoItem(index + 1, os.fspath(child), os.fspath(child))
            for index, child in enumerate(
                c for c in children if c.is_dir() or c.suffix.lower() not in IMAGE_EXTENSIONS
            )
        ]
    elif path.suffix.lower() in LIST_SUFFIXES:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        entries = [line for line in lines if line and not line.startswith("#")]
        items = []
        for index, entry in enumerate(entries):
            video = Path(entry) if Path(entry).is_absolute() else path.parent / entry
            if not video.exists():
                raise TeViTError(f"{path}: line {lines.index(entry) + 1} names {entry!r}, which does not exist.")
            items.append(VideoItem(index + 1, os.fspath(video), entry))
    else:
        items, categories = _annotation_videos(path, frames_dir)
    if not items:
        raise TeViTError(f"{path} lists no videos.")
    return items, categories


def _annotation_videos(path: Path, frames_dir: str | os.PathLike | None) -> tuple[list[VideoItem], dict[int, str]]:
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict) or not isinstance(document.get("videos"), list):
        raise TeViTError(f"{path}: expected a YouTube-VIS annotation file with a `videos` list.")
    root = Path(frames_dir) if frames_dir is not None else path.parent
    categories = {int(category["id"]): str(category["name"]) for category in document.get("categories", [])}
    items = []
    for video in document["videos"]:
        file_names = video.get("file_names")
        if "id" not in video or not file_names:
            raise TeViTError(f"{path}: every video needs `id` and `file_names`; got {sorted(video)}.")
        frames = [os.fspath(root / name) for name in file_names]
        size = (int(video["height"]), int(video["width"])) if "height" in video and "width" in video else None
        items.append(VideoItem(int(video["id"]), frames, f"video {video['id']}", len(frames), size))
    return items, categories


def predict_many(
    pipe: Any,
    items: Sequence[VideoItem],
    output_dir: str | os.PathLike,
    parameters: Mapping[str, Any],
    settings: Mapping[str, Any],
    label_to_category: Mapping[int, int] | None = None,
    offline: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Predict the unfinished `items` on this process's share, then (main process) merge and index every video.

    Args:
        pipe: a `VideoInstanceSegmentationPipeline` (PyTorch or ONNX).
        parameters: pipeline call parameters (`clip_length`, `stride`, `threshold`, `mask_threshold`).
        settings: recorded in every video document and the index.
        label_to_category: model label -> category id (default `label_id + 1`).
        offline: every video as one clip (the released TeViT evaluation), instead of `clip_length` clips.
        overwrite: remove the documents of an earlier run first (else finished videos are skipped, when their
            settings are these).

    Returns:
        The index document (on every process; only the main process writes the files).
    """
    from tqdm.auto import tqdm

    from .predict import build_results_payload, results_to_youtube_vis, write_results_json

    state = process_state()
    output_dir = Path(output_dir)
    videos_dir = output_dir / VIDEOS_SUBDIR
    if overwrite and state.is_main_process:
        shutil.rmtree(videos_dir, ignore_errors=True)
        for name in (RESULTS_FILENAME, INDEX_FILENAME):
            (output_dir / name).unlink(missing_ok=True)
    state.wait_for_everyone()
    started = time.perf_counter()
    done = {item.video_id for item in items if _document_path(videos_dir, item).is_file()}
    for item in items:
        if item.video_id in done:
            _check_resumable(_document_path(videos_dir, item), item, settings)
    todo = [item for item in items if item.video_id not in done]
    # Every process has listed the finished videos before any writes a new one: the split is the same everywhere.
    state.wait_for_everyone()
    if state.is_main_process and done:
        logger.info("resuming: %d of %d videos are finished in %s and skipped", len(done), len(items), videos_dir)
    with state.split_between_processes(todo) as mine:
        progress = tqdm(mine, desc=f"videos (process {state.process_index})", unit="video", disable=not mine)
        for item in progress:
            video_started = time.perf_counter()
            call = dict(parameters)
            if offline:
                length = item.num_frames or _count_frames(item)
                call.update(clip_length=length, stride=length)
            instances = pipe(item.source, return_rle=True, **call)
            seconds = time.perf_counter() - video_started
            payload = build_results_payload(
                instances,
                video=item.description,
                num_frames=len(instances[0]["frame_valid"]) if instances else _count_frames(item),
                fps=None,
                frame_size=_frame_size(item, instances),
                id2label=pipe.model.config.id2label,
                settings=settings,
            )
            payload.update(
                video_id=item.video_id,
                seconds=round(seconds, 3),
                results=results_to_youtube_vis(payload, item.video_id, label_to_category),
            )
            write_results_json(_document_path(videos_dir, item), payload)
    state.wait_for_everyone()
    index = _merge(items, videos_dir, output_dir, settings, time.perf_counter() - started, state)
    state.wait_for_everyone()
    return index


def process_state() -> Any:
    """Accelerate's `PartialState`: this process's rank among those of `accelerate launch` (one process otherwise).

    CPU processes talk through gloo: `PartialState` sets that up when asked for the CPU (`ACCELERATE_USE_CPU=1`, as
    `Accelerator` reads it) or when there is no CUDA device.
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def _merge(
    items: Sequence[VideoItem],
    videos_dir: Path,
    output_dir: Path,
    settings: Mapping[str, Any],
    seconds: float,
    state: Any,
) -> dict[str, Any]:
    """results.json and index.json from the video documents, in source order (main process writes them)."""
    results: list[dict[str, Any]] = []
    videos = []
    for item in items:
        path = _document_path(videos_dir, item)
        document = json.loads(path.read_text(encoding="utf-8"))
        results.extend(document["results"])
        videos.append(
            {
                "video_id": item.video_id,
                "video": item.description,
                "num_frames": document["num_frames"],
                "num_instances": len(document["instances"]),
                "seconds": document["seconds"],
                "document": os.fspath(path.relative_to(output_dir)),
            }
        )
    frames = sum(video["num_frames"] for video in videos)
    index = {
        **dict(settings),
        "num_videos": len(videos),
        "num_frames": frames,
        "num_processes": state.num_processes,
        "wall_seconds": round(seconds, 3),
        "videos_per_second": round(len(videos) / seconds, 4) if seconds else None,
        "frames_per_second": round(frames / seconds, 3) if seconds else None,
        "results": RESULTS_FILENAME,
        "videos": videos,
    }
    if state.is_main_process:
        write_json_atomic(output_dir / RESULTS_FILENAME, results)
        write_json_atomic(output_dir / INDEX_FILENAME, index)
        print(
            f"{len(videos)} videos, {frames} frames in {seconds:.1f} s on {state.num_processes} process(es): "
            f"{len(videos) / seconds:.2f} videos/s, {frames / seconds:.1f} frames/s"
        )
        print(f"results: {output_dir / RESULTS_FILENAME}\nindex: {output_dir / INDEX_FILENAME}")
    return index


def _check_resumable(path: Path, item: VideoItem, settings: Mapping[str, Any]) -> None:
    """A finished video is only reused when it is the same video (a folder that gained files renumbers its videos)
    predicted with the same settings (model, clips, thresholds)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("video") != item.description:
        raise TeViTError(
            f"{path} holds the results of {document.get('video')!r}, but video {item.video_id} is now "
            f"{item.description!r}; pass --overwrite to start again, or choose another --output-dir."
        )
    differing = sorted(key for key, value in settings.items() if document.get(key) != value)
    if differing:
        shown = ", ".join(f"{key} {document.get(key)!r} (now {settings[key]!r})" for key in differing)
        raise TeViTError(
            f"{path} was predicted with other settings: {shown}; pass --overwrite to start again, or choose another "
            "--output-dir."
        )


def _document_path(videos_dir: Path, item: VideoItem) -> Path:
    return videos_dir / f"{item.video_id}.json"


def _count_frames(item: VideoItem) -> int:
    if isinstance(item.source, list):
        return len(item.source)
    from ..video_io import probe_video

    return probe_video(item.source).num_frames


def _frame_size(item: VideoItem, instances: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    if instances and instances[0]["segmentations"]:
        height, width = instances[0]["segmentations"][0]["size"]
        return int(height), int(width)
    if item.frame_size is not None:
        return item.frame_size
    from ..video_io import probe_video

    info = probe_video(item.source if isinstance(item.source, str) else item.source[0])
    return info.height, info.width


__all__ = ["VideoItem", "is_video_collection", "list_videos", "predict_many", "process_state"]


def run_many(args: Any, model_dir: str | os.PathLike) -> int:
    """`tevit-hf predict` on a collection (see the module docstring): load once per process, predict, merge."""
    from ..image_processing_tevit import map_labels_to_categories
    from ..model_loading import check_device, load_pipeline
    from ..pipeline_tevit import resolve_clip_schedule

    state = process_state()
    items, categories = list_videos(args.video, frames_dir=getattr(args, "frames_dir", None))
    output_dir = Path(args.output_dir)
    device = args.device
    # Under `accelerate launch` on GPUs every process takes its own device.
    if device == "cuda" and state.num_processes > 1:
        device = f"cuda:{state.local_process_index}"
    check_device(device)
    if getattr(args, "onnx", None):
        from ..onnx_model import load_onnx_pipeline

        pipe = load_onnx_pipeline(model_dir)
    else:
        pipe = load_pipeline(model_dir, device=device, dtype=args.dtype)
    clip_length, stride = resolve_clip_schedule(args.clip_length, args.stride)
    parameters = {"clip_length": clip_length, "stride": stride, "threshold": args.threshold}
    if args.mask_threshold is not None:
        parameters["mask_threshold"] = args.mask_threshold
    settings = {
        "source": os.fspath(args.video),
        "model": os.fspath(model_dir),
        "clip_length": clip_length,
        "stride": stride,
        "threshold": args.threshold,
        "mask_threshold": args.mask_threshold if args.mask_threshold is not None else pipe.model.config.mask_threshold,
    }
    label_to_category = map_labels_to_categories(pipe.model.config.id2label, categories) if categories else None
    predict_many(
        pipe, items, output_dir, parameters, settings, label_to_category=label_to_category, overwrite=args.overwrite
    )
    return 0


__all__ += ["run_many"]
