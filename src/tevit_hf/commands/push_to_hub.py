"""Build, validate and upload a Hub model repository for a TeViT model (logic of `scripts/push_to_hub.py`).

The upload folder holds everything a Hub user needs:

    config.json                 with `auto_map` (AutoConfig, AutoModel) and `custom_pipelines`
    model.safetensors           weights (never pickle)
    preprocessor_config.json    with `auto_map` (AutoImageProcessor)
    configuration_tevit.py, modeling_tevit.py, loss_tevit.py, ops_tevit.py, image_processing_tevit.py,
    pipeline_tevit.py, tracking_tevit.py, video_io.py      the self-contained Hub code set
    README.md                   the model card (from model_cards/)
    examples/sample_overlay.gif, examples/sample_results.json   the model run on the bundled sample video

so that `pipeline("video-instance-segmentation", model=repo_id, trust_remote_code=True)` works on a machine without
tevit_hf. `model.push_to_hub` would replace README.md by a generic card; here the folder, the real card included, is
sent as one explicit commit. `--dry-run` builds and validates the folder (including a load in a fresh Python process
where tevit_hf cannot be imported) and sends nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..argparse_help import DefaultsHelpFormatter
from ..errors import TeViTError, run_with_error_layer
from ..file_utils import staged_directory
from ..model_loading import (
    CONFIG_FILENAME,
    HUB_CODE_FILES,
    PICKLE_WEIGHT_SUFFIXES,
    PREPROCESSOR_CONFIG_FILENAME,
    check_weights_match_config,
    load_model_and_processor,
    safetensors_files,
)
from ..pipeline_tevit import VIDEO_INSTANCE_SEGMENTATION_TASK, VideoInstanceSegmentationPipeline
from ..training.model_card import HUB_PIPELINE_TAG


logger = logging.getLogger(__name__)

CARD_FILENAME = "README.md"
EXAMPLES_DIRNAME = "examples"
EXAMPLE_OVERLAY_FILENAME = "sample_overlay.gif"
EXAMPLE_RESULTS_FILENAME = "sample_results.json"
EXPECTED_AUTO_MAP = {
    "AutoConfig": "configuration_tevit.TeViTConfig",
    "AutoModel": "modeling_tevit.TeViTForVideoInstanceSegmentation",
}
EXPECTED_PROCESSOR_AUTO_MAP = {"AutoImageProcessor": "image_processing_tevit.TeViTImageProcessor"}
EXPECTED_PIPELINE_IMPL = "pipeline_tevit.VideoInstanceSegmentationPipeline"
REQUIRED_CARD_FIELDS = ("library_name", "pipeline_tag", "license", "tags", "datasets", "model-index")
REQUIRED_CARD_TAG = VIDEO_INSTANCE_SEGMENTATION_TASK
# Seconds allowed for the fresh-process load check (imports, remote-code copy, one tiny forward pass).
FRESH_PROCESS_TIMEOUT_S = 600
# Frames and size of the clip the fresh-process check runs through the pipeline.
_CHECK_CLIP_SHAPE = (2, 48, 64, 3)


class UploadFolderError(TeViTError, ValueError):
    """An upload folder that is incomplete or inconsistent (names every problem found)."""


@dataclass
class UploadFolder:
    """A built upload folder and the repository-relative paths of its files."""

    path: Path
    files: list[str]


def save_hub_folder(model: Any, image_processor: Any, folder: str | os.PathLike) -> Path:
    """Save a model and its processor as a Hub-loadable folder.

    `save_pretrained` of the model writes the safetensors weights, config.json with `auto_map` and `custom_pipelines`
    and the Hub code set; the processor's writes preprocessor_config.json with its `auto_map`.
    """
    model.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return Path(folder)


def build_upload_folder(
    model_dir: str | os.PathLike,
    card_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    example_video: str | os.PathLike | None = None,
    with_examples: bool = True,
    overwrite: bool = False,
) -> UploadFolder:
    """Build the complete upload folder for the model saved in `model_dir` with the card `card_path`.

    Args:
        model_dir: a saved TeViT folder (loaded strictly: safetensors, config and weights must agree).
        card_path: the model card (markdown with YAML metadata), copied as README.md after its metadata is checked.
        output_dir: folder to build; must not exist unless `overwrite`. Built in a temporary sibling folder and
            renamed into place, so a failed build leaves nothing half-written.
        example_video: video the example outputs are made from (default: the bundled demo sample video).
        with_examples: run the model on the example video and add `examples/` (overlay GIF + results json).
        overwrite: replace an existing `output_dir`.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"Upload folder {str(output_dir)!r} already exists (pass overwrite=True / --overwrite).")
    validate_model_card(card_path)
    model, processor = load_model_and_processor(model_dir)
    with staged_directory(output_dir, overwrite=overwrite) as staging:
        save_hub_folder(model, processor, staging)
        shutil.copyfile(card_path, staging / CARD_FILENAME)
        if with_examples:
            _write_examples(model, processor, staging / EXAMPLES_DIRNAME, example_video)
    files = list_upload_files(output_dir)
    logger.info("Built %s: %d files", output_dir, len(files))
    return UploadFolder(output_dir, files)


