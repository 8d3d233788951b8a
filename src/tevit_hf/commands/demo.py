"""`tevit-hf demo`: segment a video with a small TeViT out of the box.

    tevit-hf demo [--output-dir demo_output]                  the bundled sample video and demo model
    tevit-hf demo --video FILE --model DIR [--annotations GT]  your own video (and optional YouTube-VIS ground truth)

With no arguments it runs the bundled demo model (trained by `scripts/train.py` on synthetic data, see
`model_cards/tevit-synthetic-demo.md`) on the bundled sample video (a held-out video of the same synthetic generator,
with its ground truth), writes `results.json`, `overlay.mp4` and `overlay.gif`, prints a summary table, and scores
the video AP against the ground truth (`metrics.json`).

The bundled files live in `tevit_hf/assets/` (package data); `write_demo_sample` regenerates the sample video.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .predict import add_inference_arguments, results_to_youtube_vis, run_inference_arguments


logger = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
SAMPLE_DIRNAME = "demo_sample"
SAMPLE_VIDEO_FILENAME = "video.mp4"
SAMPLE_ANNOTATIONS_FILENAME = "annotations.json"
DEMO_MODEL_DIRNAME = "demo_model"
METRICS_FILENAME = "metrics.json"
DEMO_OVERLAY_FORMATS = ("mp4", "gif")
MAX_BUNDLED_MODEL_BYTES = 10 * 1024 * 1024
# The bundled sample: one video of the synthetic generator (`tevit_hf.data.synthetic`) with the frame size, classes
# and instance count of the demo model's training data (`scripts/train.py --synthetic` defaults), drawn with a seed
# that the training and validation splits (seeds 0 and 1_000_003) do not use. Seed 20240614 gives three instances
# of three classes, two of which enter or leave the frame; 48 frames exceed one 36-frame clip, so the demo also
# shows the near-online linking of overlapping clips.
DEMO_SAMPLE_SPEC: dict[str, Any] = {
    "num_videos": 1,
    "num_frames": 48,
    "height": 96,
    "width": 128,
    "num_classes": 4,
    "max_instances": 3,
    "seed": 20240614,
    # The demo model's training data gives each class its own main colour (`make train-synthetic`).
    "class_colours": True,
}


def bundled_sample_video() -> Path:
    """Path of the bundled sample video (`FileNotFoundError` if the package was installed without its data)."""
    return _existing(ASSETS_DIR / SAMPLE_DIRNAME / SAMPLE_VIDEO_FILENAME, "sample video")


def bundled_sample_annotations() -> Path:
    """Path of the bundled sample video's YouTube-VIS ground truth."""
    return _existing(ASSETS_DIR / SAMPLE_DIRNAME / SAMPLE_ANNOTATIONS_FILENAME, "sample annotations")


def bundled_demo_model_dir() -> Path:
    """Folder of the bundled demo model (`FileNotFoundError` naming the fix when it is not bundled)."""
    folder = ASSETS_DIR / DEMO_MODEL_DIRNAME
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"No bundled demo model in {folder}. Pass --model DIR with a saved TeViT folder (for example one trained "
            "on synthetic data with `accelerate launch scripts/train.py --synthetic ...`)."
        )
    return folder


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"The bundled {what} {path} is missing (is tevit-hf installed with its package data?). "
            "Pass --video FILE to use your own video."
        )
    return path


