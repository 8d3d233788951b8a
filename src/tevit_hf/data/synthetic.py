"""A deterministic synthetic video-instance-segmentation dataset in the YouTube-VIS format.

Every video shows a few textured shapes on a textured noise background. A shape's class is its outline (circle,
square, triangle, ...) and, as a second cue, its fill pattern (stripes, dots, checker, ...); the two colours of every
instance are random, so colour alone never identifies the class (unless `class_colours` is set: then each class also
has its own main colour, an easier dataset for quick from-scratch training). Instances move linearly, grow or shrink, rotate,
enter and leave the frame and occlude each other by a random z-order. The annotation of an instance in a frame is
its *visible* part; it is `null` (segmentation, box and area) where the instance is fully outside the frame or fully
hidden behind others.

Layout written under `output_dir`:

    JPEGImages/<video_name>/00000.jpg ...   frames
    videos/<video_name>.mp4                  the same frames as a video (for the demo), optional
    annotations.json                         YouTube-VIS json, written last

`SyntheticSplits` is the train/val pair (`<root>/train`, `<root>/val`) that both `tevit-hf make-synthetic` and
`scripts/train.py --synthetic` write, with the same defaults, so a dataset made by one is reused by the other.

A video depends only on (`seed`, its index), so a larger dataset with the same seed starts with the same videos.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..masks_tevit import encode_masks_rle, rle_areas, rle_boxes_xywh
from ..video_io import write_video


logger = logging.getLogger(__name__)

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")
TEXTURES: tuple[str, ...] = ("stripes", "dots", "checker", "concentric", "grid", "speckle")
ANNOTATION_FILENAME = "annotations.json"
FRAMES_DIRNAME = "JPEGImages"
VIDEOS_DIRNAME = "videos"
MP4_CHOICES = ("all", "first", "none")
# Main colour of each class in `SHAPE_CLASSES` order when `SyntheticVisConfig.class_colours` is set.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (220, 40, 40),
    (40, 200, 60),
    (50, 80, 230),
    (235, 215, 40),
    (210, 50, 210),
    (40, 210, 220),
    (245, 140, 30),
    (240, 240, 240),
)


@dataclass(frozen=True)
class SyntheticVisConfig:
    """Everything that defines a synthetic dataset; two equal configs write byte-identical frames and json.

    Sizes are in pixels, speeds in pixels (or radians) per frame, shape radii as a fraction of the short side.
    """

    num_videos: int = 8
    num_frames: int = 8
    height: int = 64
    width: int = 96
    num_classes: int = 4
    max_instances: int = 3
    min_instances: int = 1
    seed: int = 0
    radius_range: tuple[float, float] = (0.12, 0.25)
    # Per-frame log growth of the radius: exp(+-0.05) is a 5% size change per frame.
    growth_range: tuple[float, float] = (-0.05, 0.05)
    angular_speed_range: tuple[float, float] = (-0.15, 0.15)
    # Fraction of the frame size a "staying" instance drifts over the whole video.
    stay_drift: float = 0.3
    # Probabilities of the motion modes: stay inside, enter the frame, leave the frame, cross it.
    motion_mode_probs: tuple[float, float, float, float] = (0.4, 0.25, 0.25, 0.1)
    # Texture periods across a shape's radius (more = finer pattern).
    texture_periods_range: tuple[float, float] = (1.5, 2.5)
    # Minimum L1 distance (0-765) between an instance's two colours so its pattern stays visible.
    min_colour_contrast: int = 150
    # Give every class its own main colour (`CLASS_COLOURS`, jittered by up to `class_colour_jitter` per channel) as
    # a third class cue: an easier dataset on which a small model trained from scratch learns the classes quickly.
    class_colours: bool = False
    class_colour_jitter: int = 40
    background_blob_cells: int = 8
    background_noise_std: float = 12.0
    frame_noise_std: float = 3.0
    jpeg_quality: int = 95
    fps: int = 6
    mp4: str = "all"
    max_scene_attempts: int = 100

    def __post_init__(self) -> None:
        _require(self.num_videos >= 1, f"num_videos must be >= 1, got {self.num_videos}")
        _require(self.num_frames >= 1, f"num_frames must be >= 1, got {self.num_frames}")
        _require(self.height >= 8 and self.width >= 8, f"frames must be at least 8x8, got {self.height}x{self.width}")
        _require(
            1 <= self.num_classes <= len(SHAPE_CLASSES),
            f"num_classes must be in [1, {len(SHAPE_CLASSES)}] (one per shape {SHAPE_CLASSES}), got {self.num_classes}",
        )
        _require(
            1 <= self.min_instances <= self.max_instances,
            f"need 1 <= min_instances <= max_instances, got {self.min_instances} and {self.max_instances}",
        )
        _require(self.mp4 in MP4_CHOICES, f"mp4 must be one of {MP4_CHOICES}, got {self.mp4!r}")
        _require(
            len(self.motion_mode_probs) == 4 and math.isclose(sum(self.motion_mode_probs), 1.0),
            "bad motion_mode_probs",
        )
        _require(0 <= self.jpeg_quality <= 100, f"jpeg_quality must be in [0, 100], got {self.jpeg_quality}")
        _require(self.fps > 0, f"fps must be > 0, got {self.fps}")

    @property
    def category_names(self) -> tuple[str, ...]:
        return SHAPE_CLASSES[: self.num_classes]

    @property
    def video_names(self) -> list[str]:
        return [video_name(index) for index in range(self.num_videos)]


@dataclass(frozen=True)
class InstanceTrack:
    """The parameters of one instance over a video; position at frame t is `start + t * velocity`."""

    category_index: int
    start_xy: tuple[float, float]
    velocity_xy: tuple[float, float]
    radius: float
    growth: float
    angle: float
    angular_speed: float
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    texture_periods: float


@dataclass
class SyntheticVideo:
    """One rendered video.

    frames: `(T, H, W, 3)` uint8 RGB. full_masks / visible_masks: `(N, T, H, W)` bool, the whole shape and the part
    not covered by instances above it. tracks: the N instances, in z-order (the last one is drawn on top).
    """

    frames: np.ndarray
    full_masks: np.ndarray
    visible_masks: np.ndarray
    tracks: list[InstanceTrack] = field(default_factory=list)


def video_name(index: int) -> str:
    return f"video_{index:05d}"


def frame_filename(frame_index: int) -> str:
    return f"{frame_index:05d}.jpg"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# ---------------------------------------------------------------------------------------------------------------
# Shapes and textures, on shape-local coordinates (u, v) normalised by the current radius: every shape lies in the
# unit disk, so a centre further than one radius outside the frame means the shape is fully outside.
# ---------------------------------------------------------------------------------------------------------------
_SQRT3 = math.sqrt(3.0)


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    return rho <= 0.42 + 0.58 * ((1 + np.cos(5 * theta)) / 2) ** 3


SHAPE_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda u, v: u**2 + v**2 <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.7,
    "triangle": lambda u, v: (v >= -0.5) & (_SQRT3 * u + v <= 1.0) & (-_SQRT3 * u + v <= 1.0),
    "star": _star,
    "ring": lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.55**2),
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
    "hexagon": lambda u, v: (np.abs(v) <= _SQRT3 / 2) & (_SQRT3 * np.abs(u) + np.abs(v) <= _SQRT3),
}

TEXTURE_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "stripes": lambda a, b: np.floor(2 * a) % 2 == 0,
    "dots": lambda a, b: (a - np.round(a)) ** 2 + (b - np.round(b)) ** 2 <= 0.3**2,
    "checker": lambda a, b: (np.floor(2 * a) + np.floor(2 * b)) % 2 == 0,
    "concentric": lambda a, b: np.floor(2 * np.hypot(a, b)) % 2 == 0,
    "grid": lambda a, b: np.minimum(np.abs(a - np.round(a)), np.abs(b - np.round(b))) <= 0.15,
    "speckle": lambda a, b: (np.sin(7.1 * a + 3.3 * b) * np.sin(5.3 * b - 2.9 * a)) > 0.25,
}


def texture_for_category(category_index: int) -> str:
    """The fill pattern of a class (fixed per class, a second cue besides the outline)."""
    return TEXTURES[category_index % len(TEXTURES)]


# ---------------------------------------------------------------------------------------------------------------
# Scene sampling
# ---------------------------------------------------------------------------------------------------------------
def _colour_pair_with(
    rng: np.random.Generator, first: np.ndarray, min_contrast: int
) -> tuple[tuple[int, int, int], ...]:
    """`first` and a random second colour at least `min_contrast` away from it (L1), so the pattern stays visible."""
    for _ in range(64):
        second = rng.integers(0, 256, size=3)
        if np.abs(first - second).sum() >= min_contrast:
            break
    else:  # practically unreachable; a complementary colour always has enough contrast
        second = 255 - first
    return tuple(int(c) for c in first), tuple(int(c) for c in second)


def _random_colour_pair(rng: np.random.Generator, min_contrast: int) -> tuple[tuple[int, int, int], ...]:
    return _colour_pair_with(rng, rng.integers(0, 256, size=3), min_contrast)


def _class_colour_pair(
    rng: np.random.Generator, category_index: int, jitter: int, min_contrast: int
) -> tuple[tuple[int, int, int], ...]:
    """The class's main colour (jittered) and a random second colour with enough contrast to show the pattern."""
    base = np.asarray(CLASS_COLOURS[category_index])
    return _colour_pair_with(rng, np.clip(base + rng.integers(-jitter, jitter + 1, size=3), 0, 255), min_contrast)