def _write_examples(model: Any, processor: Any, examples_dir: Path, example_video: str | os.PathLike | None) -> None:
    from .demo import bundled_sample_video
    from .predict import predict_video

    video = Path(example_video) if example_video is not None else bundled_sample_video()
    pipe = VideoInstanceSegmentationPipeline(model=model, image_processor=processor, device=model.device)
    prediction = predict_video(
        pipe, video, examples_dir, overlay_formats=("gif",), model_name=None, show_progress=False
    )
    os.replace(prediction.results_path, examples_dir / EXAMPLE_RESULTS_FILENAME)
    os.replace(prediction.overlay_paths[0], examples_dir / EXAMPLE_OVERLAY_FILENAME)


def list_upload_files(folder: str | os.PathLike) -> list[str]:
    """Repository-relative POSIX paths of every file under `folder`, sorted (hidden files excluded)."""
    folder = Path(folder)
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def validate_model_card(card_path: str | os.PathLike) -> dict[str, Any]:
    """Parse a card with `huggingface_hub.ModelCard` and check the metadata the Hub needs; returns the metadata.

    Raises:
        UploadFolderError: missing fields, wrong pipeline tag, missing `video-instance-segmentation` tag, model-index
            without results, or a card that still has TODO markers.
    """
    from huggingface_hub import ModelCard

    card_path = Path(card_path)
    if not card_path.is_file():
        raise FileNotFoundError(f"Model card {str(card_path)!r} does not exist.")
    card = ModelCard.load(card_path)
    metadata = card.data.to_dict()
    problems = [f"missing metadata field `{name}`" for name in REQUIRED_CARD_FIELDS if not metadata.get(name)]
    if metadata.get("pipeline_tag") not in (None, HUB_PIPELINE_TAG):
        problems.append(f"pipeline_tag is {metadata['pipeline_tag']!r}, expected {HUB_PIPELINE_TAG!r}")
    if metadata.get("tags") and REQUIRED_CARD_TAG not in metadata["tags"]:
        problems.append(f"tags {metadata['tags']} lack {REQUIRED_CARD_TAG!r}")
    if metadata.get("model-index") and not card.data.eval_results:
        problems.append("model-index has no parsable results")
    if "TODO" in card.content:
        problems.append("the card still contains TODO markers (fill them in before publishing)")
    if problems:
        raise UploadFolderError(f"Model card {card_path}: " + "; ".join(problems) + ".")
    return metadata


