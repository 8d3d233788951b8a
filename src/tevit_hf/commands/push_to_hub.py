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

With `--space` it builds a Gradio Space instead (`build_space_folder`): `app.py` (runs `tevit-hf app`),
`requirements.txt`, a README.md with the Space's YAML front matter (`sdk: gradio`), a copy of the tevit_hf package
(with the bundled demo model and sample) and, with `--model-dir`, that model as `model/`. Its dry run starts the
Space with `python app.py` from the folder alone, in a fresh process, and waits for the page (HTTP 200).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
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

# The Space folder (`--space`).
SPACE_APP_FILENAME = "app.py"
SPACE_REQUIREMENTS_FILENAME = "requirements.txt"
SPACE_PACKAGE_DIRNAME = "tevit_hf"
SPACE_MODEL_DIRNAME = "model"
SPACE_SDK = "gradio"
# Seconds allowed for the Space to serve its page in a fresh process (imports of torch, transformers and gradio).
SPACE_START_TIMEOUT_S = 300
PACKAGE_DIR = Path(__file__).resolve().parents[1]
DISTRIBUTION_NAME = "tevit-hf"


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
    repo_type: str = "model",
) -> Any:
    """Create the repository if needed and send every file of `folder` (README.md included) in one commit.

    Args:
        api: a `huggingface_hub.HfApi` (default: a new one with `token`); tests pass a recorder.
        repo_type: `model`, or `space` for a Space folder (created as a Gradio Space).
    Returns:
        The `CommitInfo` of the commit.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    files = list_upload_files(folder)
    if CARD_FILENAME not in files:
        raise UploadFolderError(
            f"{folder} has no {CARD_FILENAME}: refusing to publish a {repo_type} without its card."
        )
    api = api if api is not None else HfApi(token=token)
    space_options = {"space_sdk": SPACE_SDK} if repo_type == "space" else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **space_options)
    # README.md is an explicit operation of the same commit, so the real card (not a generated one) is published.
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message, repo_type=repo_type)
    logger.info("Uploaded %d files to %s", len(operations), repo_id)
    return commit


# ----------------------------------------------------------------------------------------------------------------
# The Space (`--space`)

_SPACE_APP_TEMPLATE = """\
\"\"\"TeViT video instance segmentation: the Gradio app of this Space (written by `scripts/push_to_hub.py --space`).

Runs `tevit-hf app` from the copy of the tevit_hf package in this folder; locally: `python app.py [--port N]`
(options: `python app.py --help`).
\"\"\"

import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # this folder's tevit_hf comes before any installed one

from tevit_hf.commands.app import main  # noqa: E402


# The model the page offers first: a folder of this Space, a Hub repo id, or `demo` (the bundled demo model).
DEFAULT_MODEL = {default_model!r}

if __name__ == "__main__":
    model = str(HERE / DEFAULT_MODEL) if (HERE / DEFAULT_MODEL).is_dir() else DEFAULT_MODEL
    sys.exit(main(["--model", model, *sys.argv[1:]]))
"""

_SPACE_README_BODY = """
# TeViT video instance segmentation

