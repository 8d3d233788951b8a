"""Build the model to train: from a preset, a config json, a saved/converted folder, plus `--init_from` weights.

Every source ends in the same two steps: a `TeViTConfig` whose labels are the training dataset's, and a freshly
initialised `TeViTForVideoInstanceSegmentation` into which the compatible tensors of a checkpoint are copied. Keys
that are missing, unexpected or of another shape (e.g. a 40-class head loaded for a 25-class dataset) are skipped and
reported, like the official non-strict `load_from` (spec 5.4).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file as load_safetensors

from ..configuration_tevit import OFFICIAL_PRESETS, PVT_V2_PRESETS, TINY_CONFIG_KWARGS, TeViTConfig
from ..modeling_tevit import TeViTForVideoInstanceSegmentation
from ..overrides import parse_overrides


logger = logging.getLogger(__name__)

# Named model sizes besides the PVTv2 variants ("pvt_v2_b0" ... "pvt_v2_b5", the official model is "pvt_v2_b1").
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Smallest model that keeps every structural feature; for tests.
    "tiny": dict(TINY_CONFIG_KWARGS),
}

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHARDED_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Keys of an official mmdet TeViT checkpoint, which must go through `tevit-hf convert` first.
_OFFICIAL_KEY_PREFIXES = ("roi_head.", "rpn_head.", "backbone.layers.")


def available_presets() -> list[str]:
    return (
        sorted(MODEL_PRESETS) + [f"pvt_v2_{variant}" for variant in sorted(PVT_V2_PRESETS)] + sorted(OFFICIAL_PRESETS)
    )


def _preset_config(name: str, config_kwargs: dict[str, Any]) -> TeViTConfig | None:
    key = name.lower()
    if key in MODEL_PRESETS:
        return TeViTConfig(**{**MODEL_PRESETS[key], **config_kwargs})
    if key in OFFICIAL_PRESETS:
        return TeViTConfig.from_official_preset(key, **config_kwargs)
    variant = key.removeprefix("pvt_v2_").removeprefix("pvtv2-").removeprefix("pvt-v2-")
    if variant in PVT_V2_PRESETS:
        return TeViTConfig.from_pvt_v2_preset(variant, **config_kwargs)
    return None


def parse_config_overrides(text: str | None) -> dict[str, Any]:
    """`"hidden_size=64,num_queries=20,backbone_depths=[1,1,1,1]"` (or a json object) -> dict of config fields.

    Values are parsed as json (numbers, lists, booleans), anything else is kept as a string (`overrides.parse_overrides`).
    """
    return parse_overrides(text, option="--config_overrides")


def build_config(
    model_name_or_path: str,
    id2label: Mapping[int, str],
    overrides: Mapping[str, Any] | None = None,
) -> TeViTConfig:
    """The training config: `model_name_or_path` (preset name, config json, or model folder) with the dataset's
    labels and `overrides` applied.

    Raises:
        ValueError: an unknown preset/path, or an override that is not a `TeViTConfig` field.
    """
    overrides = dict(overrides or {})
    unknown = [key for key in overrides if key not in TeViTConfig.__dataclass_fields__ and key != "num_labels"]
    if unknown:
        raise ValueError(f"--config_overrides: {unknown} are not TeViTConfig fields")
    labels = {int(label): str(name) for label, name in id2label.items()}
    label_kwargs = {"id2label": labels, "label2id": {name: label for label, name in labels.items()}}

    config = _preset_config(model_name_or_path, {**overrides, **label_kwargs})
    if config is not None:
        return config
    path = Path(model_name_or_path)
    if path.is_file() and path.suffix == ".json":
        values = json.loads(path.read_text(encoding="utf-8"))
    elif path.is_dir() and (path / "config.json").is_file():
        values = TeViTConfig.from_pretrained(path).to_dict()
    elif path.exists():
        raise ValueError(f"--model_name_or_path {path}: expected a config .json file or a folder with a config.json")
    else:
        raise ValueError(
            f"--model_name_or_path {model_name_or_path!r} is neither a preset ({', '.join(available_presets())}) "
            "nor an existing config json or model folder"
        )
    for key in ("id2label", "label2id", "num_labels", "model_type", "transformers_version", "architectures"):
        values.pop(key, None)
    if "num_head_stages" in overrides and "stage_loss_weights" not in overrides:
        values.pop("stage_loss_weights", None)  # its length follows num_head_stages
    values = {key: value for key, value in values.items() if key in TeViTConfig.__dataclass_fields__}
    return TeViTConfig(**{**values, **overrides, **label_kwargs})


@dataclass
class WeightLoadReport:
    """What happened to the tensors of a checkpoint loaded non-strictly into a model."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def format(self, max_listed: int = 20) -> str:
        """Human-readable summary listing skipped keys (up to `max_listed` per kind)."""
        lines = [
            f"Initial weights from {self.source}: {len(self.loaded)} tensors loaded, {len(self.missing)} missing "
            f"(freshly initialised), {len(self.unexpected)} unexpected (ignored), {len(self.mismatched)} of another "
            "shape (freshly initialised)."
        ]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            for key in keys[:max_listed]:
                lines.append(f"  {title}: {key}")
            if len(keys) > max_listed:
                lines.append(f"  ... and {len(keys) - max_listed} more {title} keys")
        for key, checkpoint_shape, model_shape in self.mismatched[:max_listed]:
            lines.append(f"  mismatched: {key}: checkpoint {list(checkpoint_shape)} vs model {list(model_shape)}")
        if len(self.mismatched) > max_listed:
            lines.append(f"  ... and {len(self.mismatched) - max_listed} more mismatched keys")
        return "\n".join(lines)


