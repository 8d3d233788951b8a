"""ImageNet initialisation of a TeViT backbone, before any TeViT or COCO weights (the official training's first step).

Sources and their key layouts:

- MsgShifT PVTv2: a Transformers PvtV2 checkpoint (`PvtV2Model` / `PvtV2Backbone` / `PvtV2ForImageClassification`
  keys, e.g. the `OpenGVLab/pvt_v2_b1` layout) or whai362/PVT's `pvt_v2_b*.pth` (spec section 1.8: `patch_embed{i}`,
  `block{i}.{j}` with a fused `attn.kv`, `norm{i}`). The messenger tokens exist in neither and keep their fresh init.
- A Transformers backbone (`backbone_config`): a checkpoint of the same model type in any Transformers layout (the
  backbone, the base model or the classifier), or, for ResNet, the torchvision / mmdet `ResNet` layout that the
  official R50 config loads (`torchvision://resnet50`).

Every tensor of the source is accounted for: it loads (same shape), or it is a classification head / pooling layer
the backbone does not have (reported as dropped); any other key is an error that names it. Backbone tensors that no
source key fills are reported as freshly initialised (messenger tokens; Swin's output norms, which mmdet also adds).

Note the LayerNorm eps (spec section 1.2): whai362's patch-embedding norms use 1e-5, the official TeViT backbone (and
Transformers' PvtV2 by default) 1e-6 everywhere; the weights load as they are and the model keeps its eps.

Used by `scripts/train.py --backbone_init_from`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..convert_tevit_original_to_hf import torchvision_resnet_key_to_hf
from ..modeling_tevit import TeViTForVideoInstanceSegmentation
from .model_setup import read_state_dict


# Keys of classification checkpoints that a backbone never has.
_DROPPED_PATTERNS = (r"(^|\.)classifier\.", r"^head\.", r"^fc\.", r"(^|\.)pooler\.", r"^norm\.")


@dataclass
class BackboneInitReport:
    """What `load_backbone_weights` did: tensors loaded, source keys dropped, backbone tensors left fresh."""

    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [
            f"Backbone initialised from {self.source} ({self.layout} layout): {len(self.loaded)} tensors loaded, "
            f"{len(self.dropped)} classification-only tensors dropped, {len(self.fresh)} backbone tensors freshly "
            "initialised."
        ]
        lines += [f"  dropped: {key}" for key in self.dropped]
        lines += [f"  fresh: {key}" for key in self.fresh]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# PVTv2 layouts -> MsgShifT keys (relative to `model.model.backbone`)
# ----------------------------------------------------------------------------------------------------------------------

_HF_PVT_V2_RULES = (
    (r"encoder\.layers\.(\d+)\.patch_embedding\.proj\.", r"stages.\1.patch_embeddings.projection."),
    (r"encoder\.layers\.(\d+)\.patch_embedding\.layer_norm\.", r"stages.\1.patch_embeddings.layer_norm."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.query\.", r"stages.\1.layers.\2.attention.q_proj."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.key\.", r"stages.\1.layers.\2.attention.k_proj."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.value\.", r"stages.\1.layers.\2.attention.v_proj."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.proj\.", r"stages.\1.layers.\2.attention.out_proj."),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.dwconv\.dwconv\.", r"stages.\1.layers.\2.mlp.depthwise_conv."),
    (
        r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(layer_norm_1|layer_norm_2|attention\.spatial_reduction|"
        r"attention\.layer_norm|mlp\.dense1|mlp\.dense2)\.",
        r"stages.\1.layers.\2.\3.",
    ),
    (r"encoder\.layers\.(\d+)\.layer_norm\.", r"stages.\1.layer_norm."),
)


def _stage(match: re.Match, group: int = 1) -> str:
    return str(int(match.group(group)) - 1)  # whai362 counts stages from 1


_WHAI362_RULES: tuple[tuple[str, Callable[[re.Match], str]], ...] = (
    (r"patch_embed(\d)\.proj\.", lambda m: f"stages.{_stage(m)}.patch_embeddings.projection."),
    (r"patch_embed(\d)\.norm\.", lambda m: f"stages.{_stage(m)}.patch_embeddings.layer_norm."),
    (r"block(\d)\.(\d+)\.norm1\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.layer_norm_1."),
    (r"block(\d)\.(\d+)\.norm2\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.layer_norm_2."),
    (r"block(\d)\.(\d+)\.attn\.q\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.attention.q_proj."),
    # The fused `kv` is split below into k_proj and v_proj (k rows first).
    (r"block(\d)\.(\d+)\.attn\.kv\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.attention.kv."),
    (r"block(\d)\.(\d+)\.attn\.proj\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.attention.out_proj."),
    (
        r"block(\d)\.(\d+)\.attn\.sr\.",
        lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.attention.spatial_reduction.",
    ),
    (r"block(\d)\.(\d+)\.attn\.norm\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.attention.layer_norm."),
    (r"block(\d)\.(\d+)\.mlp\.fc1\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.mlp.dense1."),
    (
        r"block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.",
        lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.mlp.depthwise_conv.",
    ),
    (r"block(\d)\.(\d+)\.mlp\.fc2\.", lambda m: f"stages.{_stage(m)}.layers.{m.group(2)}.mlp.dense2."),
    (r"norm(\d)\.", lambda m: f"stages.{_stage(m)}.layer_norm."),
)


def _rename(key: str, rules) -> str | None:
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match:
            target = replacement(match) if callable(replacement) else match.expand(replacement)
            return target + key[match.end() :]
    return None


def _pvt_v2_layout(source: Mapping[str, torch.Tensor]) -> str:
    return "whai362/PVT" if any(key.startswith("patch_embed1.") for key in source) else "Transformers PvtV2"


def map_pvt_v2_state_dict(source: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """PVTv2 ImageNet weights (either layout) -> MsgShifT backbone keys. Returns (mapped, dropped keys, layout).

    Raises `ValueError` naming every key that is neither mapped nor a classification-only key.
    """
    layout = _pvt_v2_layout(source)
    mapped, dropped, unknown = {}, [], []
    for key, tensor in source.items():
        if layout == "whai362/PVT":
            target = _rename(key, _WHAI362_RULES)
        else:
            bare = key.removeprefix("pvt_v2.").removeprefix("model.")
            target = _rename(bare, _HF_PVT_V2_RULES)
        if target is None:
            (dropped if _is_dropped(key) else unknown).append(key)
        elif ".attention.kv." in target:
            key_part, value_part = tensor.chunk(2, dim=0)
            mapped[target.replace(".kv.", ".k_proj.")] = key_part.clone()
            mapped[target.replace(".kv.", ".v_proj.")] = value_part.clone()
        else:
            mapped[target] = tensor
    if unknown:
        raise ValueError(
            f"{len(unknown)} key(s) of the {layout} checkpoint match no PVTv2 backbone key: {', '.join(sorted(unknown))}"
        )
    return mapped, dropped, layout


# ----------------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------------


def _is_dropped(key: str) -> bool:
    return any(re.search(pattern, key) for pattern in _DROPPED_PATTERNS)


def _map_transformers_backbone(
    source: Mapping[str, torch.Tensor], backbone: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """A checkpoint of a Transformers backbone's model type (backbone, base model or classifier layout), or a
    torchvision/mmdet ResNet, -> the backbone's own keys."""
    targets = backbone.state_dict()
    prefix = getattr(backbone, "base_model_prefix", "")
    torchvision = backbone.config.model_type == "resnet" and "conv1.weight" in source
    layout = "torchvision ResNet" if torchvision else f"Transformers {backbone.config.model_type}"
    mapped, dropped, unknown = {}, [], []
    for key, tensor in source.items():
        if torchvision:
            candidates = [torchvision_resnet_key_to_hf(key)]
        else:  # as is, with the base model's prefix (`swin.`), without it (`resnet.` of the classifier)
            candidates = [key, f"{prefix}.{key}", key.removeprefix(f"{prefix}.")]
        target = next((candidate for candidate in candidates if candidate in targets), None)
        if target is not None:
            mapped[target] = tensor
        else:
            (dropped if _is_dropped(key) or key.endswith("num_batches_tracked") else unknown).append(key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} key(s) of the {layout} checkpoint match no key of the {type(backbone).__name__}: "
            f"{', '.join(sorted(unknown))}"
        )
    return mapped, dropped, layout