Upload a video (or pick the example) and TeViT ([Temporally Efficient Vision Transformer, CVPR
2022](https://arxiv.org/abs/2204.08412)) segments and tracks every object in it: the page shows the video with one
stable colour per track, a table of the tracks (class, score, first and last visible frame) and `results.json`
(per-frame boxes and COCO RLE masks) for download. Videos longer than the clip length run near-online over
overlapping clips linked into tracks.

Default model: `{default_model}`{default_model_note}. Type a saved TeViT folder or a Hub repo id in the
*Model* box to use another one (for example a model published with `scripts/push_to_hub.py`).

This folder was written by `scripts/push_to_hub.py --space` of tevit-hf, the Hugging Face Transformers port of
[TeViT](https://github.com/hustvl/TeViT): `app.py` runs `tevit-hf app` from the copy of the `tevit_hf` package next
to it. Run it locally with `pip install -r requirements.txt gradio=={gradio_version}` and `python app.py`.
"""


def build_space_folder(
    output_dir: str | os.PathLike,
    model_dir: str | os.PathLike | None = None,
    default_model: str = "demo",
    overwrite: bool = False,
) -> UploadFolder:
    """Build a Gradio Space folder: app.py, requirements.txt, README.md (Space front matter), the tevit_hf package.

    Args:
        output_dir: folder to build (built in a staging sibling and moved into place as one unit).
        model_dir: a saved TeViT folder to ship with the Space as `model/` (loaded strictly, saved as a Hub folder);
            it is then the page's default model.
        default_model: the page's default model when no `model_dir` is given: `demo` (the bundled demo model) or a
            Hub repo id.
        overwrite: replace an existing `output_dir`.
    """
    gradio_version = _gradio_version()
    requirements = space_requirements()
    with staged_directory(output_dir, overwrite=overwrite) as staging:
        # Symbolic links (the demo model's code) are copied as files: a Hub repository stores no links.
        shutil.copytree(
            PACKAGE_DIR, staging / SPACE_PACKAGE_DIRNAME, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        if model_dir is not None:
            model, processor = load_model_and_processor(model_dir)
            save_hub_folder(model, processor, staging / SPACE_MODEL_DIRNAME)
            default_model = SPACE_MODEL_DIRNAME
        (staging / SPACE_APP_FILENAME).write_text(
            _SPACE_APP_TEMPLATE.format(default_model=default_model), encoding="utf-8"
        )
        (staging / SPACE_REQUIREMENTS_FILENAME).write_text("\n".join(requirements) + "\n", encoding="utf-8")
        space_card(default_model, gradio_version).save(staging / CARD_FILENAME)
    files = list_upload_files(output_dir)
    logger.info("Built the Space folder %s: %d files", output_dir, len(files))
    return UploadFolder(Path(output_dir), files)


def _gradio_version() -> str:
    try:
        return importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError as error:
        raise TeViTError('--space needs Gradio (the Space\'s SDK version): pip install -e ".[app]"') from error


def space_requirements() -> list[str]:
    """The Space's requirements.txt lines: tevit-hf's own dependencies (its installed metadata, without extras).

    Gradio is not listed: a Space installs the `sdk_version` of its README.
    """
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION_NAME) or []
    except importlib.metadata.PackageNotFoundError as error:
        raise TeViTError(
            f"{DISTRIBUTION_NAME} is not installed, so its dependencies are unknown: pip install -e . first."
        ) from error
    return [requirement for requirement in requirements if "extra ==" not in requirement]


def space_card(default_model: str, gradio_version: str) -> Any:
    """The Space's README.md: `huggingface_hub.SpaceCard` with the Space configuration (`sdk: gradio`, ...)."""
    from huggingface_hub import SpaceCard, SpaceCardData

    is_repo_id = re.fullmatch(r"[\w.-]+/[\w.-]+", default_model) is not None
    data = SpaceCardData(
        title="TeViT video instance segmentation",
        sdk=SPACE_SDK,
        sdk_version=gradio_version,
        app_file=SPACE_APP_FILENAME,
        license="apache-2.0",
        models=[default_model] if is_repo_id else None,
        tags=[VIDEO_INSTANCE_SEGMENTATION_TASK, "tevit"],
        emoji="🎞️",
        colorFrom="indigo",
        colorTo="green",
        pinned=False,
        short_description="Segment and track every object of a video (TeViT, CVPR 2022)",
    )
    notes = {"demo": " (a small TeViT trained on synthetic shapes, bundled with tevit-hf)"}
    notes[SPACE_MODEL_DIRNAME] = " (the model folder shipped with this Space)"
    body = _SPACE_README_BODY.format(
        default_model=default_model, default_model_note=notes.get(default_model, ""), gradio_version=gradio_version
    )
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n{body}")


def validate_space_folder(folder: str | os.PathLike, fresh_process: bool = True) -> list[str]:
    """Check a Space folder; returns its file list.

    Checks: app.py, requirements.txt, the tevit_hf package with its bundled demo model and sample, a README.md whose
    front matter declares `sdk: gradio` and the app file, no symbolic links; with `fresh_process`, that
    `python app.py` started from the folder alone serves the page (`check_space_starts`).

    Raises:
        UploadFolderError: every problem found, in one message.
    """
    from huggingface_hub import SpaceCard

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Space folder {str(folder)!r} does not exist.")
    files = list_upload_files(folder)
    required = [
        SPACE_APP_FILENAME,
        SPACE_REQUIREMENTS_FILENAME,
        CARD_FILENAME,
        f"{SPACE_PACKAGE_DIRNAME}/__init__.py",
        f"{SPACE_PACKAGE_DIRNAME}/commands/app.py",
        f"{SPACE_PACKAGE_DIRNAME}/assets/demo_model/{CONFIG_FILENAME}",
        f"{SPACE_PACKAGE_DIRNAME}/assets/demo_sample/video.mp4",
    ]
    problems = [f"missing {name}" for name in required if name not in files]
    problems += [f"{path.relative_to(folder)} is a symbolic link" for path in folder.rglob("*") if path.is_symlink()]
    if CARD_FILENAME in files:
        data = SpaceCard.load(folder / CARD_FILENAME).data
        if data.sdk != SPACE_SDK:
            problems.append(f"{CARD_FILENAME} declares sdk {data.sdk!r}, expected {SPACE_SDK!r}")
        if data.app_file not in files:
            problems.append(f"{CARD_FILENAME} names app_file {data.app_file!r}, which the folder lacks")
    if not problems and fresh_process:
        problems += check_space_starts(folder)
    if problems:
        raise UploadFolderError(f"Space folder {folder} is not ready: " + "; ".join(problems) + ".")
    return files


def check_space_starts(folder: str | os.PathLike, timeout_s: float = SPACE_START_TIMEOUT_S) -> list[str]:
    """Start `python app.py` in `folder` in a fresh process (no PYTHONPATH, offline) on a free loopback port, wait
    for the page (HTTP 200), stop it. Returns the problems found: it did not serve the page, or it ran a tevit_hf
    from outside the folder."""
    folder = Path(folder).resolve()
    port = _free_port()
    environment = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, SPACE_APP_FILENAME, "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            served = _wait_for_page(f"http://127.0.0.1:{port}/", process, timeout_s)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.seek(0)
        output = log.read()
    if not served:
        how = f"exited with code {process.returncode}" if process.returncode not in (None, -15) else "timed out"
        return [f"`python {SPACE_APP_FILENAME}` did not serve its page ({how}):\n{output[-4000:]}"]
    package = re.search(r"tevit_hf [^ ]+ from (.+)$", output, re.MULTILINE)
    if package is None:
        return [f"`python {SPACE_APP_FILENAME}` did not report which tevit_hf it runs:\n{output[-2000:]}"]
    if not Path(package.group(1).strip()).resolve().is_relative_to(folder):
        return [f"`python {SPACE_APP_FILENAME}` ran the tevit_hf of {package.group(1).strip()}, not the folder's copy"]
    return []


def _wait_for_page(url: str, process: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Build, validate and upload a TeViT model repository (or, with --space, a Gradio Space) to the "
        "Hugging Face Hub.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model-dir",
        help="saved TeViT folder (config, safetensors, processor); required for a model repository; with --space, "
        "shipped with the Space as its default model (default there: the bundled demo model)",
    )
    parser.add_argument(
        "--model-card", help="model card markdown (e.g. model_cards/<variant>.md); required unless --space"
    )
    parser.add_argument("--repo-id", help="Hub repository, e.g. org/tevit-msgshift-b1-youtube-vis-2019")
    parser.add_argument(
        "--space",
        action="store_true",
        help="build a Gradio Space (app.py, requirements.txt, README.md, the tevit_hf package) instead of a model "
        "repository; its dry run starts `python app.py` in a fresh process",
    )
    parser.add_argument(
        "--space-model",
        default="demo",
        help="with --space and no --model-dir: the page's default model, `demo` (the bundled demo model) or a Hub "
        "repo id (default: demo)",
    )
    parser.add_argument("--output-dir", help="where to build the upload folder (default: a temporary folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.add_argument("--example-video", help="video for the example outputs (default: the bundled sample)")
    parser.add_argument("--no-examples", action="store_true", help="do not add example outputs")
    parser.add_argument("--dry-run", action="store_true", help="build and validate only; send nothing")
    parser.add_argument(
        "--skip-fresh-process-check",
        action="store_true",
        help="skip the load (with --space: the start of the app) in a new process",
    )
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="Hub token (default: the cached login / HF_TOKEN)")
    parser.add_argument("--commit-message", help="commit message (default: Upload TeViT model / Upload TeViT Space)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None, api: Any = None) -> int:
    """Entry point of `scripts/push_to_hub.py`; `api` replaces the Hub client (tests). User errors: one line, exit 1."""
    args = build_argument_parser().parse_args(argv)
    if not args.dry_run and not args.repo_id:
        raise SystemExit("--repo-id is required unless --dry-run")
    if not args.space and not (args.model_dir and args.model_card):
        raise SystemExit("--model-dir and --model-card are required (unless --space)")
    return run_with_error_layer("push_to_hub.py", lambda: _build_and_push(args, api), debug=args.debug)


def _build_and_push(args: argparse.Namespace, api: Any) -> int:
    temporary = None
    if args.output_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="tevit-upload-")
        output_dir = Path(temporary.name) / "upload"
    else:
        output_dir = Path(args.output_dir)
    what = "Space folder" if args.space else "Upload folder"
    try:
        if args.space:
            built = build_space_folder(output_dir, args.model_dir, args.space_model, overwrite=args.overwrite)
            files = validate_space_folder(built.path, fresh_process=not args.skip_fresh_process_check)
        else:
            built = build_upload_folder(
                args.model_dir,
                args.model_card,
                output_dir,
                example_video=args.example_video,
                with_examples=not args.no_examples,
                overwrite=args.overwrite,
            )
            files = validate_upload_folder(built.path, fresh_process=not args.skip_fresh_process_check)
        print(f"{what} {built.path} is valid ({len(files)} files):")
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
            commit_message=args.commit_message or ("Upload TeViT Space" if args.space else "Upload TeViT model"),
            repo_type="space" if args.space else "model",
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
    "build_space_folder",
    "build_upload_folder",
    "check_loads_without_tevit_hf",
    "check_space_starts",
    "list_upload_files",
    "main",
    "save_hub_folder",
    "space_card",
    "space_requirements",
    "upload_folder",
    "validate_model_card",
    "validate_space_folder",
    "validate_upload_folder",
]