def read_state_dict(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a model folder (single or sharded safetensors / bin) or a single weights file."""
    source = Path(source)
    if source.is_dir():
        for name in _WEIGHT_FILES:
            if (source / name).is_file():
                return read_state_dict(source / name)
        for name in _SHARDED_INDEX_FILES:
            if (source / name).is_file():
                index = json.loads((source / name).read_text(encoding="utf-8"))
                state_dict = {}
                for shard in sorted(set(index["weight_map"].values())):
                    state_dict.update(read_state_dict(source / shard))
                return state_dict
        raise FileNotFoundError(f"{source}: no weights found (expected one of {_WEIGHT_FILES + _SHARDED_INDEX_FILES})")
    if not source.is_file():
        raise FileNotFoundError(f"weights {source} not found")
    if source.suffix == ".safetensors":
        return load_safetensors(str(source))
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise ValueError(f"{source}: expected a state dict, got {type(state_dict).__name__}")
    if any(key.startswith(_OFFICIAL_KEY_PREFIXES) for key in state_dict):
        raise ValueError(
            f"{source} looks like an official mmdet TeViT checkpoint; convert it first with "
            "`tevit-hf convert` and pass the converted folder"
        )
    return state_dict


def check_weight_sources(init_from: str | None, backbone_init_from: str | None) -> None:
    """Fail before any work (data generation, model build) when a weights path of the command line does not exist."""
    for option, source in (("--init_from", init_from), ("--backbone_init_from", backbone_init_from)):
        if source is not None and not Path(source).exists():
            raise FileNotFoundError(f"{option} {source}: no such file or folder")


def load_weights_non_strict(model: torch.nn.Module, source: str | os.PathLike) -> WeightLoadReport:
    """Copy every tensor of `source` whose name and shape match into `model`; report the others."""
    checkpoint = read_state_dict(source)
    model_state = model.state_dict()
    report = WeightLoadReport(source=str(source))
    compatible = {}
    for key, tensor in checkpoint.items():
        if key not in model_state:
            report.unexpected.append(key)
        elif tuple(tensor.shape) != tuple(model_state[key].shape):
            report.mismatched.append((key, tuple(tensor.shape), tuple(model_state[key].shape)))
        else:
            compatible[key] = tensor
            report.loaded.append(key)
    report.missing = [key for key in model_state if key not in checkpoint]
    model.load_state_dict(compatible, strict=False)
    return report


def build_model(
    config: TeViTConfig, weights_source: str | os.PathLike | None = None
) -> tuple[TeViTForVideoInstanceSegmentation, WeightLoadReport | None]:
    """A freshly initialised model, with the compatible tensors of `weights_source` (folder or file) copied in."""
    model = TeViTForVideoInstanceSegmentation(config)
    report = None
    if weights_source is not None:
        report = load_weights_non_strict(model, weights_source)
    return model, report


def default_weights_source(model_name_or_path: str) -> str | None:
    """A model folder's own weights, if `model_name_or_path` is a folder that has some."""
    path = Path(model_name_or_path)
    if path.is_dir() and any((path / name).is_file() for name in _WEIGHT_FILES + _SHARDED_INDEX_FILES):
        return str(path)
    return None


__all__ = [
    "MODEL_PRESETS",
    "WeightLoadReport",
    "available_presets",
    "build_config",
    "build_model",
    "check_weight_sources",
    "default_weights_source",
    "load_weights_non_strict",
    "parse_config_overrides",
    "read_state_dict",
]
