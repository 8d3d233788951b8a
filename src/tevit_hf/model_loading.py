"""Load a saved TeViT folder strictly: safetensors only, and config and weights must agree.

`transformers` loads a folder whose config and weights disagree with only a warning when keys are missing (they are
randomly initialised) and raises a generic error when shapes differ. The CLI commands and the Hub tooling load
through `load_model_and_processor`, which checks the folder first and names the file, the keys and the shapes at
fault. Library-only (not part of the Hub file set).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoImageProcessor, AutoModel
from transformers.dynamic_module_utils import get_relative_import_files

from . import image_processing_tevit, modeling_tevit
from .errors import DeviceUnavailableError, TeViTError
from .image_processing_tevit import TeViTImageProcessor
from .pipeline_tevit import VideoInstanceSegmentationPipeline


logger = logging.getLogger(__name__)

CONFIG_FILENAME = "config.json"
PREPROCESSOR_CONFIG_FILENAME = "preprocessor_config.json"
SAFETENSORS_FILENAME = "model.safetensors"
SAFETENSORS_INDEX_FILENAME = "model.safetensors.index.json"
# Weight formats that need pickle to load: never read.
PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# The dtype a model runs in when the caller gives none, at every entry point (Python, pipeline, CLI): "auto" is
# Transformers' rule, the `dtype` recorded in config.json (else the weights' dtype). A caller's `dtype=` always wins.
DEFAULT_DTYPE = "auto"
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
# The Hub code set: the model's and the image processor's modules and every file they import relatively (the pipeline
# included, see `TeViTForVideoInstanceSegmentation.save_pretrained`). This is exactly what `save_pretrained` of the
# two copies next to the weights (transformers' `custom_object_save` follows relative imports), so the list is
# derived from the imports, in this one place, and a new Hub module cannot be left out.
HUB_CODE_FILES = tuple(
    sorted(
        {
            Path(path).name
            for module in (modeling_tevit, image_processing_tevit)
            for path in (module.__file__, *get_relative_import_files(module.__file__))
        }
    )
)
# How many disagreeing keys an error message lists.
_MAX_KEYS_IN_MESSAGE = 8


class ModelFolderError(TeViTError, ValueError):
    """A model folder that cannot be loaded as it is (missing files, pickle-only weights, config/weights mismatch)."""


def safetensors_files(model_dir: str | os.PathLike) -> list[Path]:
    """The safetensors weight files of a folder (one file, or the shards its index lists).

    Raises:
        ModelFolderError: no safetensors weights (naming any pickle weight files found instead).
    """
    model_dir = Path(model_dir)
    single = model_dir / SAFETENSORS_FILENAME
    index = model_dir / SAFETENSORS_INDEX_FILENAME
    if single.is_file():
        return [single]
    if index.is_file():
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
        missing = [name for name in shards if not (model_dir / name).is_file()]
        if missing:
            raise ModelFolderError(f"{index} lists shards that are not in {model_dir}: {missing}.")
        return [model_dir / name for name in shards]
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix.lower() in PICKLE_WEIGHT_SUFFIXES)
    hint = (
        f" It holds pickle weights {pickles}, which are never loaded (they can run code): re-save the model with "
        "`save_pretrained` (safetensors) or convert an official checkpoint with `tevit-hf convert`."
        if pickles
        else ""
    )
    raise ModelFolderError(f"{model_dir} has no {SAFETENSORS_FILENAME} (or {SAFETENSORS_INDEX_FILENAME}).{hint}")


def check_weights_match_config(model_dir: str | os.PathLike, config: Any | None = None) -> None:
    """Compare the tensor names and shapes in the safetensors files with the model the config builds.

    The model is built on the meta device (no memory is allocated).

    Raises:
        ModelFolderError: keys missing from the weights, unexpected keys, or shape mismatches, listed with shapes.
    """
    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(model_dir) if config is None else config
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in AutoModel.from_config(config).state_dict().items()}
    found: dict[str, tuple[int, ...]] = {}
    for file in safetensors_files(model_dir):
        try:
            with safe_open(file, framework="pt") as weights:
                for name in weights.keys():
                    found[name] = tuple(weights.get_slice(name).get_shape())
        except Exception as error:  # safetensors raises its own SafetensorError for truncated or corrupt files
            raise ModelFolderError(
                f"{file} is not a readable safetensors file ({error}); it may be truncated: save or download it again."
            ) from error
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if mismatched:
        listed = [f"{name}: weights {found[name]} vs config {expected[name]}" for name in mismatched]
        problems.append(f"{len(mismatched)} shape mismatches ({_first(listed)})")
    if missing:
        problems.append(f"{len(missing)} tensors the config needs are missing from the weights ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors in the weights are unknown to the config ({_first(unexpected)})")
    raise ModelFolderError(
        f"{model_dir}: {CONFIG_FILENAME} and the safetensors weights disagree: " + "; ".join(problems) + ". "
        "The config does not describe the model these weights were saved from (edited config.json, or files from "
        "two different models)."
    )


def _first(items: list[str]) -> str:
    more = f", ... {len(items) - _MAX_KEYS_IN_MESSAGE} more" if len(items) > _MAX_KEYS_IN_MESSAGE else ""
    return ", ".join(items[:_MAX_KEYS_IN_MESSAGE]) + more


def check_device(device: str | torch.device) -> torch.device:
    """The torch device `device`, checked to exist on this machine (before any model is loaded).

    Raises:
        DeviceUnavailableError: an unknown device string, or a CUDA/MPS device this machine does not have.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DeviceUnavailableError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1).") from error
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = resolved.index or 0
        if index >= count:
            raise DeviceUnavailableError(
                f"--device {device!r}: this machine has {count} CUDA device(s); use --device cpu"
                + (f" or an index below {count}." if count else ".")
            )
    elif resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceUnavailableError(f"--device {device!r}: MPS is not available here; use --device cpu.")
    return resolved


