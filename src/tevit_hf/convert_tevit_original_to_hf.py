"""Convert an official TeViT checkpoint (hustvl/TeViT, mmdet 2.23 `.pth`) into a Transformers folder.

Official key names and shapes: spec section 6.3. Every official key maps through one bidirectional table of key
templates (`KEY_RULES`); unknown, unused and missing keys and wrong shapes all raise a `ValueError` that names
them (never a silent `strict=False`). The architecture is inferred from tensor shapes wherever shapes carry it;
attention head counts and other shape-free settings come from flags (PVTv2 defaults otherwise).

Usage: `tevit-hf convert --checkpoint tevit_msgshift.pth --output-dir tevit-msgshift-b1 [--verify]`.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .configuration_tevit import OFFICIAL_PRESETS, YOUTUBE_VIS_2019_CLASSES, TeViTConfig
from .file_utils import staged_directory


logger = logging.getLogger(__name__)

# In TeViT checkpoints only; a COCO QueryInst PVTv2 checkpoint has none (the tokens then start from their fresh init).
MESSENGER_TOKENS_KEY = "backbone.msg_tokens"
HF_MESSENGER_TOKENS_KEY = "model.backbone.messenger_tokens"
# mmcv writes `module.`-prefixed keys when a DataParallel/DDP wrapper was saved without unwrapping.
DATA_PARALLEL_PREFIX = "module."
# PVTv2 convention (b1-b5): every backbone stage uses 64-dimensional attention heads.
DEFAULT_BACKBONE_HEAD_DIM = 64
# PVTv2 overlapping patch embeddings: the first stage downsamples by 4, every later stage by 2.
FIRST_STAGE_PATCH_STRIDE = 4
LATER_STAGE_PATCH_STRIDE = 2
# Random clip used by `--verify`: frames, side (a multiple of the backbone's total stride 32).
VERIFY_NUM_FRAMES = 2
VERIFY_FRAME_SIZE = 64
QKV_ORDER = ("q", "k", "v")

# Regex of each template field; any other field is a non-negative integer index.
FIELD_PATTERNS = {
    "param": r"weight|bias",
    "bn_param": r"weight|bias|running_mean|running_var|num_batches_tracked",
    "qkv": r"q|k|v",
}
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class KeyRule:
    """One bidirectional key template pair.

    `original` and `hf` are key templates with `{field}` placeholders. `transform` is "copy", "squeeze_1x1"
    (official 1x1 conv weight (out, in, 1, 1) <-> Linear weight (out, in)) or "split_qkv" (official fused
    `in_proj` rows [q; k; v] <-> three HF tensors, the `{qkv}` field of the HF template). `index_maps` maps a
    field to (step, offset): original index = step * HF index + offset (mmdet `cls_fcs`/`reg_fcs` interleave
    Linear, LayerNorm and ReLU in one Sequential).
    """

    original: str
    hf: str
    transform: str = "copy"
    index_maps: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "original_regex", _template_regex(self.original))
        object.__setattr__(self, "hf_regex", _template_regex(self.hf))


def _template_regex(template: str) -> re.Pattern[str]:
    parts = []
    position = 0
    for match in _FIELD.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        name = match.group(1)
        parts.append(f"(?P<{name}>{FIELD_PATTERNS.get(name, r'[0-9]+')})")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))


_BB = "backbone.layers.{stage}"
_HF_BB = "model.backbone.stages.{stage}"
_BLOCK = _BB + ".1.{block}"
_HF_BLOCK = _HF_BB + ".layers.{block}"
_BOX = "roi_head.bbox_head.{stage}"
_HF_BOX = "model.decoder_stages.{stage}"
_MASK = "roi_head.mask_head.{stage}"
_HF_MASK = "mask_heads.{stage}"
_FC_EVERY_THIRD = {"fc": (3, 0)}
_NORM_EVERY_THIRD = {"fc": (3, 1)}

KEY_RULES: tuple[KeyRule, ...] = (
    # Backbone (MsgShifT on PVTv2).
    KeyRule("backbone.msg_tokens", "model.backbone.messenger_tokens"),
    KeyRule(_BB + ".0.projection.{param}", _HF_BB + ".patch_embeddings.projection.{param}"),
    KeyRule(_BB + ".0.norm.{param}", _HF_BB + ".patch_embeddings.layer_norm.{param}"),
    KeyRule(_BLOCK + ".norm1.{param}", _HF_BLOCK + ".layer_norm_1.{param}"),
    KeyRule(_BLOCK + ".attn.attn.in_proj_weight", _HF_BLOCK + ".attention.{qkv}_proj.weight", "split_qkv"),
    KeyRule(_BLOCK + ".attn.attn.in_proj_bias", _HF_BLOCK + ".attention.{qkv}_proj.bias", "split_qkv"),
    KeyRule(_BLOCK + ".attn.attn.out_proj.{param}", _HF_BLOCK + ".attention.out_proj.{param}"),
    KeyRule(_BLOCK + ".attn.sr.{param}", _HF_BLOCK + ".attention.spatial_reduction.{param}"),
    KeyRule(_BLOCK + ".attn.norm.{param}", _HF_BLOCK + ".attention.layer_norm.{param}"),
    KeyRule(_BLOCK + ".norm2.{param}", _HF_BLOCK + ".layer_norm_2.{param}"),
    KeyRule(_BLOCK + ".ffn.layers.0.weight", _HF_BLOCK + ".mlp.dense1.weight", "squeeze_1x1"),
    KeyRule(_BLOCK + ".ffn.layers.0.bias", _HF_BLOCK + ".mlp.dense1.bias"),
    KeyRule(_BLOCK + ".ffn.layers.1.{param}", _HF_BLOCK + ".mlp.depthwise_conv.{param}"),
    KeyRule(_BLOCK + ".ffn.layers.4.weight", _HF_BLOCK + ".mlp.dense2.weight", "squeeze_1x1"),
    KeyRule(_BLOCK + ".ffn.layers.4.bias", _HF_BLOCK + ".mlp.dense2.bias"),
    KeyRule(_BB + ".2.{param}", _HF_BB + ".layer_norm.{param}"),
    # Neck (FPN).
    KeyRule("neck.lateral_convs.{level}.conv.{param}", "model.neck.lateral_convs.{level}.{param}"),
    KeyRule("neck.fpn_convs.{level}.conv.{param}", "model.neck.output_convs.{level}.{param}"),
    # EmbeddingRPNHead.
    KeyRule("rpn_head.init_proposal_bboxes.weight", "model.proposal_boxes.weight"),
    KeyRule("rpn_head.init_proposal_features.weight", "model.proposal_features.weight"),
    # STQI box stages.
    KeyRule(_BOX + ".attention.attn.in_proj_weight", _HF_BOX + ".self_attention.{qkv}_proj.weight", "split_qkv"),
    KeyRule(_BOX + ".attention.attn.in_proj_bias", _HF_BOX + ".self_attention.{qkv}_proj.bias", "split_qkv"),
    KeyRule(_BOX + ".attention.attn.out_proj.{param}", _HF_BOX + ".self_attention.out_proj.{param}"),
    KeyRule(_BOX + ".attention_norm.{param}", _HF_BOX + ".self_attention_layer_norm.{param}"),
    KeyRule(
        _BOX + ".instance_interactive_conv.dynamic_layer.{param}", _HF_BOX + ".dynamic_conv.dynamic_layer.{param}"
    ),
    KeyRule(_BOX + ".instance_interactive_conv.norm_in.{param}", _HF_BOX + ".dynamic_conv.layer_norm_in.{param}"),
    KeyRule(_BOX + ".instance_interactive_conv.norm_out.{param}", _HF_BOX + ".dynamic_conv.layer_norm_out.{param}"),
    KeyRule(_BOX + ".instance_interactive_conv.fc_layer.{param}", _HF_BOX + ".dynamic_conv.output_projection.{param}"),
    KeyRule(_BOX + ".instance_interactive_conv.fc_norm.{param}", _HF_BOX + ".dynamic_conv.output_layer_norm.{param}"),
    KeyRule(_BOX + ".instance_interactive_conv_norm.{param}", _HF_BOX + ".dynamic_conv_layer_norm.{param}"),
    KeyRule(_BOX + ".ffn.layers.0.0.{param}", _HF_BOX + ".fc1.{param}"),
    KeyRule(_BOX + ".ffn.layers.1.{param}", _HF_BOX + ".fc2.{param}"),
    KeyRule(_BOX + ".ffn_norm.{param}", _HF_BOX + ".final_layer_norm.{param}"),
    KeyRule(_BOX + ".cls_fcs.{fc}.weight", _HF_BOX + ".class_fcs.{fc}.dense.weight", index_maps=_FC_EVERY_THIRD),
    KeyRule(
        _BOX + ".cls_fcs.{fc}.{param}", _HF_BOX + ".class_fcs.{fc}.layer_norm.{param}", index_maps=_NORM_EVERY_THIRD
    ),
    KeyRule(_BOX + ".reg_fcs.{fc}.weight", _HF_BOX + ".box_fcs.{fc}.dense.weight", index_maps=_FC_EVERY_THIRD),
    KeyRule(
        _BOX + ".reg_fcs.{fc}.{param}", _HF_BOX + ".box_fcs.{fc}.layer_norm.{param}", index_maps=_NORM_EVERY_THIRD
    ),
    KeyRule(_BOX + ".fc_cls.{param}", _HF_BOX + ".class_predictor.{param}"),
    KeyRule(_BOX + ".fc_reg.{param}", _HF_BOX + ".box_delta_predictor.{param}"),
    # Dynamic mask heads.
    KeyRule(
        _MASK + ".instance_interactive_conv.dynamic_layer.{param}", _HF_MASK + ".dynamic_conv.dynamic_layer.{param}"
    ),
    KeyRule(_MASK + ".instance_interactive_conv.norm_in.{param}", _HF_MASK + ".dynamic_conv.layer_norm_in.{param}"),
    KeyRule(_MASK + ".instance_interactive_conv.norm_out.{param}", _HF_MASK + ".dynamic_conv.layer_norm_out.{param}"),
    KeyRule(_MASK + ".convs.{conv}.conv.weight", _HF_MASK + ".convs.{conv}.conv.weight"),
    KeyRule(_MASK + ".convs.{conv}.bn.{bn_param}", _HF_MASK + ".convs.{conv}.batch_norm.{bn_param}"),
    KeyRule(_MASK + ".upsample.{param}", _HF_MASK + ".upsample.{param}"),
    KeyRule(_MASK + ".conv_logits.{param}", _HF_MASK + ".mask_predictor.{param}"),
)


# ----------------------------------------------------------------------------------------------------------------------
# ResNet backbones: torchvision / mmdet `ResNet` keys <-> Transformers `ResNetBackbone` keys
# ----------------------------------------------------------------------------------------------------------------------


def torchvision_resnet_key_to_hf(key: str) -> str | None:
    """`layer2.0.conv1.weight` (torchvision, and mmdet's ResNet without its `backbone.` prefix) ->
    `encoder.stages.1.layers.0.layer.0.convolution.weight` (Transformers `ResNetBackbone`); `None` if unknown."""
    if key == "conv1.weight":
        return "embedder.embedder.convolution.weight"
    if re.fullmatch(r"bn1\.(weight|bias|running_mean|running_var|num_batches_tracked)", key):
        return "embedder.embedder.normalization." + key.removeprefix("bn1.")
    match = re.fullmatch(
        r"layer([1-4])\.(\d+)\.(conv|bn)([1-3])\.(weight|bias|running_mean|running_var|num_batches_tracked)", key
    )
    if match:
        stage, block, kind, index, rest = match.groups()
        part = "convolution" if kind == "conv" else "normalization"
        return f"encoder.stages.{int(stage) - 1}.layers.{block}.layer.{int(index) - 1}.{part}.{rest}"
    match = re.fullmatch(
        r"layer([1-4])\.(\d+)\.downsample\.(0|1)\.(weight|bias|running_mean|running_var|num_batches_tracked)", key
    )
    if match:
        stage, block, index, rest = match.groups()
        part = "convolution" if index == "0" else "normalization"
        return f"encoder.stages.{int(stage) - 1}.layers.{block}.shortcut.{part}.{rest}"
    return None


def hf_resnet_key_to_torchvision(key: str) -> str | None:
    """The inverse of `torchvision_resnet_key_to_hf`."""
    if key == "embedder.embedder.convolution.weight":
        return "conv1.weight"
    if key.startswith("embedder.embedder.normalization."):
        return "bn1." + key.removeprefix("embedder.embedder.normalization.")
    match = re.fullmatch(
        r"encoder\.stages\.([0-3])\.layers\.(\d+)\.layer\.([0-2])\.(convolution|normalization)\.(\w+)", key
    )
    if match:
        stage, block, index, part, rest = match.groups()
        kind = "conv" if part == "convolution" else "bn"
        return f"layer{int(stage) + 1}.{block}.{kind}{int(index) + 1}.{rest}"
    match = re.fullmatch(r"encoder\.stages\.([0-3])\.layers\.(\d+)\.shortcut\.(convolution|normalization)\.(\w+)", key)
    if match:
        stage, block, part, rest = match.groups()
        return f"layer{int(stage) + 1}.{block}.downsample.{0 if part == 'convolution' else 1}.{rest}"
    return None


# ----------------------------------------------------------------------------------------------------------------------
# Swin backbones: mmdet `SwinTransformer` keys <-> Transformers `SwinBackbone` keys
# ----------------------------------------------------------------------------------------------------------------------

_MMDET_SWIN = "backbone."
_HF_SWIN = "model.backbone.swin."
# mmdet block part -> Transformers block part (`qkv` is split, see `_swin_block_tensors`).
_SWIN_BLOCK_PARTS = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.w_msa.proj": "attention.o_proj",
    "ffn.layers.0.0": "mlp.fc1",
    "ffn.layers.1": "mlp.fc2",
}
_SWIN_BLOCK = re.compile(r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)")
_HF_SWIN_BLOCK = re.compile(r"model\.backbone\.swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)")
# Window-attention index buffer of mmdet checkpoints; Transformers recomputes it (not a state-dict entry).
_SWIN_INDEX = re.compile(r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.relative_position_index")
# mmdet's `PatchMerging` gathers each 2x2 neighbourhood with `nn.Unfold` (channel-major), Transformers concatenates
# the four positions (position-major, in the order (0,0), (1,0), (0,1), (1,1)): mmdet's `swin_converter` reorders
# with this permutation (its own inverse).
_UNFOLD_TO_CONCAT = [0, 2, 1, 3]


def mmdet_swin_relative_position_index(window_size: int) -> torch.Tensor:
    """mmdet `WindowMSA.relative_position_index` for a square window (the buffer its checkpoints carry)."""
    steps = torch.arange(0, (2 * window_size - 1) * window_size, 2 * window_size - 1)[:, None]
    coords = (steps + torch.arange(window_size)[None, :]).reshape(1, -1)
    return (coords + coords.T).flip(1).contiguous()


def _unfold_to_concat(tensor: torch.Tensor) -> torch.Tensor:
    """A patch-merging reduction weight `(out, 4C)` or norm parameter `(4C,)` from mmdet's order to Transformers'."""
    channels = tensor.shape[-1] // 4
    grouped = tensor.reshape(*tensor.shape[:-1], channels, 4).transpose(-1, -2)
    return grouped[..., _UNFOLD_TO_CONCAT, :].reshape(tensor.shape).contiguous()


def _concat_to_unfold(tensor: torch.Tensor) -> torch.Tensor:
    channels = tensor.shape[-1] // 4
    grouped = tensor.reshape(*tensor.shape[:-1], 4, channels)[..., _UNFOLD_TO_CONCAT, :]
    return grouped.transpose(-1, -2).reshape(tensor.shape).contiguous()


def swin_original_to_hf(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """One mmdet Swin tensor -> its Transformers tensor(s); `{}` for the index buffer (checked, then dropped), `None`
    for a key that is not a Swin backbone key."""
    if match := _SWIN_INDEX.fullmatch(key):
        window_size = round((tensor.shape[0]) ** 0.5)
        if not torch.equal(tensor.long(), mmdet_swin_relative_position_index(window_size)):
            raise ValueError(f"{key} is not the relative position index of a {window_size}x{window_size} window.")
        return {}
    if match := _SWIN_BLOCK.fullmatch(key):
        stage, block, part, param = match.groups()
        prefix = f"{_HF_SWIN}encoder.layers.{stage}.blocks.{block}."
        if part == "attn.w_msa.qkv":
            return {
                f"{prefix}attention.{name}_proj.{param}": piece.clone()
                for name, piece in zip(QKV_ORDER, tensor.chunk(3))
            }
        if part in _SWIN_BLOCK_PARTS:
            return {f"{prefix}{_SWIN_BLOCK_PARTS[part]}.{param}": tensor}
        return None
    if match := re.fullmatch(
        r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.relative_position_bias_table", key
    ):
        stage, block = match.groups()
        return {
            f"{_HF_SWIN}encoder.layers.{stage}.blocks.{block}.attention.relative_position_bias.relative_position_bias_table": tensor
        }
    if match := re.fullmatch(r"backbone\.stages\.(\d+)\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)", key):
        stage, part = match.groups()
        return {f"{_HF_SWIN}encoder.layers.{stage}.downsample.{part}": _unfold_to_concat(tensor)}
    if match := re.fullmatch(r"backbone\.patch_embed\.(projection|norm)\.(weight|bias)", key):
        part, param = match.groups()
        target = "patch_embeddings.projection" if part == "projection" else "norm"
        return {f"{_HF_SWIN}embeddings.{target}.{param}": tensor}
    if match := re.fullmatch(r"backbone\.norm(\d)\.(weight|bias)", key):
        level, param = match.groups()
        return {f"model.backbone.hidden_states_norms.stage{int(level) + 1}.{param}": tensor}
    return None


def swin_hf_to_original(hf_state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The inverse of `swin_original_to_hf` over a whole state dict (q/k/v fused, index buffers regenerated);
    returns (official tensors, keys that are not Transformers Swin keys). Transformers' unused final norm is skipped."""
    original: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    others = []
    inverse_parts = {value: key for key, value in _SWIN_BLOCK_PARTS.items()}
    for key, tensor in hf_state_dict.items():
        if key.startswith(f"{_HF_SWIN}layernorm."):
            continue
        if match := _HF_SWIN_BLOCK.fullmatch(key):
            stage, block, part, param = match.groups()
            prefix = f"{_MMDET_SWIN}stages.{stage}.blocks.{block}."
            if part in ("attention.q_proj", "attention.k_proj", "attention.v_proj"):
                fused.setdefault(f"{prefix}attn.w_msa.qkv.{param}", {})[part.split(".")[1][0]] = tensor
                continue
            if part in inverse_parts:
                original[f"{prefix}{inverse_parts[part]}.{param}"] = tensor
                continue
        if match := re.fullmatch(
            r"model\.backbone\.swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.relative_position_bias\.relative_position_bias_table",
            key,
        ):
            stage, block = match.groups()
            prefix = f"{_MMDET_SWIN}stages.{stage}.blocks.{block}.attn.w_msa."
            original[f"{prefix}relative_position_bias_table"] = tensor
            window_size = (round(tensor.shape[0] ** 0.5) + 1) // 2
            original[f"{prefix}relative_position_index"] = mmdet_swin_relative_position_index(window_size)
        elif match := re.fullmatch(r"model\.backbone\.swin\.encoder\.layers\.(\d+)\.downsample\.(.+)", key):
            original[f"{_MMDET_SWIN}stages.{match.group(1)}.downsample.{match.group(2)}"] = _concat_to_unfold(tensor)
        elif match := re.fullmatch(
            r"model\.backbone\.swin\.embeddings\.(patch_embeddings\.projection|norm)\.(\w+)", key
        ):
            part = "projection" if match.group(1) != "norm" else "norm"
            original[f"{_MMDET_SWIN}patch_embed.{part}.{match.group(2)}"] = tensor
        elif match := re.fullmatch(r"model\.backbone\.hidden_states_norms\.stage(\d)\.(\w+)", key):
            original[f"{_MMDET_SWIN}norm{int(match.group(1)) - 1}.{match.group(2)}"] = tensor
        else:
            others.append(key)
    for key, parts in fused.items():
        original[key] = torch.cat([parts[name] for name in QKV_ORDER])
    return original, others


def _match_rule(key: str, regex_name: str) -> tuple[KeyRule, dict[str, str]] | None:
    """The rule whose `regex_name` template matches `key` fully, with its field values (index maps applied)."""
    for rule in KEY_RULES:
        match = getattr(rule, regex_name).fullmatch(key)
        if match is None:
            continue
        fields = match.groupdict()
        for name, (step, offset) in rule.index_maps.items():
            value = int(fields[name])
            if regex_name == "original_regex":
                if value < offset or (value - offset) % step != 0:
                    break  # e.g. cls_fcs.1.weight is a LayerNorm weight, not a Linear one
                fields[name] = str((value - offset) // step)
            else:
                fields[name] = str(step * value + offset)
        else:
            return rule, fields
    return None


def original_key_name(hf_key: str) -> str | None:
    """The official (mmdet) name of the HF tensor `hf_key` (q/k/v pieces name their fused `in_proj`), or `None` when
    no rule maps it (e.g. the keys of a Transformers backbone)."""
    found = _match_rule(hf_key, "hf_regex")
    return None if found is None else _format(found[0].original, found[1])


def _format(template: str, fields: Mapping[str, str]) -> str:
    return _FIELD.sub(lambda match: fields[match.group(1)], template)


def _unknown_keys_error(direction: str, keys: list[str]) -> ValueError:
    listed = "\n  ".join(sorted(keys))
    return ValueError(f"{len(keys)} {direction} key(s) match no conversion rule:\n  {listed}")


def rename_original_state_dict(original: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official keys -> HF keys, splitting fused q/k/v and squeezing 1x1 conv FFN weights.

    Pure key mapping, independent of any config; raises `ValueError` listing every key that no rule maps and
    every tensor whose shape the transform cannot take (fused `in_proj` rows not divisible by 3, a "1x1" conv
    weight that is not (out, in, 1, 1)).
    """
    converted: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    bad_shapes: list[str] = []
    for key, tensor in original.items():
        resnet_key = (
            torchvision_resnet_key_to_hf(key.removeprefix("backbone.")) if key.startswith("backbone.") else None
        )
        if resnet_key is not None:
            converted[f"model.backbone.{resnet_key}"] = tensor
            continue
        swin_tensors = swin_original_to_hf(key, tensor) if key.startswith(_MMDET_SWIN) else None
        if swin_tensors is not None:
            converted.update(swin_tensors)
            continue
        found = _match_rule(key, "original_regex")
        if found is None:
            unmapped.append(key)
            continue
        rule, fields = found
        if rule.transform == "split_qkv":
            if tensor.dim() == 0 or tensor.shape[0] % len(QKV_ORDER) != 0:
                bad_shapes.append(f"{key}: fused q/k/v needs a first dim divisible by 3, got {tuple(tensor.shape)}")
                continue
            for name, piece in zip(QKV_ORDER, tensor.chunk(len(QKV_ORDER), dim=0)):
                # clone: the slices share storage, which safetensors refuses to save.
                converted[_format(rule.hf, {**fields, "qkv": name})] = piece.clone()
        elif rule.transform == "squeeze_1x1":
            if tensor.dim() != 4 or tuple(tensor.shape[2:]) != (1, 1):
                bad_shapes.append(f"{key}: expected a 1x1 conv weight (out, in, 1, 1), got {tuple(tensor.shape)}")
                continue
            converted[_format(rule.hf, fields)] = tensor[:, :, 0, 0]
        else:
            converted[_format(rule.hf, fields)] = tensor
    if unmapped:
        raise _unknown_keys_error("official", unmapped)
    if bad_shapes:
        raise ValueError("Shape mismatch in the official checkpoint:\n  " + "\n  ".join(bad_shapes))
    return converted


def convert_hf_state_dict_to_original(hf_state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF keys -> official keys: the exact inverse of `rename_original_state_dict` (fuses q/k/v, unsqueezes 1x1).

    Raises `ValueError` on HF keys no rule maps and on fused projections with a missing q, k or v part.
    """
    original, remaining_keys = swin_hf_to_original(hf_state_dict)
    fused_parts: dict[str, dict[str, torch.Tensor]] = {}
    unmapped: list[str] = []
    for key in remaining_keys:
        tensor = hf_state_dict[key]
        if key.startswith("model.backbone."):
            resnet_key = hf_resnet_key_to_torchvision(key.removeprefix("model.backbone."))
            if resnet_key is not None:
                original[f"backbone.{resnet_key}"] = tensor
                continue
        found = _match_rule(key, "hf_regex")
        if found is None:
            unmapped.append(key)
            continue
        rule, fields = found
        original_key = _format(rule.original, fields)
        if rule.transform == "split_qkv":
            fused_parts.setdefault(original_key, {})[fields["qkv"]] = tensor
        elif rule.transform == "squeeze_1x1":
            original[original_key] = tensor[:, :, None, None]
        else:
            original[original_key] = tensor
    if unmapped:
        raise _unknown_keys_error("HF", unmapped)
    incomplete = [f"{key} (has {sorted(parts)})" for key, parts in fused_parts.items() if len(parts) != 3]
    if incomplete:
        raise ValueError("Fused q/k/v projections need all of q, k and v:\n  " + "\n  ".join(incomplete))
    for key, parts in fused_parts.items():
        original[key] = torch.cat([parts[name] for name in QKV_ORDER], dim=0)
    return original


def expected_hf_shapes(config: TeViTConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor of `TeViTForVideoInstanceSegmentation(config).state_dict()`, built on `meta`."""
    from .modeling_tevit import TeViTForVideoInstanceSegmentation

    try:
        with torch.device("meta"):
            model = TeViTForVideoInstanceSegmentation(config)
    except (NotImplementedError, RuntimeError) as error:  # a constructor reading tensor values cannot run on meta
        logger.warning("Building the model on the meta device failed (%s); building it on the CPU instead.", error)
        model = TeViTForVideoInstanceSegmentation(config)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def check_state_dict_matches(
    state_dict: Mapping[str, torch.Tensor],
    expected_shapes: Mapping[str, tuple[int, ...]],
    may_be_missing: tuple[str, ...] = (),
) -> None:
    """Raise one `ValueError` listing unused keys, unfilled keys (but `may_be_missing`) and shape mismatches."""
    problems = []
    unused = sorted(set(state_dict) - set(expected_shapes))
    missing = sorted(set(expected_shapes) - set(state_dict) - set(may_be_missing))
    if unused:
        problems.append("converted keys the model does not have:\n    " + "\n    ".join(unused))
    if missing:
        problems.append("model keys the checkpoint does not fill:\n    " + "\n    ".join(missing))
    mismatched = [
        f"{key}: expected {tuple(expected_shapes[key])}, got {tuple(state_dict[key].shape)}"
        for key in sorted(set(state_dict) & set(expected_shapes))
        if tuple(state_dict[key].shape) != tuple(expected_shapes[key])
    ]
    if mismatched:
        problems.append("shape mismatches:\n    " + "\n    ".join(mismatched))
    if problems:
        raise ValueError("The converted checkpoint does not fit the model:\n  " + "\n  ".join(problems))


def fresh_keys(original: Mapping[str, torch.Tensor], config: TeViTConfig) -> tuple[str, ...]:
    """Model keys an official checkpoint legitimately lacks: the messenger tokens of a COCO QueryInst PVTv2."""
    if config.uses_msgshift_backbone and config.num_messenger_tokens > 0 and MESSENGER_TOKENS_KEY not in original:
        return (HF_MESSENGER_TOKENS_KEY,)
    if not config.uses_msgshift_backbone and config.backbone_config.model_type == "swin":
        return (f"{_HF_SWIN}layernorm.weight", f"{_HF_SWIN}layernorm.bias")  # Transformers' unused final norm
    return ()


def describe_checkpoint(original: Mapping[str, torch.Tensor], config: TeViTConfig, fresh: tuple[str, ...]) -> str:
    """One line saying what was found and what starts fresh."""
    if config.uses_msgshift_backbone:
        backbone = f"PVTv2 {list(config.backbone_hidden_sizes)} x {list(config.backbone_depths)}"
    else:
        backbone = f"{config.backbone_config.model_type} depths {list(config.backbone_config.depths)}"
    if not config.uses_msgshift_backbone:
        family = f"TeViT or QueryInst {config.backbone_config.model_type} (one key layout)"
    else:
        family = "TeViT MsgShifT" if MESSENGER_TOKENS_KEY in original else "QueryInst (COCO) PVTv2"
    found = (
        f"Found a {family} checkpoint: {backbone} backbone, {config.num_head_stages} head stages, "
        f"{config.num_queries} proposals, {config.num_labels} classes"
    )
    return found + (f"; initialised fresh: {', '.join(fresh)}." if fresh else "; every model tensor loaded.")


def convert_original_state_dict(original: Mapping[str, torch.Tensor], config: TeViTConfig) -> dict[str, torch.Tensor]:
    """Official state dict -> state dict of `TeViTForVideoInstanceSegmentation(config)`.

    Raises `ValueError` naming every unmapped official key, every model key left unfilled (but the messenger tokens
    a QueryInst checkpoint lacks) and every shape mismatch (expected vs got).
    """
    converted = rename_original_state_dict(original)
    check_state_dict_matches(converted, expected_hf_shapes(config), may_be_missing=fresh_keys(original, config))
    return converted


def _shape(original: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in original:
        raise ValueError(f"Cannot infer the architecture: the checkpoint has no `{key}`.")
    return tuple(original[key].shape)


def _indices(original: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(match.group(1)) for key in original if (match := regex.fullmatch(key))})


def _consecutive_count(indices: list[int], what: str) -> int:
    if indices != list(range(len(indices))) or not indices:
        raise ValueError(f"Cannot infer the architecture: {what} indices must be 0..n-1, got {indices}.")
    return len(indices)


def _default_id2label(num_labels: int) -> dict[int, str]:
    if num_labels == len(YOUTUBE_VIS_2019_CLASSES):
        return dict(enumerate(YOUTUBE_VIS_2019_CLASSES))
    return {index: f"LABEL_{index}" for index in range(num_labels)}


def _infer_resnet_backbone(original: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """ResNet family (TeViT R50 and QueryInst R50/R101): depths and widths from the shapes, every other setting the
    official `tevit_r50.py` one (pytorch style, stem + stage 1 frozen, BatchNorms in eval mode)."""
    if "backbone.layer1.0.conv3.weight" not in original:
        raise ValueError("Only bottleneck ResNets (ResNet-50/101/152) convert; the checkpoint has no layer1.0.conv3.")
    depths = [
        _consecutive_count(_indices(original, rf"backbone\.layer{stage}\.(\d+)\.conv1\.weight"), f"layer{stage} block")
        for stage in range(1, 5)
    ]
    stem_width, num_channels = _shape(original, "backbone.conv1.weight")[:2]
    backbone_config = {
        **OFFICIAL_PRESETS["r50"]["backbone_config"],
        "num_channels": num_channels,
        "embedding_size": stem_width,
        "depths": depths,
        "hidden_sizes": [_shape(original, f"backbone.layer{stage}.0.conv3.weight")[0] for stage in range(1, 5)],
    }
    return {**OFFICIAL_PRESETS["r50"], "backbone_config": backbone_config, "num_channels": num_channels}


def _infer_swin_backbone(original: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Swin family (TeViT Swin-L, QueryInst Swin-L): widths, depths, heads, window and MLP ratio from the shapes
    (the bias tables are `((2w - 1)^2, heads)`); drop path and the rest from `tevit_swin-l_mstrain.py`."""
    embed_dim, num_channels, patch_size, _ = _shape(original, "backbone.patch_embed.projection.weight")
    num_stages = _consecutive_count(
        _indices(original, r"backbone\.stages\.(\d+)\.blocks\.0\.norm1\.weight"), "Swin stage"
    )
    depths, heads = [], []
    for stage in range(num_stages):
        depths.append(
            _consecutive_count(
                _indices(original, rf"backbone\.stages\.{stage}\.blocks\.(\d+)\.norm1\.weight"), "Swin block"
            )
        )
        table = _shape(original, f"backbone.stages.{stage}.blocks.0.attn.w_msa.relative_position_bias_table")
        heads.append(table[1])
    window_size = (round(table[0] ** 0.5) + 1) // 2
    mlp_width = _shape(original, "backbone.stages.0.blocks.0.ffn.layers.0.0.weight")[0]
    preset = OFFICIAL_PRESETS["swin_l_mstrain"]
    backbone_config = {
        **preset["backbone_config"],
        "num_channels": num_channels, "patch_size": patch_size, "embed_dim": embed_dim, "depths": depths,
        "num_heads": heads, "window_size": window_size, "mlp_ratio": mlp_width / embed_dim,
    }  # fmt: skip
    return {"backbone_config": backbone_config, "num_messenger_tokens": 0, "num_channels": num_channels}


def _infer_backbone(original: Mapping[str, torch.Tensor], head_dim: int) -> dict[str, Any]:
    # CODEPATH: TeViT R50 and QueryInst R50/R101 checkpoints have torchvision-style ResNet keys.
    if "backbone.conv1.weight" in original:
        return _infer_resnet_backbone(original)
    # CODEPATH: TeViT Swin-L and QueryInst Swin-L checkpoints have mmdet `SwinTransformer` keys.
    if "backbone.patch_embed.projection.weight" in original:
        return _infer_swin_backbone(original)
    num_stages = _consecutive_count(
        _indices(original, r"backbone\.layers\.(\d+)\.0\.projection\.weight"), "backbone stage"
    )
    fields: dict[str, list[int]] = {
        name: []
        for name in (
            "backbone_hidden_sizes", "backbone_depths", "backbone_num_attention_heads", "backbone_sr_ratios",
            "backbone_mlp_ratios", "backbone_patch_sizes", "backbone_strides", "backbone_paddings",
        )
    }  # fmt: skip
    num_channels = _shape(original, "backbone.layers.0.0.projection.weight")[1]
    for stage in range(num_stages):
        width, _, kernel, _ = _shape(original, f"backbone.layers.{stage}.0.projection.weight")
        depth = _consecutive_count(
            _indices(original, rf"backbone\.layers\.{stage}\.1\.(\d+)\.norm1\.weight"), f"stage {stage} block"
        )
        sr_key = f"backbone.layers.{stage}.1.0.attn.sr.weight"
        sr_ratio = _shape(original, sr_key)[-1] if sr_key in original else 1
        mlp_width = _shape(original, f"backbone.layers.{stage}.1.0.ffn.layers.0.weight")[0]
        if mlp_width % width != 0:
            raise ValueError(f"Backbone stage {stage}: MixFFN width {mlp_width} is not a multiple of {width}.")
        fields["backbone_hidden_sizes"].append(width)
        fields["backbone_depths"].append(depth)
        fields["backbone_num_attention_heads"].append(max(1, width // head_dim))
        fields["backbone_sr_ratios"].append(sr_ratio)
        fields["backbone_mlp_ratios"].append(mlp_width // width)
        fields["backbone_patch_sizes"].append(kernel)
        fields["backbone_strides"].append(FIRST_STAGE_PATCH_STRIDE if stage == 0 else LATER_STAGE_PATCH_STRIDE)
        fields["backbone_paddings"].append(kernel // 2)
    if MESSENGER_TOKENS_KEY not in original:
        # A COCO QueryInst PVTv2 checkpoint: TeViT adds the messenger tokens, which start from their fresh init.
        return {**fields, "num_channels": num_channels}
    _, num_messenger_tokens, token_channels = _shape(original, MESSENGER_TOKENS_KEY)
    if token_channels != num_channels:
        raise ValueError(
            f"backbone.msg_tokens has {token_channels} channels but the first patch embedding takes {num_channels}."
        )
    return {**fields, "num_channels": num_channels, "num_messenger_tokens": num_messenger_tokens}


def _infer_head(original: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    num_queries, hidden_size = _shape(original, "rpn_head.init_proposal_features.weight")
    num_stages = _consecutive_count(_indices(original, r"roi_head\.bbox_head\.(\d+)\.fc_cls\.weight"), "head stage")
    mask_stages = _indices(original, r"roi_head\.mask_head\.(\d+)\.conv_logits\.weight")
    if len(mask_stages) != num_stages:
        raise ValueError(f"The checkpoint has {num_stages} box head stages but {len(mask_stages)} mask head stages.")
    box, mask = "roi_head.bbox_head.0", "roi_head.mask_head.0"
    roi_area = _shape(original, f"{box}.instance_interactive_conv.fc_layer.weight")[1] // hidden_size
    box_roi_size = round(roi_area**0.5)
    if box_roi_size**2 * hidden_size != _shape(original, f"{box}.instance_interactive_conv.fc_layer.weight")[1]:
        raise ValueError("The box DynamicConv fc_layer input is not hidden_size * roi_size**2.")

    def count_linears(branch: str) -> int:
        indices = _indices(original, rf"roi_head\.bbox_head\.0\.{branch}\.(\d+)\.weight")
        return sum(1 for index in indices if len(_shape(original, f"{box}.{branch}.{index}.weight")) == 2)

    return {
        "num_queries": num_queries,
        "hidden_size": hidden_size,
        "num_head_stages": num_stages,
        "num_labels": _shape(original, f"{box}.fc_cls.weight")[0],
        "head_ffn_dim": _shape(original, f"{box}.ffn.layers.0.0.weight")[0],
        "dynamic_conv_dim": _shape(original, f"{box}.instance_interactive_conv.norm_in.weight")[0],
        "box_roi_size": box_roi_size,
        "num_cls_fcs": count_linears("cls_fcs"),
        "num_reg_fcs": count_linears("reg_fcs"),
        "mask_num_convs": len(_indices(original, r"roi_head\.mask_head\.0\.convs\.(\d+)\.conv\.weight")),
        "mask_conv_dim": _shape(original, f"{mask}.upsample.weight")[0],
        "mask_upsample_ratio": _shape(original, f"{mask}.upsample.weight")[-1],
    }


def infer_config_from_state_dict(
    original: Mapping[str, torch.Tensor], *, backbone_head_dim: int = DEFAULT_BACKBONE_HEAD_DIM, **flags: Any
) -> TeViTConfig:
    """TeViTConfig of an official MsgShifT checkpoint, inferred from its tensor shapes.

    Inferred: stage widths, depths, sr ratios, mlp ratios, patch sizes (strides/paddings by the PVTv2 rule),
    messenger tokens, queries, hidden size, head stages, classes, FFN and DynamicConv widths, cls/reg fc counts,
    box RoI size and the mask convs. Head counts leave no trace in shapes: backbone heads default to
    width // `backbone_head_dim` (PVTv2-B1..B5 convention; B0 uses head dim 32), head heads to the config
    default. `flags` set any other TeViTConfig field (e.g. `backbone_num_attention_heads`, `id2label`); a flag
    contradicting an inferred value raises `ValueError`.
    """
    inferred = {**_infer_backbone(original, backbone_head_dim), **_infer_head(original)}
    heads = flags.pop("backbone_num_attention_heads", None)
    if heads is not None:
        inferred["backbone_num_attention_heads"] = list(heads)
    elif "backbone_config" not in inferred:
        logger.info(
            "Backbone attention heads are not stored in the checkpoint; using %s (head dim %d).",
            inferred["backbone_num_attention_heads"],
            backbone_head_dim,
        )
    for name, value in flags.items():
        if name in inferred and value is not None and _normalise(value) != _normalise(inferred[name]):
            raise ValueError(f"`{name}`={value!r} contradicts the checkpoint, whose shapes give {inferred[name]!r}.")
    id2label = flags.pop("id2label", None)
    if id2label is None:
        id2label = _default_id2label(inferred["num_labels"])
    id2label = {int(index): str(name) for index, name in id2label.items()}
    if sorted(id2label) != list(range(inferred["num_labels"])):
        raise ValueError(
            f"id2label must name classes 0..{inferred['num_labels'] - 1} (the checkpoint's fc_cls has "
            f"{inferred['num_labels']} rows), got ids {sorted(id2label)}."
        )
    inferred.pop("num_labels")
    settings = {**inferred, **{name: value for name, value in flags.items() if value is not None}}
    return TeViTConfig(**settings, id2label=id2label, label2id={name: index for index, name in id2label.items()})


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def load_original_state_dict(checkpoint_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict of an official `.pth` (an mmcv dict with "state_dict", or a bare state dict), loaded safely."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    # torch.save writes a zip archive (PK..) or, in the legacy format, a pickle (protocol byte 0x80).
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise ValueError(f"{path} is not a PyTorch checkpoint (.pth): it is neither a torch.save zip nor a pickle.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} cannot be loaded with torch.load(weights_only=True): {error}. Re-save only its state_dict "
            "(tensors), or allow the reported global with torch.serialization.add_safe_globals."
        ) from error
    except Exception as error:  # torch.load fails on non-checkpoints with assorted errors (e.g. IndexError on text)
        raise ValueError(
            f"{path} is not a PyTorch checkpoint (.pth) that torch.load can read ({type(error).__name__}: {error})."
        ) from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a dict, got {type(checkpoint).__name__}.")
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, expected a dict of tensors.")
    not_tensors = sorted(key for key, value in state_dict.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{path}: these state_dict entries are not tensors: {not_tensors}")
    if state_dict and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state_dict):
        state_dict = {key.removeprefix(DATA_PARALLEL_PREFIX): value for key, value in state_dict.items()}
    return state_dict


def verify_model(model: torch.nn.Module, config: TeViTConfig, seed: int = 0) -> None:
    """Forward a small random clip in eval mode; raise `ValueError` if any output is not finite."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, VERIFY_NUM_FRAMES, config.num_channels, VERIFY_FRAME_SIZE, VERIFY_FRAME_SIZE)
    pixel_values = torch.randn(shape, generator=generator)
    model.eval()
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values)
    for name in ("class_logits", "pred_boxes", "selected_scores", "selected_boxes", "selected_mask_logits"):
        value = getattr(outputs, name)
        if not torch.isfinite(value).all():
            raise ValueError(f"Verification failed: `{name}` has non-finite values.")
    logger.info("Verification passed: finite outputs on a random %s clip.", tuple(shape))


def convert_checkpoint(
    checkpoint_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    id2label: Mapping[int, str] | None = None,
    *,
    verify: bool = False,
    overwrite: bool = False,
    **config_flags: Any,
) -> Path:
    """Convert an official `.pth` into a `save_pretrained` folder (safetensors + config [+ image processor]).

    The model loads the converted weights with `strict=True`. The folder is written into a temporary sibling
    and renamed into place, so a crash never leaves a half-written `output_dir`. `config_flags` go to
    `infer_config_from_state_dict`. Returns the output folder.
    """
    from .image_processing_tevit import TeViTImageProcessor
    from .modeling_tevit import TeViTForVideoInstanceSegmentation

    output_dir = Path(output_dir)
    # Entered first, so an output folder with earlier work is refused before the checkpoint is read.
    with staged_directory(output_dir, overwrite=overwrite) as staging:
        original = load_original_state_dict(checkpoint_path)
        logger.info("Loaded %d tensors from %s.", len(original), checkpoint_path)
        config = infer_config_from_state_dict(original, id2label=id2label, **config_flags)
        model = TeViTForVideoInstanceSegmentation(config)
        converted = rename_original_state_dict(original)
        fresh = fresh_keys(original, config)
        # Same checks as `convert_original_state_dict`, against the model just built (no second, meta build).
        expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        check_state_dict_matches(converted, expected, may_be_missing=fresh)
        model.load_state_dict(converted, strict=not fresh)
        logger.info("%s", describe_checkpoint(original, config, fresh))
        if verify:
            verify_model(model, config)
        model.save_pretrained(staging)
        TeViTImageProcessor().save_pretrained(staging)
    logger.info("Saved the converted model to %s.", output_dir)
    return output_dir


__all__ = [
    "KEY_RULES",
    "KeyRule",
    "check_state_dict_matches",
    "convert_checkpoint",
    "convert_hf_state_dict_to_original",
    "convert_original_state_dict",
    "expected_hf_shapes",
    "infer_config_from_state_dict",
    "load_original_state_dict",
    "rename_original_state_dict",
    "verify_model",
]
