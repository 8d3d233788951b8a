"""`VideoInstanceSegmentationPipeline`: a video in, tracked instances (label, score, per-frame boxes and masks) out.

Registered for the task `"video-instance-segmentation"` (with `pt_model=AutoModel`), so that

    from transformers import pipeline
    segmenter = pipeline("video-instance-segmentation", model="path/or/hub-id", trust_remote_code=True)
    instances = segmenter("video.mp4", threshold=0.3)

works from a Hub folder written by `Pipeline.save_pretrained` (which lists this class under `custom_pipelines` in the
config and copies this file with its relative imports). Every video runs through `TeViTNearOnlineTracker`: a video of
at most `clip_length` frames is one clip (exactly the official offline result), a longer one is cut into overlapping
clips linked into tracks (near-online, memory bounded by the clip length).

Inputs (one video or a batch, told apart by `video_io.split_video_batch`, the rule `TeViTImageProcessor` uses too):
- a video file or a folder of frame images (`str` / `os.PathLike`), decoded lazily by `video_io`;
- a list/tuple of frames: PIL images, `(H, W, C)` / `(C, H, W)` / `(H, W)` arrays or tensors, or image file paths;
- a `(T, H, W, C)` / `(T, C, H, W)` array or tensor;
- a batch: a list of any of the above, or a 5-D `(B, T, ...)` array. A list of image paths is the frames of one
  video; a list of video paths is a batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline
from transformers.utils import logging

from .masks_tevit import decode_masks_rle
from .tracking_tevit import DEFAULT_CLIP_LENGTH, DEFAULT_STRIDE, TeViTNearOnlineTracker, validate_clip_schedule
from .video_io import iter_video_frames, probe_video, split_video_batch


logger = logging.get_logger(__name__)

VIDEO_INSTANCE_SEGMENTATION_TASK = "video-instance-segmentation"


@dataclass
class VideoSource:
    """One video ready to stream: its frames in time order and what is known about it.

    Attributes:
        frames: the frames (anything `TeViTImageProcessor` accepts as a frame), consumed once, in order.
        num_frames: the number of frames, when known before decoding (progress bars only).
        fps: frames per second of a video file, else None.
        description: how the video was given, for messages.
    """

    frames: Iterable[Any]
    num_frames: int | None
    fps: float | None
    description: str


class _OneVideo:
    """Wraps one video so that `Pipeline.__call__` never iterates it as a batch and never moves its frames."""

    def __init__(self, video: Any) -> None:
        self.video = video


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | torch.Tensor)


def split_video_inputs(inputs: Any) -> tuple[list[Any], bool]:
    """Tell one video from a batch of videos: `video_io.split_video_batch`, the rule the image processor uses too.

    Returns:
        `(videos, is_batch)`: the list of videos and whether the input was a batch (the pipeline then returns a list
        of results, else the result of the one video).
    """
    return split_video_batch(inputs)


def load_video_source(video: Any) -> VideoSource:
    """Turn one video (see `split_video_inputs`) into a `VideoSource`; files are probed now and decoded lazily.

    Raises:
        FileNotFoundError: a video path that does not exist.
        ValueError: an unreadable, empty or zero-frame video.
    """
    if isinstance(video, str | os.PathLike):
        info = probe_video(video)
        return VideoSource(iter_video_frames(video), info.num_frames, info.fps, f"video {os.fspath(video)!r}")
    if _is_array(video):
        if video.shape[0] == 0:
            raise ValueError(f"The video array of shape {tuple(video.shape)} has no frames.")
        return VideoSource(
            list(video.unbind(0) if isinstance(video, torch.Tensor) else video), len(video), None, "array"
        )
    frames = list(video)
    if not frames:
        raise ValueError("The video has no frames.")
    return VideoSource(frames, len(frames), None, f"list of {len(frames)} frames")


def resolve_clip_schedule(clip_length: int | None = None, stride: int | None = None) -> tuple[int, int]:
    """The `(clip_length, stride)` the pipeline uses: defaults 36 and 18 (the paper's); a stride left out is half
    the clip length (the paper's ratio). `ValueError` unless `0 < stride <= clip_length`."""
    clip_length = DEFAULT_CLIP_LENGTH if clip_length is None else clip_length
    if stride is None and isinstance(clip_length, int):
        stride = max(1, clip_length * DEFAULT_STRIDE // DEFAULT_CLIP_LENGTH)
    validate_clip_schedule(clip_length, stride)
    return clip_length, stride


@dataclass(frozen=True)
class _Tracks:
    """The tracker's tracks on their way from `_forward` to `postprocess`, in a container that `Pipeline.forward`
    leaves alone: it rebuilds every dict and list it can reach (to move tensors to the CPU), which for RLE tracks is
    one new dict per track and frame (frames where a track is absent share one empty RLE until then), the largest
    memory cost of a long video. The tracks' tensors are CPU tensors already."""

    tracks: list[dict[str, Any]]


class VideoInstanceSegmentationPipeline(Pipeline):
    """Segment and track the instances of videos with TeViT.

    Call parameters (also accepted by the constructor as defaults):
        threshold (`float`, defaults to `0.0`): keep instances whose video-level score is `>= threshold` (the
            official model keeps its top-k with no threshold, which is what AP evaluation wants; raise it for display).
        mask_threshold (`float`, defaults to the model config's `mask_threshold`, 0.5): pixel probability threshold.
        top_k (`int`, *optional*): keep at most this many instances per video (best scores first).
        clip_length (`int`, defaults to 36): frames per clip. A video no longer than this is one clip (the offline
            result); a longer one runs near-online over overlapping clips linked into tracks.
        stride (`int`, *optional*): frames between clip starts; defaults to 18 with the default clip length, else
            half the clip length. `0 < stride <= clip_length`.
        return_rle (`bool`, defaults to `False`): per-frame COCO RLEs under `segmentations` instead of dense `masks`
            (recommended for long or large videos: dense masks of a whole video take `T * H * W` bytes per instance).
        show_progress (`bool`, defaults to `False`): a progress bar over clips.
        progress_callback (`Callable[[int, int | None], None]`, *optional*): called after each clip with
            `(clips_done, total_clips)`, e.g. to feed a web UI's progress bar.

    Returns, per video, a list of instances sorted by descending score, each a dict with
        - `id` (`int`): track id; `label` (`str`): class name from `config.id2label`; `label_id` (`int`);
        - `score` (`float`): video-level score;
        - `boxes` (`torch.FloatTensor` of shape `(T, 4)`): xyxy in original pixels, NaN rows where absent;
        - `frame_valid` (`torch.BoolTensor` of shape `(T,)`): frames where the track has a prediction (its mask
          there may be empty);
        - `visible` (`torch.BoolTensor` of shape `(T,)`): frames where its mask is not empty, i.e. where the object
          is seen; use this for "frames a-b" (`visible.nonzero()`);
        - `masks` (`torch.BoolTensor` of shape `(T, H, W)`), or with `return_rle=True` `segmentations` (T RLE dicts
          `{"size": [H, W], "counts": str}`).
    A batch input returns a list with one such list per video. Videos of a batch run one after another.
    """

    _load_processor = False
    _load_image_processor = True
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            raise ValueError(
                "VideoInstanceSegmentationPipeline needs the TeViT image processor: pass `image_processor=` or load "
                "from a folder that has a preprocessor_config.json."
            )
        for name in ("num_selected_instances", "id2label"):
            if not hasattr(self.model.config, name):
                raise ValueError(
                    f"VideoInstanceSegmentationPipeline runs TeViT models; {type(self.model).__name__} with a "
                    f"{type(self.model.config).__name__} (no `{name}`) is not one."
                )

    def __call__(self, inputs: Any, **kwargs: Any) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Segment one video or a batch of videos (see the class docstring for inputs, parameters and outputs)."""
        videos, is_batch = split_video_inputs(inputs)
        results = [super(VideoInstanceSegmentationPipeline, self).__call__(_OneVideo(v), **kwargs) for v in videos]
        return results if is_batch else results[0]

    def _sanitize_parameters(
        self,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        top_k: int | None = None,
        clip_length: int | None = None,
        stride: int | None = None,
        return_rle: bool | None = None,
        show_progress: bool | None = None,
        progress_callback: Callable[[int, int | None], None] | None = None,
        **unused: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if unused:
            raise TypeError(f"VideoInstanceSegmentationPipeline got unexpected parameters: {sorted(unused)}.")
        forward_params: dict[str, Any] = {}
        postprocess_params: dict[str, Any] = {}
        if threshold is not None:
            if not 0.0 <= float(threshold) <= 1.0:
                raise ValueError(f"`threshold` must be in [0, 1], got {threshold}.")
            forward_params["threshold"] = float(threshold)
        if mask_threshold is not None:
            if not 0.0 <= float(mask_threshold) <= 1.0:
                raise ValueError(f"`mask_threshold` must be in [0, 1], got {mask_threshold}.")
            forward_params["mask_threshold"] = float(mask_threshold)
        if clip_length is not None or stride is not None:
            clip_length, stride = resolve_clip_schedule(clip_length, stride)
            forward_params["clip_length"] = clip_length
            forward_params["stride"] = stride
        if show_progress is not None:
            forward_params["show_progress"] = bool(show_progress)
        if progress_callback is not None:
            if not callable(progress_callback):
                raise ValueError(f"`progress_callback` must be callable, got {type(progress_callback).__name__}.")
            forward_params["progress_callback"] = progress_callback
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"`top_k` must be a positive int, got {top_k!r}.")
            postprocess_params["top_k"] = top_k
        if return_rle is not None:
            postprocess_params["return_rle"] = bool(return_rle)
        return {}, forward_params, postprocess_params

    def preprocess(self, inputs: _OneVideo | Any) -> dict[str, VideoSource]:
        video = inputs.video if isinstance(inputs, _OneVideo) else inputs
        return {"video": load_video_source(video)}

    def _forward(
        self,
        model_inputs: dict[str, VideoSource],
        threshold: float = 0.0,
        mask_threshold: float | None = None,
        clip_length: int = DEFAULT_CLIP_LENGTH,
        stride: int = DEFAULT_STRIDE,
        show_progress: bool = False,
        progress_callback: Callable[[int, int | None], None] | None = None,
    ) -> dict[str, Any]:
        source = model_inputs["video"]
        tracker = TeViTNearOnlineTracker(
            self.model,
            self.image_processor,
            clip_length=clip_length,
            stride=stride,
            threshold=threshold,
            mask_threshold=self.model.config.mask_threshold if mask_threshold is None else mask_threshold,
            show_progress=show_progress,
            progress_callback=progress_callback,
        )
        if source.num_frames is not None and source.num_frames > clip_length:
            logger.info(
                "%s has %d frames > clip_length=%d: near-online inference over overlapping clips (stride %d).",
                source.description,
                source.num_frames,
                clip_length,
                stride,
            )
        return {"tracks": _Tracks(tracker.track(source.frames, num_frames=source.num_frames))}

    def postprocess(
        self, model_outputs: dict[str, Any], top_k: int | None = None, return_rle: bool = False
    ) -> list[dict[str, Any]]:
        id2label = self.model.config.id2label
        instances = []
        for track in model_outputs["tracks"].tracks[:top_k]:
            label_id = int(track["label"])
            instance = {
                "id": int(track["id"]),
                "label": str(id2label.get(label_id, f"LABEL_{label_id}")),
                "label_id": label_id,
                "score": float(track["score"]),
                "boxes": track["boxes"],
                "frame_valid": track["frame_valid"],
                "visible": track["visible"],
            }
            if return_rle:
                # The tracker's own RLE dicts, not copies: a long video has tracks x frames of them (frames where a
                # track is absent share one empty RLE). Treat them as read-only.
                instance["segmentations"] = track["segmentations"]
            else:
                # Dense masks are decoded here only, when asked for (the tracks stay RLE up to this point).
                instance["masks"] = decode_masks_rle(track["segmentations"])
            instances.append(instance)
        return instances


PIPELINE_REGISTRY.register_pipeline(
    VIDEO_INSTANCE_SEGMENTATION_TASK, pipeline_class=VideoInstanceSegmentationPipeline, pt_model=AutoModel
)


def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` entry of a saved model's config.json (what `Pipeline.save_pretrained` writes), so that
    `pipeline("video-instance-segmentation", model=folder, trust_remote_code=True)` finds this class."""
    impl = f"{VideoInstanceSegmentationPipeline.__module__.rsplit('.', 1)[-1]}.{VideoInstanceSegmentationPipeline.__name__}"
    return {VIDEO_INSTANCE_SEGMENTATION_TASK: {"impl": impl, "pt": ["AutoModel"]}}


__all__ = [
    "VIDEO_INSTANCE_SEGMENTATION_TASK",
    "VideoInstanceSegmentationPipeline",
    "custom_pipelines_entry",
    "VideoSource",
    "load_video_source",
    "resolve_clip_schedule",
    "split_video_inputs",
]