def load_backbone_weights(
    model: TeViTForVideoInstanceSegmentation, source: str | os.PathLike | Mapping[str, torch.Tensor]
) -> BackboneInitReport:
    """Initialise `model`'s backbone from ImageNet weights (file, folder or state dict; layouts in the module
    docstring). Raises `ValueError` naming any unknown key, any tensor of another shape, and any backbone tensor left
    without weights other than those a classifier checkpoint cannot have (messenger tokens, Swin output norms)."""
    name = source if not isinstance(source, Mapping) else "a state dict"
    state_dict = dict(source) if isinstance(source, Mapping) else read_state_dict(source)
    backbone = model.model.backbone
    if model.config.uses_msgshift_backbone:
        mapped, dropped, layout = map_pvt_v2_state_dict(state_dict)
        may_stay_fresh = ("messenger_tokens",)
    else:
        mapped, dropped, layout = _map_transformers_backbone(state_dict, backbone)
        may_stay_fresh = ("hidden_states_norms.", "layernorm.")  # the stage output norms mmdet adds, unused norm
    targets = backbone.state_dict()
    wrong_shape = [
        f"{key}: checkpoint {list(tensor.shape)} vs backbone {list(targets[key].shape)}"
        for key, tensor in mapped.items()
        if key in targets and tuple(tensor.shape) != tuple(targets[key].shape)
    ]
    not_in_backbone = sorted(key for key in mapped if key not in targets)
    fresh = [key for key in targets if key not in mapped and not key.endswith("num_batches_tracked")]
    not_allowed_fresh = [key for key in fresh if not any(part in key for part in may_stay_fresh)]
    problems = []
    if not_in_backbone:
        problems.append(f"keys the backbone does not have: {', '.join(not_in_backbone)}")
    if wrong_shape:
        problems.append("tensors of another shape: " + "; ".join(wrong_shape))
    if not_allowed_fresh:
        problems.append(f"backbone tensors the checkpoint lacks: {', '.join(not_allowed_fresh)}")
    if problems:
        raise ValueError(f"{name} ({layout} layout) does not fit this backbone: " + " | ".join(problems))
    backbone.load_state_dict(mapped, strict=False)
    return BackboneInitReport(source=str(name), layout=layout, loaded=sorted(mapped), dropped=dropped, fresh=fresh)


__all__ = [
    "BackboneInitReport",
    "load_backbone_weights",
    "map_pvt_v2_state_dict",
]