def _outside_point(rng: np.random.Generator, config: SyntheticVisConfig, margin: float) -> np.ndarray:
    """A centre at least `margin` pixels beyond a random edge of the frame."""
    side = int(rng.integers(4))
    offset = margin * rng.uniform(1.05, 1.4)
    if side == 0:
        return np.array([-offset, rng.uniform(0, config.height)])
    if side == 1:
        return np.array([config.width + offset, rng.uniform(0, config.height)])
    if side == 2:
        return np.array([rng.uniform(0, config.width), -offset])
    return np.array([rng.uniform(0, config.width), config.height + offset])


def _inside_point(rng: np.random.Generator, config: SyntheticVisConfig, margin: float) -> np.ndarray:
    margin_x, margin_y = min(margin, config.width / 2), min(margin, config.height / 2)
    return np.array([rng.uniform(margin_x, config.width - margin_x), rng.uniform(margin_y, config.height - margin_y)])


def _sample_track(rng: np.random.Generator, config: SyntheticVisConfig) -> InstanceTrack:
    short_side = min(config.height, config.width)
    radius = rng.uniform(*config.radius_range) * short_side
    growth = rng.uniform(*config.growth_range)
    last_frame = max(config.num_frames - 1, 1)
    max_radius = radius * math.exp(abs(growth) * last_frame)
    mode = rng.choice(4, p=np.asarray(config.motion_mode_probs))
    if mode == 0:  # stay: drift inside the frame
        start = _inside_point(rng, config, radius)
        drift = rng.uniform(-config.stay_drift, config.stay_drift, size=2) * np.array([config.width, config.height])
        end = start + drift
    elif mode == 1:  # enter
        start, end = _outside_point(rng, config, max_radius), _inside_point(rng, config, radius)
    elif mode == 2:  # leave
        start, end = _inside_point(rng, config, radius), _outside_point(rng, config, max_radius)
    else:  # cross: outside -> outside through the frame centre region
        start = _outside_point(rng, config, max_radius)
        end = 2 * _inside_point(rng, config, config.height / 3) - start
    category_index = int(rng.integers(config.num_classes))
    if config.class_colours:
        colours = _class_colour_pair(rng, category_index, config.class_colour_jitter, config.min_colour_contrast)
    else:
        colours = _random_colour_pair(rng, config.min_colour_contrast)
    return InstanceTrack(
        category_index=category_index,
        start_xy=(float(start[0]), float(start[1])),
        velocity_xy=(float((end[0] - start[0]) / last_frame), float((end[1] - start[1]) / last_frame)),
        radius=float(radius),
        growth=float(growth),
        angle=float(rng.uniform(0, 2 * math.pi)),
        angular_speed=float(rng.uniform(*config.angular_speed_range)),
        colours=colours,
        texture_periods=float(rng.uniform(*config.texture_periods_range)),
    )