def validate_upload_folder(folder: str | os.PathLike, fresh_process: bool = True) -> list[str]:
    """Check an upload folder; returns its file list.

    Checks: required files (config, safetensors weights, processor config, card, the Hub code set), no pickle
    weights, `auto_map` and `custom_pipelines` entries, config/weights agreement, card metadata, and (with
    `fresh_process`) that the folder loads with AutoConfig / AutoModel / AutoImageProcessor / pipeline and
    `trust_remote_code=True` in a new Python process where `import tevit_hf` fails, offline, and runs a clip.

    Raises:
        UploadFolderError: every problem found, in one message.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Upload folder {str(folder)!r} does not exist.")
    files = list_upload_files(folder)
    problems = []
    required = [CONFIG_FILENAME, PREPROCESSOR_CONFIG_FILENAME, CARD_FILENAME, *HUB_CODE_FILES]
    problems += [f"missing {name}" for name in required if name not in files]
    problems += [f"pickle weights {name} (only safetensors are published)" for name in files if _is_pickle(name)]
    try:
        safetensors_files(folder)
    except ValueError as error:
        problems.append(str(error))
    if CONFIG_FILENAME in files:
        config = json.loads((folder / CONFIG_FILENAME).read_text(encoding="utf-8"))
        problems += _auto_map_problems(config.get("auto_map") or {}, EXPECTED_AUTO_MAP, CONFIG_FILENAME)
        pipeline_entry = (config.get("custom_pipelines") or {}).get(VIDEO_INSTANCE_SEGMENTATION_TASK)
        if not pipeline_entry or pipeline_entry.get("impl") != EXPECTED_PIPELINE_IMPL:
            problems.append(
                f"{CONFIG_FILENAME} custom_pipelines[{VIDEO_INSTANCE_SEGMENTATION_TASK!r}] is {pipeline_entry!r}, "
                f"expected impl {EXPECTED_PIPELINE_IMPL!r}"
            )
        elif list(pipeline_entry.get("pt") or []) != ["AutoModel"]:
            problems.append(
                f"{CONFIG_FILENAME} custom pipeline `pt` is {pipeline_entry.get('pt')}, expected AutoModel"
            )
    if PREPROCESSOR_CONFIG_FILENAME in files:
        processor_config = json.loads((folder / PREPROCESSOR_CONFIG_FILENAME).read_text(encoding="utf-8"))
        problems += _auto_map_problems(
            processor_config.get("auto_map") or {}, EXPECTED_PROCESSOR_AUTO_MAP, PREPROCESSOR_CONFIG_FILENAME
        )
    if CARD_FILENAME in files:
        try:
            validate_model_card(folder / CARD_FILENAME)
        except ValueError as error:
            problems.append(str(error))
    if not problems:
        try:
            check_weights_match_config(folder)
        except ValueError as error:
            problems.append(str(error))
    if not problems and fresh_process:
        problems += check_loads_without_tevit_hf(folder)
    if problems:
        raise UploadFolderError(f"Upload folder {folder} is not ready: " + "; ".join(problems) + ".")
    return files


def _is_pickle(name: str) -> bool:
    return Path(name).suffix.lower() in PICKLE_WEIGHT_SUFFIXES


def _auto_map_problems(auto_map: dict[str, Any], expected: dict[str, str], filename: str) -> list[str]:
    return [
        f"{filename} auto_map[{key!r}] is {auto_map.get(key)!r}, expected {value!r}"
        for key, value in expected.items()
        if auto_map.get(key) != value
    ]


# Runs in a fresh interpreter: makes `import tevit_hf` fail, then loads the folder only through remote code.
_FRESH_PROCESS_CHECK = textwrap.dedent(
    """
    import json, sys
    sys.modules["tevit_hf"] = None  # `import tevit_hf` now raises ImportError
    try:
        import tevit_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("tevit_hf is importable: the check would not prove anything")
    import numpy as np
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, pipeline

    folder, task, clip_shape = sys.argv[1], sys.argv[2], tuple(json.loads(sys.argv[3]))
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    segmenter = pipeline(task, model=folder, trust_remote_code=True, device="cpu")
    instances = segmenter(np.zeros(clip_shape, dtype=np.uint8), return_rle=True)
    classes = [type(config), type(model), type(processor), type(segmenter), type(segmenter.model)]
    print(json.dumps({
        "modules": [cls.__module__ for cls in classes],
        "tevit_hf_loaded": any(name.split(".")[0] == "tevit_hf" for name in sys.modules if sys.modules[name]),
        "num_instances": len(instances),
        "num_frames": len(instances[0]["segmentations"]) if instances else clip_shape[0],
    }))
    """
)


def check_loads_without_tevit_hf(folder: str | os.PathLike, timeout_s: float = FRESH_PROCESS_TIMEOUT_S) -> list[str]:
    """Load `folder` with remote code in a fresh Python process where tevit_hf cannot be imported, offline.

    Returns the problems found (empty when the folder loaded, every class came from the folder's code, and the
    pipeline segmented a blank clip).
    """
    folder = Path(folder).resolve()
    with tempfile.TemporaryDirectory(prefix="tevit-hub-check-") as modules_cache:
        environment = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_MODULES_CACHE": modules_cache,
            "PYTHONPATH": "",
            "TRANSFORMERS_VERBOSITY": "error",
        }
        completed = subprocess.run(
            [sys.executable, "-c", _FRESH_PROCESS_CHECK, str(folder), VIDEO_INSTANCE_SEGMENTATION_TASK,
             json.dumps(_CHECK_CLIP_SHAPE)],
            capture_output=True,
            text=True,
            env=environment,
            cwd=modules_cache,  # not a folder from which tevit_hf could be imported
            timeout=timeout_s,
        )  # fmt: skip
    if completed.returncode != 0:
        return [f"loading with trust_remote_code=True without tevit_hf failed:\n{completed.stderr[-4000:]}"]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    problems = [
        f"class from {module!r} instead of the folder's code"
        for module in report["modules"]
        if not module.startswith("transformers_modules.")
    ]
    if report["tevit_hf_loaded"]:
        problems.append("tevit_hf was imported in the fresh process")
    if report["num_frames"] != _CHECK_CLIP_SHAPE[0]:
        problems.append(f"the pipeline returned {report['num_frames']} frames for a {_CHECK_CLIP_SHAPE[0]}-frame clip")
    return problems


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    api: Any = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload TeViT model",
) -> Any:
    """Create the repository if needed and send every file of `folder` (README.md included) in one commit.

    Args:
        api: a `huggingface_hub.HfApi` (default: a new one with `token`); tests pass a recorder.
    Returns:
        The `CommitInfo` of the commit.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    files = list_upload_files(folder)
    if CARD_FILENAME not in files:
        raise UploadFolderError(f"{folder} has no {CARD_FILENAME}: refusing to publish a model without its card.")
    api = api if api is not None else HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    # README.md is an explicit operation of the same commit, so the real card (not a generated one) is published.
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message, repo_type="model")
    logger.info("Uploaded %d files to %s", len(operations), repo_id)
    return commit


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Build, validate and upload a TeViT model repository to the Hugging Face Hub.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--model-dir", required=True, help="saved TeViT folder (config, safetensors, processor)")
    parser.add_argument("--model-card", required=True, help="model card markdown (e.g. model_cards/<variant>.md)")
    parser.add_argument("--repo-id", help="Hub repository, e.g. org/tevit-msgshift-b1-youtube-vis-2019")
    parser.add_argument("--output-dir", help="where to build the upload folder (default: a temporary folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.add_argument("--example-video", help="video for the example outputs (default: the bundled sample)")
    parser.add_argument("--no-examples", action="store_true", help="do not add example outputs")
    parser.add_argument("--dry-run", action="store_true", help="build and validate only; send nothing")
    parser.add_argument("--skip-fresh-process-check", action="store_true", help="skip the load in a new process")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="Hub token (default: the cached login / HF_TOKEN)")
    parser.add_argument("--commit-message", default="Upload TeViT model", help="message of the Hub commit")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    """Entry point of `scripts/push_to_hub.py`; `api` replaces the Hub client (tests). User errors: one line, exit 1."""
    args = build_argument_parser().parse_args(argv)
    if not args.dry_run and not args.repo_id:
        raise SystemExit("--repo-id is required unless --dry-run")
    return run_with_error_layer("push_to_hub.py", lambda: _build_and_push(args, api), debug=args.debug)