def write_demo_sample(output_dir: str | os.PathLike, **overrides: Any) -> tuple[Path, Path]:
    """Generate the sample video and its ground truth with the synthetic generator (`DEMO_SAMPLE_SPEC`).

    Returns:
        `(video_path, annotations_path)` in `output_dir` (`video.mp4`, `annotations.json`).
    """
    from ..data.synthetic import VIDEOS_DIRNAME, generate_synthetic_vis_dataset, video_name

    spec = {**DEMO_SAMPLE_SPEC, **overrides}
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tevit-demo-sample-") as scratch:
        annotation_path = generate_synthetic_vis_dataset(scratch, mp4="first", **spec)
        video_path = output_dir / SAMPLE_VIDEO_FILENAME
        shutil.copyfile(Path(scratch) / VIDEOS_DIRNAME / f"{video_name(0)}.mp4", video_path)
        annotations = json.loads(Path(annotation_path).read_text(encoding="utf-8"))
        annotations["videos"] = annotations["videos"][:1]
        first_video_id = annotations["videos"][0]["id"]
        annotations["annotations"] = [a for a in annotations["annotations"] if a["video_id"] == first_video_id]
    annotations_path = output_dir / SAMPLE_ANNOTATIONS_FILENAME
    from ..file_utils import write_json_atomic

    write_json_atomic(annotations_path, annotations)
    return video_path, annotations_path


def bundle_demo_model(
    model_dir: str | os.PathLike, destination: str | os.PathLike | None = None, weights_dtype: str | None = None
) -> Path:
    """Bundle a trained model into the package assets as a complete Hub folder.

    The folder is loaded strictly and saved again with `save_pretrained` (weights, config.json with `auto_map` and
    `custom_pipelines`, processor config). The Hub code files are relative symbolic links to the package's own
    modules, so the bundle always carries the current code and the repository holds no copy of it (a wheel stores
    the linked files). `weights_dtype="bfloat16"` stores the weights in bfloat16 (half the bytes) while config.json
    keeps float32 as the model's dtype, so every loader (`from_pretrained`, AutoModel, the pipeline, the CLI) runs
    it in float32 unless the caller asks for another dtype. Only models under `MAX_BUNDLED_MODEL_BYTES` are bundled.
    """
    import torch

    from ..file_utils import staged_directory, write_json_atomic
    from ..model_loading import CONFIG_FILENAME, HUB_CODE_FILES, load_model_and_processor

    model, processor = load_model_and_processor(model_dir, dtype=torch.float32)
    destination = Path(destination) if destination is not None else ASSETS_DIR / DEMO_MODEL_DIRNAME
    with staged_directory(destination, overwrite=True) as staging:
        if weights_dtype is not None:
            model.to(getattr(torch, weights_dtype))
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        config = json.loads((staging / CONFIG_FILENAME).read_text(encoding="utf-8"))
        write_json_atomic(staging / CONFIG_FILENAME, {**config, "dtype": "float32"})
        total = sum(file.stat().st_size for file in staging.iterdir())
        if total >= MAX_BUNDLED_MODEL_BYTES:
            raise ValueError(
                f"{model_dir} holds {total / 1e6:.1f} MB of model files; only models under "
                f"{MAX_BUNDLED_MODEL_BYTES / 1e6:.0f} MB are bundled with the package."
            )
        package_dir = Path(__file__).resolve().parents[1]
        for name in HUB_CODE_FILES:
            (staging / name).unlink()
            (staging / name).symlink_to(os.path.relpath(package_dir / name, destination))
    logger.info("Bundled %s (%.1f MB) into %s", model_dir, total / 1e6, destination)
    return destination


def make_demo_assets(
    model_dir: str | os.PathLike | None = None,
    write_sample: bool = True,
    weights_dtype: str | None = None,
    **sample_overrides: Any,
) -> int:
    """Regenerate the bundled sample and bundle `model_dir` as the demo model; entry of make_demo_assets.py.

    With a model, the sample uses the model's classes (which must be the generator's first `num_classes` shapes)
    unless `num_classes` is given. `sample_overrides` change `DEMO_SAMPLE_SPEC` fields (e.g. `seed`).
    """
    if model_dir is not None and "num_classes" not in sample_overrides:
        sample_overrides["num_classes"] = synthetic_num_classes(model_dir)
    if write_sample:
        video, annotations = write_demo_sample(ASSETS_DIR / SAMPLE_DIRNAME, **sample_overrides)
        print(f"sample video: {video}\nground truth: {annotations}")
    if model_dir is not None:
        print(f"demo model: {bundle_demo_model(model_dir, weights_dtype=weights_dtype)}")
    return 0