def _render_background(rng: np.random.Generator, config: SyntheticVisConfig) -> np.ndarray:
    """`(H, W, 3)` float: a random base colour, smooth colour blobs and fine noise (static over the video)."""
    base = rng.uniform(40, 215, size=3)
    cells = rng.normal(0, 35, size=(config.background_blob_cells, config.background_blob_cells, 3))
    blobs = np.stack(
        [
            np.asarray(
                Image.fromarray(cells[..., channel].astype(np.float32)).resize(
                    (config.width, config.height), Image.Resampling.BICUBIC
                )
            )
            for channel in range(3)
        ],
        axis=-1,
    )
    fine = rng.normal(0, config.background_noise_std, size=(config.height, config.width, 3))
    return base + blobs + fine


def _draw_instance(
    track: InstanceTrack, frame_index: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Full mask `(H, W)` bool and texture selector `(H, W)` bool of an instance in a frame, or None if outside."""
    center_x = track.start_xy[0] + frame_index * track.velocity_xy[0]
    center_y = track.start_xy[1] + frame_index * track.velocity_xy[1]
    radius = track.radius * math.exp(track.growth * frame_index)
    # Only the shape's bounding window is evaluated: the shape lies in the disk of `radius`.
    x0, x1 = max(int(math.floor(center_x - radius)), 0), min(int(math.ceil(center_x + radius)) + 1, width)
    y0, y1 = max(int(math.floor(center_y - radius)), 0), min(int(math.ceil(center_y + radius)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    grid_y, grid_x = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    # Pixel centres at +0.5; y grows downwards so v = -dy keeps shapes upright before rotation.
    dx, dy = (grid_x + 0.5 - center_x) / radius, -(grid_y + 0.5 - center_y) / radius
    angle = track.angle + frame_index * track.angular_speed
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    u, v = cos_a * dx + sin_a * dy, -sin_a * dx + cos_a * dy
    category = SHAPE_CLASSES[track.category_index]
    window_mask = SHAPE_FUNCTIONS[category](u, v)
    window_texture = TEXTURE_FUNCTIONS[texture_for_category(track.category_index)](
        u * track.texture_periods, v * track.texture_periods
    )
    full_mask = np.zeros((height, width), dtype=bool)
    texture = np.zeros((height, width), dtype=bool)
    full_mask[y0:y1, x0:x1] = window_mask
    texture[y0:y1, x0:x1] = window_texture
    return full_mask, texture


def render_synthetic_video(config: SyntheticVisConfig, video_index: int) -> SyntheticVideo:
    """Sample and render video `video_index` of the dataset defined by `config` (deterministic).

    Returns frames `(T, H, W, 3)` uint8 and the full and visible masks `(N, T, H, W)` of the N instances that are
    visible in at least one frame, in z-order (bottom first).
    """
    rng = np.random.default_rng([config.seed, video_index])
    num_frames, height, width = config.num_frames, config.height, config.width
    for _ in range(config.max_scene_attempts):
        num_instances = int(rng.integers(config.min_instances, config.max_instances + 1))
        tracks = [_sample_track(rng, config) for _ in range(num_instances)]
        full_masks = np.zeros((num_instances, num_frames, height, width), dtype=bool)
        textures = np.zeros_like(full_masks)
        for instance_index, track in enumerate(tracks):
            for frame_index in range(num_frames):
                drawn = _draw_instance(track, frame_index, height, width)
                if drawn is not None:
                    full_masks[instance_index, frame_index], textures[instance_index, frame_index] = drawn
        # Visible part = full shape minus everything drawn above it (later in z-order).
        covered_from_above = np.zeros((num_frames, height, width), dtype=bool)
        visible_masks = np.zeros_like(full_masks)
        for instance_index in reversed(range(num_instances)):
            visible_masks[instance_index] = full_masks[instance_index] & ~covered_from_above
            covered_from_above |= full_masks[instance_index]
        keep = visible_masks.any(axis=(1, 2, 3))
        if keep.sum() >= config.min_instances:
            break
    else:
        raise RuntimeError(
            f"could not sample a scene with >= {config.min_instances} visible instances for video {video_index} "
            f"in {config.max_scene_attempts} attempts; use larger shapes or fewer min_instances"
        )

    background = _render_background(rng, config)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for frame_index in range(num_frames):
        canvas = background + rng.normal(0, config.frame_noise_std, size=background.shape)
        for instance_index, track in enumerate(tracks):  # bottom to top
            mask = full_masks[instance_index, frame_index]
            pattern = textures[instance_index, frame_index][mask]
            colour_a, colour_b = (np.asarray(c, dtype=np.float64) for c in track.colours)
            canvas[mask] = np.where(pattern[:, None], colour_a, colour_b)
        frames[frame_index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    # Instances hidden in every frame are dropped from the annotations; they are already covered in the pixels.
    return SyntheticVideo(
        frames=frames,
        full_masks=full_masks[keep],
        visible_masks=visible_masks[keep],
        tracks=[track for track, kept in zip(tracks, keep) if kept],
    )


# ---------------------------------------------------------------------------------------------------------------
# Annotations and files
# ---------------------------------------------------------------------------------------------------------------
def _instance_annotation(visible_masks: np.ndarray) -> dict:
    """Per-frame segmentations / bboxes / areas of one instance (`(T, H, W)` visible masks); null where absent."""
    present = visible_masks.any(axis=(1, 2))
    encoded = iter(encode_masks_rle(visible_masks[present]))
    segmentations, bboxes, areas = [], [], []
    for is_present in present:
        rle = next(encoded) if is_present else None
        segmentations.append(rle)
        if rle is None:
            bboxes.append(None)
            areas.append(None)
            continue
        bboxes.append([float(value) for value in rle_boxes_xywh([rle])[0]])
        areas.append(int(rle_areas([rle])[0]))
    return {"segmentations": segmentations, "bboxes": bboxes, "areas": areas}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _jpeg_bytes(frame: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def generate_synthetic_vis_dataset(
    output_dir: str | os.PathLike,
    num_videos: int = 8,
    num_frames: int = 8,
    height: int = 64,
    width: int = 96,
    num_classes: int = 4,
    max_instances: int = 3,
    seed: int = 0,
    mp4: str = "all",
    **overrides,
) -> Path:
    """Write a synthetic YouTube-VIS dataset under `output_dir` and return the path of its annotation json.

    Args:
        output_dir: dataset root; frames go to `JPEGImages/<video>/<frame>.jpg`, MP4s to `videos/<video>.mp4`.
        num_videos, num_frames, height, width: dataset and frame sizes.
        num_classes: number of shape classes used (category ids 1..num_classes, at most `len(SHAPE_CLASSES)`).
        max_instances: most instances per video (each video has 1..max_instances visible ones).
        seed: the only source of randomness; equal arguments give byte-identical frames and json.
        mp4: "all" (one MP4 per video), "first" (only the first video) or "none".
        **overrides: any other `SyntheticVisConfig` field.

    Files are written atomically (temporary file + rename) and the json last, so an existing json means a
    complete dataset.
    """
    config = SyntheticVisConfig(
        num_videos=num_videos,
        num_frames=num_frames,
        height=height,
        width=width,
        num_classes=num_classes,
        max_instances=max_instances,
        seed=seed,
        mp4=mp4,
        **overrides,
    )
    return write_synthetic_vis_dataset(config, output_dir)


def write_synthetic_vis_dataset(config: SyntheticVisConfig, output_dir: str | os.PathLike) -> Path:
    """Write the dataset defined by `config` under `output_dir`; returns the annotation json path."""
    output_dir = Path(output_dir)
    frames_root = output_dir / FRAMES_DIRNAME
    videos, annotations = [], []
    for video_index in tqdm(range(config.num_videos), desc="synthetic videos", disable=config.num_videos < 20):
        video = render_synthetic_video(config, video_index)
        name = video_name(video_index)
        file_names = [f"{name}/{frame_filename(frame_index)}" for frame_index in range(config.num_frames)]
        for frame, file_name in zip(video.frames, file_names):
            _atomic_write_bytes(frames_root / file_name, _jpeg_bytes(frame, config.jpeg_quality))
        if config.mp4 == "all" or (config.mp4 == "first" and video_index == 0):
            write_video(list(video.frames), output_dir / VIDEOS_DIRNAME / f"{name}.mp4", fps=config.fps)
        video_id = video_index + 1
        videos.append(
            {
                "id": video_id,
                "width": config.width,
                "height": config.height,
                "length": config.num_frames,
                "file_names": file_names,
            }
        )
        for track, visible in zip(video.tracks, video.visible_masks):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": video_id,
                    "category_id": track.category_index + 1,
                    "iscrowd": 0,
                    "width": config.width,
                    "height": config.height,
                    "length": 1,
                    **_instance_annotation(visible),
                }
            )
    categories = [
        {"id": index + 1, "name": name, "supercategory": "shape"} for index, name in enumerate(config.category_names)
    ]
    config_record = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}
    dataset = {
        "info": {
            "description": "tevit-hf synthetic video instance segmentation dataset (YouTube-VIS format)",
            "version": "1.0",
            "generator": "tevit_hf.data.synthetic",
            "config": config_record,
        },
        "licenses": [],
        "videos": videos,
        "annotations": annotations,
        "categories": categories,
    }
    annotation_path = output_dir / ANNOTATION_FILENAME
    _atomic_write_bytes(annotation_path, json.dumps(dataset).encode("utf-8"))
    logger.info(
        "wrote %d videos, %d instances, %d classes to %s", len(videos), len(annotations), len(categories), output_dir
    )
    return annotation_path


@dataclass(frozen=True)
class SyntheticSplits:
    """The synthetic train/val pair: the same distribution, different seeds (the val videos are unseen).

    The defaults are those of `tevit-hf make-synthetic` and `scripts/train.py --synthetic` alike.
    """

    num_train_videos: int = 64
    num_val_videos: int = 16
    num_frames: int = 8
    height: int = 96
    width: int = 128
    num_classes: int = 4
    max_instances: int = 3
    min_instances: int = 1
    seed: int = 0
    class_colours: bool = False
    mp4: str = "none"
    fps: int = 6

    def configs(self) -> dict[str, SyntheticVisConfig]:
        """`{"train": ..., "val": ...}`; each config is validated here, before anything is written."""
        common = asdict(self)
        num_videos = {name: common.pop(f"num_{name}_videos") for name in SPLIT_DIRNAMES}
        seed = common.pop("seed")
        return {
            name: SyntheticVisConfig(num_videos=num_videos[name], seed=seed + offset, **common)
            for name, offset in zip(SPLIT_DIRNAMES, (0, VAL_SEED_OFFSET))
        }


SPLIT_DIRNAMES = ("train", "val")
# The validation videos use another seed so that they are unseen during training.
VAL_SEED_OFFSET = 1_000_003
# Fields that change only the optional MP4 copies, not the frames or annotations a model trains on.
_MP4_ONLY_FIELDS = ("mp4", "fps")


def recorded_config(root: str | os.PathLike) -> dict | None:
    """The generator config recorded in `root`'s annotation json, or None where none is readable."""
    try:
        return json.loads((Path(root) / ANNOTATION_FILENAME).read_text(encoding="utf-8"))["info"]["config"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None


def config_differences(config: SyntheticVisConfig, recorded: dict) -> list[str]:
    """Fields (other than the MP4 copies') where `recorded` (see `recorded_config`) differs from `config`."""
    expected = json.loads(json.dumps(asdict(config), default=list))
    return [
        f"{key}: {recorded.get(key)!r} there, {value!r} asked"
        for key, value in expected.items()
        if key not in _MP4_ONLY_FIELDS and recorded.get(key) != value
    ]


__all__: Sequence[str] = [
    "SPLIT_DIRNAMES",
    "SyntheticSplits",
    "config_differences",
    "recorded_config",
    "CLASS_COLOURS",
    "SHAPE_CLASSES",
    "TEXTURES",
    "SyntheticVisConfig",
    "SyntheticVideo",
    "InstanceTrack",
    "render_synthetic_video",
    "generate_synthetic_vis_dataset",
    "write_synthetic_vis_dataset",
]