def _build_and_push(args: argparse.Namespace, api: Any) -> int:
    temporary = None
    if args.output_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="tevit-upload-")
        output_dir = Path(temporary.name) / "upload"
    else:
        output_dir = Path(args.output_dir)
    try:
        built = build_upload_folder(
            args.model_dir,
            args.model_card,
            output_dir,
            example_video=args.example_video,
            with_examples=not args.no_examples,
            overwrite=args.overwrite,
        )
        files = validate_upload_folder(built.path, fresh_process=not args.skip_fresh_process_check)
        print(f"Upload folder {built.path} is valid ({len(files)} files):")
        for name in files:
            print(f"  {name}")
        if args.dry_run:
            print("Dry run: nothing was uploaded.")
            return 0
        commit = upload_folder(
            built.path,
            args.repo_id,
            api=api,
            token=args.token,
            private=args.private,
            commit_message=args.commit_message,
        )
        print(f"Uploaded to {args.repo_id}: {getattr(commit, 'commit_url', commit)}")
        return 0
    finally:
        if temporary is not None:
            temporary.cleanup()


__all__ = [
    "HUB_CODE_FILES",
    "UploadFolder",
    "UploadFolderError",
    "build_upload_folder",
    "check_loads_without_tevit_hf",
    "list_upload_files",
    "main",
    "save_hub_folder",
    "upload_folder",
    "validate_model_card",
    "validate_upload_folder",
]
