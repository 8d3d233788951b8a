"""Data for tevit-hf: YouTube-VIS/OVIS loading through `datasets`, training clip sampling and augmentation, collate,
and the synthetic VIS dataset generator.

Library-only (not part of the Hub file set): it may import the Hub modules, never the other way round.

    dataset, info = load_youtube_vis("train.json", frames_dir="train/JPEGImages")
    config = TeViTConfig(id2label=info.id2label, ...)
    clips = YouTubeVISClipDataset(dataset, clip_length=5, seed=0)
    loader = DataLoader(clips, batch_size=2, shuffle=True, num_workers=2, collate_fn=ClipCollator())
"""

from .clip_dataset import YouTubeVISClipDataset, build_clip_sample
from .clip_sampling import SAMPLING_MODES, annotated_frame_indices, build_sampling_items, sample_clip_frames
from .collate import ClipCollator, collate_clips
from .synthetic import SHAPE_CLASSES, SyntheticVisConfig, generate_synthetic_vis_dataset, render_synthetic_video
from .transforms import DEFAULT_TRAIN_SCALES, SCALE_MODES, ClipTransform, sample_clip_transform
from .youtube_vis import (
    VIS_VIDEO_FEATURES,
    VisDataError,
    VisDatasetInfo,
    decode_segmentation,
    load_video_frames,
    load_youtube_vis,
)


__all__ = [
    "DEFAULT_TRAIN_SCALES",
    "SAMPLING_MODES",
    "SCALE_MODES",
    "SHAPE_CLASSES",
    "VIS_VIDEO_FEATURES",
    "ClipCollator",
    "ClipTransform",
    "SyntheticVisConfig",
    "VisDataError",
    "VisDatasetInfo",
    "YouTubeVISClipDataset",
    "annotated_frame_indices",
    "build_clip_sample",
    "build_sampling_items",
    "collate_clips",
    "decode_segmentation",
    "generate_synthetic_vis_dataset",
    "load_video_frames",
    "load_youtube_vis",
    "render_synthetic_video",
    "sample_clip_frames",
    "sample_clip_transform",
]