def synthetic_num_classes(model_dir: str | os.PathLike) -> int:
    """Number of synthetic shape classes a model was trained on (its class names must be the generator's first ones)."""
    from ..data.synthetic import SHAPE_CLASSES

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    names = [str(config["id2label"][key]) for key in sorted(config["id2label"], key=int)]
    if names != list(SHAPE_CLASSES[: len(names)]):
        raise ValueError(
            f"{model_dir} predicts {names}, not the synthetic generator's classes {list(SHAPE_CLASSES)} in order: "
            "it was not trained on `--synthetic` data, so the demo sample cannot be matched to it."
        )
    return len(names)


def evaluate_results(payload: Mapping[str, Any], annotations: str | os.PathLike) -> dict[str, Any]:
    """YouTube-VIS AP of a `results.json` document for a one-video ground-truth file."""
    from ..evaluation import evaluate_youtube_vis
    from ..image_processing_tevit import map_labels_to_categories

    ground_truth = json.loads(Path(annotations).read_text(encoding="utf-8"))
    if len(ground_truth["videos"]) != 1:
        raise ValueError(
            f"{annotations} describes {len(ground_truth['videos'])} videos; the demo scores one video, so the "
            "ground truth must hold exactly the one video that was segmented."
        )
    video = ground_truth["videos"][0]
    if int(video["length"]) != int(payload["num_frames"]):
        raise ValueError(
            f"{annotations} has {video['length']} frames for video {video['id']} but the prediction has "
            f"{payload['num_frames']}: they do not describe the same video."
        )
    # The project's one label rule, as `tevit-hf evaluate` uses it.
    mapping = map_labels_to_categories(payload["id2label"], ground_truth["categories"])
    results = results_to_youtube_vis(payload, video_id=int(video["id"]), label_to_category_id=mapping)
    return evaluate_youtube_vis(ground_truth, results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", help="video file or frame folder (default: the bundled sample video)")
    parser.add_argument("--model", help="saved TeViT folder (default: the bundled demo model)")
    parser.add_argument(
        "--annotations",
        help="YouTube-VIS ground truth of the video, to print its AP (default: the bundled sample's, with no --video)",
    )
    add_inference_arguments(parser, default_output_dir="demo_output")


def run(args: argparse.Namespace) -> int:
    from ..evaluation import format_metrics_table
    from ..file_utils import write_json_atomic

    model_dir = Path(args.model) if args.model else bundled_demo_model_dir()
    video = Path(args.video) if args.video else bundled_sample_video()
    annotations = args.annotations or (None if args.video else bundled_sample_annotations())
    scored: dict[str, Any] = {}

    def write_metrics(folder: Path, prediction: Any) -> None:
        if annotations is not None:
            scored["metrics"] = evaluate_results(prediction.payload, annotations)
            write_json_atomic(folder / METRICS_FILENAME, scored["metrics"])

    prediction = run_inference_arguments(
        args, model_dir, video, default_overlay_formats=DEMO_OVERLAY_FORMATS, extra_outputs=write_metrics
    )
    if "metrics" in scored:
        print(f"\nYouTube-VIS metrics against {annotations}:\n{format_metrics_table(scored['metrics'])}")
        print(f"\nmetrics: {Path(args.output_dir) / METRICS_FILENAME}")
    print(f"results: {prediction.results_path}")
    for path in prediction.overlay_paths:
        print(f"overlay: {path}")
    return 0


__all__ = [
    "DEMO_SAMPLE_SPEC",
    "add_arguments",
    "bundle_demo_model",
    "bundled_demo_model_dir",
    "bundled_sample_annotations",
    "bundled_sample_video",
    "evaluate_results",
    "make_demo_assets",
    "run",
    "synthetic_num_classes",
    "write_demo_sample",
]