def load_model_and_processor(
    model_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> tuple[Any, Any]:
    """Load a TeViT model (eval mode) and its image processor from a local folder, strictly.

    Args:
        model_dir: a folder written by `save_pretrained` (config.json + safetensors weights, preprocessor config).
        device: torch device to put the model on.
        dtype: model dtype (`torch.float32`, `"bfloat16"`, ...); None or `"auto"`: the dtype recorded in the
            folder's config.json (`DEFAULT_DTYPE`, the same rule as `from_pretrained`).

    Raises:
        FileNotFoundError: the folder or its config.json does not exist.
        ModelFolderError: no safetensors weights, or config and weights disagree.
    """
    model_dir = Path(model_dir)
    device = check_device(device)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"Model folder {str(model_dir)!r} does not exist.")
    if not (model_dir / CONFIG_FILENAME).is_file():
        raise FileNotFoundError(f"Model folder {str(model_dir)!r} has no {CONFIG_FILENAME}.")
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (ValueError, TypeError, OSError) as error:  # malformed JSON, a field of the wrong type, ...
        raise ModelFolderError(f"{model_dir / CONFIG_FILENAME}: {error}") from error
    check_weights_match_config(model_dir, config)
    dtype = DEFAULT_DTYPE if dtype is None else dtype
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    model = AutoModel.from_pretrained(model_dir, config=config, use_safetensors=True, dtype=dtype)
    model = model.to(device).eval()
    if (model_dir / PREPROCESSOR_CONFIG_FILENAME).is_file():
        processor = AutoImageProcessor.from_pretrained(model_dir)
    else:
        logger.warning("%s has no %s; using the default TeViTImageProcessor.", model_dir, PREPROCESSOR_CONFIG_FILENAME)
        processor = TeViTImageProcessor()
    return model, processor


def load_pipeline(
    model_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    **pipeline_kwargs: Any,
) -> VideoInstanceSegmentationPipeline:
    """`VideoInstanceSegmentationPipeline` on a strictly loaded folder (see `load_model_and_processor`)."""
    model, processor = load_model_and_processor(model_dir, device=device, dtype=dtype)
    return VideoInstanceSegmentationPipeline(
        model=model, image_processor=processor, device=torch.device(device), **pipeline_kwargs
    )


__all__ = [
    "DEFAULT_DTYPE",
    "check_device",
    "DTYPE_CHOICES",
    "HUB_CODE_FILES",
    "ModelFolderError",
    "check_weights_match_config",
    "load_model_and_processor",
    "load_pipeline",
    "safetensors_files",
]
