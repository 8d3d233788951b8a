# Copyright 2026 The tevit-hf Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""PyTorch TeViT: MsgShifT backbone, FPN and a QueryInst cascade of spatio-temporal query interaction heads.

Faithful to the official implementation (hustvl/TeViT, mmdet 2.23) so converted checkpoints reproduce its outputs;
`../shared/spec/tevit_architecture.md` in the project documents every quirk kept here. Frames are always ordered
clip-major: the `N = B * T` axis holds the T frames of clip 0, then clip 1, ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import load_backbone
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, auto_docstring, can_return_tuple, logging
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_tevit import TeViTConfig
from .loss_tevit import TeViTLoss
from .ops_tevit import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    boxes_to_rois,
    decode_box_deltas,
    flatten_feature_pyramid,
    multi_level_roi_align,
)


logger = logging.get_logger(__name__)

# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------


@auto_docstring(custom_intro="Output of [`TeViTModel`]: the cascade of STQI head stages on the backbone and FPN.")
@dataclass
class TeViTModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_frames, num_queries, hidden_size)`):
        Query features after the last head stage.
    class_logits (`torch.FloatTensor` of shape `(batch_size, num_frames, num_queries, num_labels)`):
        Per-frame sigmoid class logits of the last stage.
    pred_boxes (`torch.FloatTensor` of shape `(batch_size, num_frames, num_queries, 4)`):
        Per-frame boxes of the last stage, normalized `(cx, cy, w, h)` relative to the unpadded frame.
    stage_class_logits (`tuple(torch.FloatTensor)`): per stage, `(batch_size, num_frames, num_queries, num_labels)`.
    stage_boxes (`tuple(torch.FloatTensor)`): per stage, refined `(x1, y1, x2, y2)` boxes in input pixels,
        `(batch_size, num_frames, num_queries, 4)`, with gradient to that stage's box deltas.
    stage_attention_features (`tuple(torch.FloatTensor)`): per stage, STQI attention output fed to the mask head,
        `(batch_size, num_frames, num_queries, hidden_size)`.
    image_sizes (`torch.LongTensor` of shape `(batch_size, 2)`): unpadded `(height, width)` of each clip.
    feature_maps (`tuple(torch.FloatTensor)`): FPN maps `(batch_size * num_frames, hidden_size, H_l, W_l)`,
        strides 4, 8, 16, 32, used by the mask branch.
    backbone_hidden_states (`tuple(torch.FloatTensor)`, *optional*): backbone stage outputs
        `(batch_size * num_frames, C_i, H_i, W_i)`, returned with `output_hidden_states=True`.
    fpn_hidden_states (`tuple(torch.FloatTensor)`, *optional*): the FPN maps, returned with
        `output_hidden_states=True`.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*): returned with `output_hidden_states=True`, recorded by
        the output-capturing hooks: the output of every backbone stage, `(batch_size * num_frames, C_i, H_i, W_i)`
        (the same maps as `backbone_hidden_states`; no initial embedding entry).
    attentions (`tuple(torch.FloatTensor)`, *optional*): returned with `output_attentions=True`, recorded by the
        output-capturing hooks: per backbone layer, the spatial-reduction attention weights
        `(batch_size * num_frames, num_heads_i, H_i * W_i [+ M], kv_length_i)` (patch then messenger-token queries).
    """

    last_hidden_state: torch.FloatTensor | None = None
    class_logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    stage_class_logits: tuple[torch.FloatTensor, ...] | None = None
    stage_boxes: tuple[torch.FloatTensor, ...] | None = None
    stage_attention_features: tuple[torch.FloatTensor, ...] | None = None
    image_sizes: torch.LongTensor | None = None
    feature_maps: tuple[torch.FloatTensor, ...] | None = None
    backbone_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fpn_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@auto_docstring(custom_intro="Output of [`TeViTForVideoInstanceSegmentation`].")
@dataclass
class TeViTVideoInstanceSegmentationOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*): total training loss, returned when `labels` are given.
    loss_dict (`dict[str, torch.FloatTensor]`, *optional*): every loss term per stage
        (`stage{s}_loss_cls`, `stage{s}_loss_bbox`, `stage{s}_loss_iou`, `stage{s}_loss_mask`), unweighted by stage.
    class_logits (`torch.FloatTensor` of shape `(batch_size, num_frames, num_queries, num_labels)`):
        Per-frame sigmoid class logits of the last stage.
    pred_boxes (`torch.FloatTensor` of shape `(batch_size, num_frames, num_queries, 4)`):
        Per-frame boxes of the last stage, normalized `(cx, cy, w, h)` relative to the unpadded frame.
    selected_scores (`torch.FloatTensor` of shape `(batch_size, num_selected_instances)`):
        Video-level score (mean over frames of the sigmoid probability) of the top-k (query, class) pairs,
        sorted by decreasing score. No threshold and no NMS, as officially.
    selected_labels (`torch.LongTensor` of shape `(batch_size, num_selected_instances)`): their class.
    selected_query_indices (`torch.LongTensor` of shape `(batch_size, num_selected_instances)`): their query.
    selected_boxes (`torch.FloatTensor` of shape `(batch_size, num_frames, num_selected_instances, 4)`):
        Their per-frame boxes, normalized `(cx, cy, w, h)` relative to the unpadded frame.
    selected_mask_logits (`torch.FloatTensor` of shape
        `(batch_size, num_frames, num_selected_instances, mask_size, mask_size)`):
        Their per-frame RoI mask logits for the selected class, in box coordinates (paste with the boxes).
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_frames, num_queries, hidden_size)`):
        Query features after the last head stage.
    auxiliary_outputs (`list[dict[str, torch.FloatTensor]]`): per earlier stage, `class_logits` and
        `pred_boxes` in the same formats as the last stage's.
    image_sizes (`torch.LongTensor` of shape `(batch_size, 2)`): unpadded `(height, width)` of each clip.
    backbone_hidden_states (`tuple(torch.FloatTensor)`, *optional*): backbone stage outputs.
    fpn_hidden_states (`tuple(torch.FloatTensor)`, *optional*): FPN maps.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*): per backbone stage output, see [`TeViTModelOutput`].
    attentions (`tuple(torch.FloatTensor)`, *optional*): per backbone layer attention weights, see
        [`TeViTModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.FloatTensor] | None = None
    class_logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    selected_scores: torch.FloatTensor | None = None
    selected_labels: torch.LongTensor | None = None
    selected_query_indices: torch.LongTensor | None = None
    selected_boxes: torch.FloatTensor | None = None
    selected_mask_logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    auxiliary_outputs: list[dict[str, torch.FloatTensor]] | None = None
    image_sizes: torch.LongTensor | None = None
    backbone_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fpn_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Shared building blocks
# ----------------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention on `(batch, heads, length, head_dim)` inputs; returns `(batch, length, heads, dim)`."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class TeViTAttention(nn.Module):
    """Multi-head attention with the parameters of `torch.nn.MultiheadAttention` (q/k/v split, bias, 1/sqrt(d)).

    Runs through the Transformers attention-interface switch (`config._attn_implementation`: eager / sdpa), except
    that `output_attentions=True` always takes the eager path so that the returned weights are real.
    """

    def __init__(self, config: TeViTConfig, stage_index: int | None = None):
        super().__init__()
        # Backbone stage `stage_index`, or the head stages when None.
        if stage_index is None:
            hidden_size, num_heads = config.hidden_size, config.head_num_attention_heads
        else:
            hidden_size = config.backbone_hidden_sizes[stage_index]
            num_heads = config.backbone_num_attention_heads[stage_index]
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.dropout = config.attention_dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def attend(
        self, queries: torch.Tensor, keys_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`queries` `(batch, L_q, C)`, `keys_values` `(batch, L_kv, C)` -> `(batch, L_q, C)` and the attention weights
        `(batch, heads, L_q, L_kv)` (None unless computed by the eager path)."""
        batch_size, query_length, hidden_size = queries.shape
        query_states = self.q_proj(queries).view(batch_size, query_length, self.num_heads, -1).transpose(1, 2)
        key_states = self.k_proj(keys_values).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        value_states = self.v_proj(keys_values).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        attention_interface: Callable = eager_attention_forward
        # Only the eager path computes the weights: recording them needs it whatever the configured implementation.
        if not kwargs.get("output_attentions", False):
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            None,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
        )
        return self.out_proj(attn_output.reshape(batch_size, query_length, hidden_size)), attn_weights

    def forward(
        self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention: `(batch, length, C)` -> `(batch, length, C)` and the attention weights."""
        return self.attend(hidden_states, hidden_states, **kwargs)


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (the first axis), as timm/mmcv `DropPath`."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    random_tensor = keep_prob + torch.rand(shape, dtype=hidden_states.dtype, device=hidden_states.device)
    return hidden_states.div(keep_prob) * random_tensor.floor_()


class TeViTDropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def constant_patch_conv(tokens: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Apply `conv` to an infinite constant image whose colour is each token: `tokens @ sum_k(W).T + b`.

    This is how MsgShifT projects messenger tokens through the patch-embedding and spatial-reduction convs.
    `tokens` `(N, M, C_in)` -> `(N, M, C_out)`.
    """
    return F.linear(tokens, conv.weight.sum(dim=(2, 3)), conv.bias)


# ----------------------------------------------------------------------------------------------------------------------
# MsgShifT backbone
# ----------------------------------------------------------------------------------------------------------------------


class TeViTOverlapPatchEmbeddings(nn.Module):
    """Overlapping strided conv + LayerNorm; messenger tokens go through the same conv as constant patches."""

    def __init__(self, config: TeViTConfig, stage_index: int, in_channels: int):
        super().__init__()
        hidden_size = config.backbone_hidden_sizes[stage_index]
        self.projection = nn.Conv2d(
            in_channels,
            hidden_size,
            kernel_size=config.backbone_patch_sizes[stage_index],
            stride=config.backbone_strides[stage_index],
            padding=config.backbone_paddings[stage_index],
        )
        self.layer_norm = nn.LayerNorm(hidden_size, eps=config.backbone_layer_norm_eps)

    def forward(
        self, pixel_values: torch.Tensor, messenger_tokens: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        embeddings = self.projection(pixel_values)
        _, _, height, width = embeddings.shape
        embeddings = self.layer_norm(embeddings.flatten(2).transpose(1, 2))
        if messenger_tokens is not None:
            messenger_tokens = self.layer_norm(constant_patch_conv(messenger_tokens, self.projection))
        return embeddings, messenger_tokens, height, width


class TeViTSpatialReductionAttention(TeViTAttention):
    """PVTv2 spatial-reduction attention with messenger tokens.

    Patch and messenger tokens are all queries. Keys/values are the spatially reduced patch tokens plus the messenger
    tokens (projected by the reduction conv as constant patches) when `sr_ratio > 1`; with `sr_ratio == 1` they are the
    patch tokens only (official quirk: messenger tokens are then not keys/values).
    """

    def __init__(self, config: TeViTConfig, stage_index: int):
        super().__init__(config, stage_index)
        hidden_size = config.backbone_hidden_sizes[stage_index]
        sr_ratio = config.backbone_sr_ratios[stage_index]
        self.sr_ratio = sr_ratio
        # CODEPATH: PVTv2 stages with sr_ratio > 1 (all but the last) own a reduction conv and norm.
        if sr_ratio > 1:
            self.spatial_reduction = nn.Conv2d(hidden_size, hidden_size, kernel_size=sr_ratio, stride=sr_ratio)
            self.layer_norm = nn.LayerNorm(hidden_size, eps=config.backbone_layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        messenger_tokens: torch.Tensor | None,
        height: int,
        width: int,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`hidden_states` `(N, H*W, C)`, `messenger_tokens` `(N, M, C)` or None -> `(N, H*W [+ M], C)` and the
        attention weights `(N, heads, H*W [+ M], L_kv)` (None unless computed by the eager path)."""
        queries = hidden_states if messenger_tokens is None else torch.cat([hidden_states, messenger_tokens], dim=1)
        if self.sr_ratio > 1:
            num_frames, _, channels = hidden_states.shape
            # A channels-last view instead of a transposed copy; the conv then writes channels-last too, which makes
            # the flatten + transpose below a free view.
            spatial = hidden_states.view(num_frames, height, width, channels).permute(0, 3, 1, 2)
            keys_values = self.spatial_reduction(spatial).flatten(2).transpose(1, 2)
            if messenger_tokens is not None:
                reduced_messengers = constant_patch_conv(messenger_tokens, self.spatial_reduction)
                keys_values = torch.cat([keys_values, reduced_messengers], dim=1)
            keys_values = self.layer_norm(keys_values)
        else:
            keys_values = hidden_states
        return self.attend(queries, keys_values, **kwargs)


class TeViTMixFeedForward(nn.Module):
    """PVTv2 MixFFN: fc1 -> 3x3 depth-wise conv -> activation -> fc2. Messenger tokens take the constant-patch path
    (the depth-wise conv becomes a per-channel scale by its kernel sum plus its bias)."""

    def __init__(self, config: TeViTConfig, stage_index: int):
        super().__init__()
        hidden_size = config.backbone_hidden_sizes[stage_index]
        intermediate_size = hidden_size * config.backbone_mlp_ratios[stage_index]
        self.dense1 = nn.Linear(hidden_size, intermediate_size)
        self.depthwise_conv = nn.Conv2d(
            intermediate_size, intermediate_size, kernel_size=3, padding=1, groups=intermediate_size
        )
        self.activation = ACT2FN[config.backbone_hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.dense2 = nn.Linear(intermediate_size, hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, messenger_tokens: torch.Tensor | None, height: int, width: int
    ) -> torch.Tensor:
        """`(N, H*W, C)` and `(N, M, C)` or None -> `(N, H*W [+ M], C)`."""
        num_frames, _, _ = hidden_states.shape
        hidden_states = self.dense1(hidden_states)
        # Channels-last view (no transposed copy), as in the spatial-reduction attention.
        spatial = hidden_states.view(num_frames, height, width, -1).permute(0, 3, 1, 2)
        hidden_states = self.depthwise_conv(spatial).flatten(2).transpose(1, 2)
        if messenger_tokens is not None:
            messenger_tokens = self.dense1(messenger_tokens)
            kernel_sum = self.depthwise_conv.weight.sum(dim=(1, 2, 3))
            messenger_tokens = messenger_tokens * kernel_sum + self.depthwise_conv.bias
            hidden_states = torch.cat([hidden_states, messenger_tokens], dim=1)
        hidden_states = self.dropout(self.activation(hidden_states))
        return self.dropout(self.dense2(hidden_states))


class TeViTBackboneLayer(nn.Module):
    """One MsgShifT block: SR attention and MixFFN over patch + messenger tokens, then the temporal messenger shift."""

    def __init__(
        self,
        config: TeViTConfig,
        stage_index: int,
        drop_path_rate: float,
        shift_strides: list[int] | None,
        messengers_read_later: bool = True,
    ):
        super().__init__()
        hidden_size = config.backbone_hidden_sizes[stage_index]
        self.layer_norm_1 = nn.LayerNorm(hidden_size, eps=config.backbone_layer_norm_eps)
        self.attention = TeViTSpatialReductionAttention(config, stage_index)
        self.drop_path = TeViTDropPath(drop_path_rate)
        self.layer_norm_2 = nn.LayerNorm(hidden_size, eps=config.backbone_layer_norm_eps)
        self.mlp = TeViTMixFeedForward(config, stage_index)
        # Ablation (paper Tab. 4/6): what happens to the messenger tokens where the block shifts them.
        manipulation = config.messenger_manipulation
        self.shift_strides = shift_strides if manipulation == "shift" else None
        # CODEPATH: only the "MHSA + FFN" messenger ablation owns a mixing layer, in the blocks that would shift and
        # whose messenger tokens are read afterwards (not the last block before the tokens are dropped).
        if manipulation == "mhsa_ffn" and shift_strides is not None and messengers_read_later:
            self.messenger_mixer = TeViTTemporalMixingLayer(config, stage_index)
        else:
            self.messenger_mixer = None

    def forward(
        self,
        hidden_states: torch.Tensor,
        messenger_tokens: torch.Tensor | None,
        height: int,
        width: int,
        num_frames: int,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`hidden_states` `(B*T, H*W, C)`, `messenger_tokens` `(B*T, M, C)` or None."""
        num_patches = hidden_states.shape[1]
        normed_messengers = None if messenger_tokens is None else self.layer_norm_1(messenger_tokens)
        attention_output, _ = self.attention(
            self.layer_norm_1(hidden_states), normed_messengers, height, width, **kwargs
        )
        residual = hidden_states if messenger_tokens is None else torch.cat([hidden_states, messenger_tokens], dim=1)
        # One drop-path mask per frame covers its patch and messenger tokens together (official behaviour).
        residual = residual + self.drop_path(attention_output)
        hidden_states, messenger_tokens = self._split(residual, num_patches, messenger_tokens is not None)

        normed_messengers = None if messenger_tokens is None else self.layer_norm_2(messenger_tokens)
        mlp_output = self.mlp(self.layer_norm_2(hidden_states), normed_messengers, height, width)
        residual = residual + self.drop_path(mlp_output)
        hidden_states, messenger_tokens = self._split(residual, num_patches, messenger_tokens is not None)
        if messenger_tokens is not None and self.shift_strides is not None:
            messenger_tokens = shift_messenger_tokens(messenger_tokens, self.shift_strides, num_frames)
        elif messenger_tokens is not None and self.messenger_mixer is not None:
            messenger_tokens = self._mix_messengers(messenger_tokens, num_frames)
        return hidden_states, messenger_tokens

    def _mix_messengers(self, messenger_tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        """One attention + FFN layer over the T x M messenger tokens of each clip, `(B*T, M, C)` -> same shape."""
        total_frames, num_tokens, channels = messenger_tokens.shape
        per_clip = messenger_tokens.reshape(total_frames // num_frames, num_frames * num_tokens, channels)
        return self.messenger_mixer(per_clip).reshape(total_frames, num_tokens, channels)

    @staticmethod
    def _split(tokens: torch.Tensor, num_patches: int, has_messengers: bool):
        if not has_messengers:
            return tokens, None
        return tokens[:, :num_patches], tokens[:, num_patches:]


def shift_messenger_tokens(messenger_tokens: torch.Tensor, shift_strides: list[int], num_frames: int) -> torch.Tensor:
    """Cyclically roll token group g by `shift_strides[g]` frames along time, per clip.

    `messenger_tokens` `(B*T, M, C)` clip-major; the M tokens form `len(shift_strides)` equal groups (`torch.chunk`).
    `torch.roll(+1)` moves frame t's group to frame t+1 and frame T-1's to frame 0 (wrap-around, as officially).
    """
    total_frames, num_tokens, channels = messenger_tokens.shape
    grouped = messenger_tokens.view(total_frames // num_frames, num_frames, num_tokens, channels)
    groups = torch.chunk(grouped, len(shift_strides), dim=2)
    shifted = [torch.roll(group, shifts=stride, dims=1) for group, stride in zip(groups, shift_strides)]
    return torch.cat(shifted, dim=2).view(total_frames, num_tokens, channels)


class TeViTTemporalMixingLayer(nn.Module):
    """Ablation layer (not in the released model): pre-norm attention + FFN over a token sequence of a backbone
    stage, `(batch, L, C)` -> `(batch, L, C)`. The FFN is a plain MLP with the stage's MLP ratio; no position encoding.

    Mixes the messenger tokens of a clip (`messenger_manipulation="mhsa_ffn"`) or the T frames of each position of a
    stage output (`frame_aggregation="mhsa_ffn"`)."""

    def __init__(self, config: TeViTConfig, stage_index: int):
        super().__init__()
        hidden_size = config.backbone_hidden_sizes[stage_index]
        intermediate_size = hidden_size * config.backbone_mlp_ratios[stage_index]
        self.layer_norm_1 = nn.LayerNorm(hidden_size, eps=config.backbone_layer_norm_eps)
        self.attention = TeViTAttention(config, stage_index)
        self.layer_norm_2 = nn.LayerNorm(hidden_size, eps=config.backbone_layer_norm_eps)
        self.dense1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[config.backbone_hidden_act]
        self.dense2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attention(self.layer_norm_1(hidden_states))[0]
        return hidden_states + self.dense2(self.activation(self.dense1(self.layer_norm_2(hidden_states))))


class TeViTTemporalConv(nn.Module):
    """Ablation layer (not in the released model): residual depth-wise conv along time (kernel 3, zero padding),
    the same kernel at every position of a stage output; `C * 3 + C` parameters."""

    def __init__(self, config: TeViTConfig, stage_index: int):
        super().__init__()
        hidden_size = config.backbone_hidden_sizes[stage_index]
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=3, padding=1, groups=hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(batch, T, C)` sequences over time -> same shape."""
        return hidden_states + self.conv(hidden_states.transpose(1, 2)).transpose(1, 2)


def messengers_are_live(config: TeViTConfig, stage_index: int) -> bool:
    """Whether messenger tokens can influence stage `stage_index`'s output: not in a last stage with `sr_ratio == 1`,
    where they are never keys/values (official quirk)."""
    # Past the last stage the tokens are dropped; in a last stage with sr_ratio 1 (every PVTv2 layout) they are dead.
    is_past_last = stage_index >= config.num_backbone_stages
    return not is_past_last and not (
        stage_index == config.num_backbone_stages - 1 and config.backbone_sr_ratios[stage_index] == 1
    )


class TeViTBackboneStage(nn.Module):
    def __init__(self, config: TeViTConfig, stage_index: int, drop_path_rates: list[float], uses_messengers: bool):
        super().__init__()
        in_channels = config.num_channels if stage_index == 0 else config.backbone_hidden_sizes[stage_index - 1]
        self.patch_embeddings = TeViTOverlapPatchEmbeddings(config, stage_index, in_channels)
        depth = config.backbone_depths[stage_index]
        strides = list(config.messenger_shift_strides)
        reversed_strides = [-stride for stride in strides]
        layers = []
        for layer_index in range(depth):
            # Odd blocks undo the shift of the even block before them; an unpaired last block does not shift.
            if layer_index == depth - 1 and depth % 2 == 1:
                layer_strides = None
            else:
                layer_strides = strides if layer_index % 2 == 0 else reversed_strides
            is_last = layer_index == depth - 1
            read_later = uses_messengers and (not is_last or messengers_are_live(config, stage_index + 1))
            layers.append(
                TeViTBackboneLayer(config, stage_index, drop_path_rates[layer_index], layer_strides, read_later)
            )
        self.layers = nn.ModuleList(layers)
        self.layer_norm = nn.LayerNorm(config.backbone_hidden_sizes[stage_index], eps=config.backbone_layer_norm_eps)
        self.uses_messengers = uses_messengers
        self.frame_aggregation = None
        # CODEPATH: no released checkpoint has a frame-aggregation layer; the Tab. 7 ablation adds one per live stage.
        if config.frame_aggregation != "none" and messengers_are_live(config, stage_index):
            # CODEPATH: ablation only (no checkpoint): "conv" is a temporal conv, "mhsa_ffn" a mixing layer.
            layer_class = TeViTTemporalConv if config.frame_aggregation == "conv" else TeViTTemporalMixingLayer
            self.frame_aggregation = layer_class(config, stage_index)

    def forward(
        self,
        pixel_values: torch.Tensor,
        messenger_tokens: torch.Tensor | None,
        num_frames: int,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`pixel_values` `(B*T, C_in, H, W)` -> feature map `(B*T, C, H', W')` and messenger tokens `(B*T, M, C)`."""
        if not self.uses_messengers:
            messenger_tokens = None
        hidden_states, messenger_tokens, height, width = self.patch_embeddings(pixel_values, messenger_tokens)
        for layer in self.layers:
            hidden_states, messenger_tokens = layer(
                hidden_states, messenger_tokens, height, width, num_frames, **kwargs
            )
        hidden_states = self.layer_norm(hidden_states)
        if messenger_tokens is not None:
            messenger_tokens = self.layer_norm(messenger_tokens)
        if self.frame_aggregation is not None:
            hidden_states = self._aggregate_frames(hidden_states, num_frames)
        feature_map = hidden_states.transpose(1, 2).reshape(hidden_states.shape[0], -1, height, width)
        return feature_map, messenger_tokens

    def _aggregate_frames(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The frame-aggregation layer over the T frames of every position of each clip, `(B*T, HW, C)`."""
        total_frames, num_positions, channels = hidden_states.shape
        batch_size = total_frames // num_frames
        sequences = hidden_states.view(batch_size, num_frames, num_positions, channels).transpose(1, 2)
        sequences = self.frame_aggregation(sequences.reshape(batch_size * num_positions, num_frames, channels))
        sequences = sequences.view(batch_size, num_positions, num_frames, channels).transpose(1, 2)
        return sequences.reshape(total_frames, num_positions, channels)


class TeViTMsgShiftBackbone(nn.Module):
    """MsgShifT: PVTv2 whose per-frame messenger tokens are shifted across the frames of a clip.

    Messenger tokens are created once at pixel level `(1, M, num_channels)` and re-projected by every stage's patch
    embedding. In the last stage with `sr_ratio == 1` they are never keys/values and are discarded afterwards, so that
    provably dead computation is skipped (outputs are bit-identical).
    """

    def __init__(self, config: TeViTConfig):
        super().__init__()
        self.config = config
        self.messenger_tokens = nn.Parameter(torch.zeros(1, config.num_messenger_tokens, config.num_channels))
        total_depth = sum(config.backbone_depths)
        rates = [config.drop_path_rate * index / max(total_depth - 1, 1) for index in range(total_depth)]
        stages, offset = [], 0
        for stage_index, depth in enumerate(config.backbone_depths):
            # CODEPATH: every released MsgShifT checkpoint has messenger tokens; 0 gives a plain PVTv2 backbone.
            uses_messengers = config.num_messenger_tokens > 0 and messengers_are_live(config, stage_index)
            stages.append(TeViTBackboneStage(config, stage_index, rates[offset : offset + depth], uses_messengers))
            offset += depth
        self.stages = nn.ModuleList(stages)

    def forward(
        self, pixel_values: torch.Tensor, num_frames: int, **kwargs: Unpack[TransformersKwargs]
    ) -> list[torch.Tensor]:
        """`pixel_values` `(B*T, 3, H, W)` clip-major -> 4 maps `(B*T, C_i, H/4..H/32, W/4..W/32)`."""
        messenger_tokens = None
        # CODEPATH: 0 messenger tokens = the "STQI only" variants without messenger shift.
        if self.config.num_messenger_tokens > 0:
            messenger_tokens = self.messenger_tokens
            # CODEPATH: messenger tokens at inference ablation (paper Tab. 12); training always uses the learned ones.
            if not self.training and self.config.inference_messenger_tokens != "learned":
                messenger_tokens = self._replacement_messenger_tokens()
            messenger_tokens = messenger_tokens.expand(pixel_values.shape[0], -1, -1).to(pixel_values.dtype)
        feature_maps = []
        hidden_states = pixel_values
        for stage in self.stages:
            hidden_states, messenger_tokens = stage(hidden_states, messenger_tokens, num_frames, **kwargs)
            feature_maps.append(hidden_states)
        return feature_maps

    def _replacement_messenger_tokens(self) -> torch.Tensor:
        """Zeros, or a fixed draw (seed 0, so evaluations repeat) from the messenger-token initialisation."""
        tokens = torch.zeros(self.messenger_tokens.shape, dtype=torch.float32)
        # CODEPATH: ablation only (paper Tab. 12), no checkpoint sets it: "random" instead of "zero" tokens.
        if self.config.inference_messenger_tokens == "random":
            generator = torch.Generator().manual_seed(0)
            nn.init.trunc_normal_(tokens, std=self.config.initializer_range, generator=generator)
        return tokens.to(self.messenger_tokens.device)


class TeViTFeaturePyramidNetwork(nn.Module):
    """mmdet FPN (no norm, no activation): 1x1 laterals, nearest top-down addition, 3x3 output convs.

    `in_channels` are the backbone's widths, one per level (`TeViTModel` reads them from the backbone it built).
    """

    def __init__(self, config: TeViTConfig, in_channels: list[int]):
        super().__init__()
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(channels, config.hidden_size, kernel_size=1) for channels in in_channels
        )
        self.output_convs = nn.ModuleList(
            nn.Conv2d(config.hidden_size, config.hidden_size, kernel_size=3, padding=1) for _ in in_channels
        )

    def forward(self, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(feature_map) for conv, feature_map in zip(self.lateral_convs, feature_maps)]
        for level in range(len(laterals) - 1, 0, -1):
            laterals[level - 1] = laterals[level - 1] + F.interpolate(
                laterals[level], size=laterals[level - 1].shape[-2:], mode="nearest"
            )
        return [conv(lateral) for conv, lateral in zip(self.output_convs, laterals)]


# ----------------------------------------------------------------------------------------------------------------------
# Head: STQI stages and dynamic mask heads
# ----------------------------------------------------------------------------------------------------------------------


class TeViTDynamicConv(nn.Module):
    """Sparse R-CNN dynamic instance interaction: each query generates the two 1x1 kernels applied to its RoI."""

    def __init__(self, config: TeViTConfig, roi_size: int, with_output_projection: bool):
        super().__init__()
        hidden_size, dynamic_dim = config.hidden_size, config.dynamic_conv_dim
        self.hidden_size = hidden_size
        self.dynamic_dim = dynamic_dim
        self.dynamic_layer = nn.Linear(hidden_size, 2 * hidden_size * dynamic_dim)
        self.layer_norm_in = nn.LayerNorm(dynamic_dim, eps=config.head_layer_norm_eps)
        self.layer_norm_out = nn.LayerNorm(hidden_size, eps=config.head_layer_norm_eps)
        self.activation = nn.ReLU(inplace=False)
        self.with_output_projection = with_output_projection
        if with_output_projection:
            self.output_projection = nn.Linear(hidden_size * roi_size**2, hidden_size)
            self.output_layer_norm = nn.LayerNorm(hidden_size, eps=config.head_layer_norm_eps)

    def forward(self, queries: torch.Tensor, roi_features: torch.Tensor) -> torch.Tensor:
        """`queries` `(n, D)`, `roi_features` `(n, D, S, S)` -> `(n, D)` with the projection, else `(n, S*S, D)`."""
        parameters = self.dynamic_layer(queries)
        split = self.hidden_size * self.dynamic_dim
        kernel_in = parameters[:, :split].view(-1, self.hidden_size, self.dynamic_dim)
        kernel_out = parameters[:, split:].view(-1, self.dynamic_dim, self.hidden_size)
        features = roi_features.flatten(2).transpose(1, 2)
        features = self.activation(self.layer_norm_in(torch.bmm(features, kernel_in)))
        features = self.activation(self.layer_norm_out(torch.bmm(features, kernel_out)))
        if self.with_output_projection:
            features = self.activation(self.output_layer_norm(self.output_projection(features.flatten(1))))
        return features


class TeViTLinearLayerNormReLU(nn.Module):
    """`Linear (no bias) -> LayerNorm -> ReLU`, one block of the class/box branches."""

    def __init__(self, config: TeViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.head_layer_norm_eps)
        self.activation = nn.ReLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.layer_norm(self.dense(hidden_states)))


@dataclass
class TeViTStageOutput:
    """Outputs of one STQI stage, all `(N = B*T, Q, ...)` frame-major."""

    class_logits: torch.Tensor
    boxes: torch.Tensor
    query_features: torch.Tensor
    attention_features: torch.Tensor


class TeViTSpatioTemporalQueryStage(nn.Module):
    """One cascade stage: the DII head of QueryInst with spatio-temporal query interaction (STQI).

    The same attention module and norm (post-norm) run first over the queries of a frame, then over the frames of each
    query; then the dynamic conv with the RoI features, the FFN and the class/box branches.
    """

    def __init__(self, config: TeViTConfig):
        super().__init__()
        self.config = config
        hidden_size = config.hidden_size
        self.self_attention = TeViTAttention(config)
        self.self_attention_layer_norm = nn.LayerNorm(hidden_size, eps=config.head_layer_norm_eps)
        self.dynamic_conv = TeViTDynamicConv(config, config.box_roi_size, with_output_projection=True)
        self.dynamic_conv_layer_norm = nn.LayerNorm(hidden_size, eps=config.head_layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.fc1 = nn.Linear(hidden_size, config.head_ffn_dim)
        self.activation = ACT2FN[config.head_hidden_act]
        self.fc2 = nn.Linear(config.head_ffn_dim, hidden_size)
        self.final_layer_norm = nn.LayerNorm(hidden_size, eps=config.head_layer_norm_eps)
        self.class_fcs = nn.ModuleList(TeViTLinearLayerNormReLU(config) for _ in range(config.num_cls_fcs))
        self.box_fcs = nn.ModuleList(TeViTLinearLayerNormReLU(config) for _ in range(config.num_reg_fcs))
        self.class_predictor = nn.Linear(hidden_size, config.num_labels)
        self.box_delta_predictor = nn.Linear(hidden_size, 4)

    def _query_interaction(self, queries: torch.Tensor, num_frames: int) -> torch.Tensor:
        """`(B*T, Q, D)` -> `(B*T, Q, D)`. STQI (Eq. 4): spatial then temporal attention with shared weights;
        the `query_interaction` ablations keep one of the passes, or attend over all T x Q queries of a clip at once.
        """
        mode = self.config.query_interaction
        total_frames, num_queries, hidden_size = queries.shape
        batch_size = total_frames // num_frames
        if mode == "fused":
            fused = self._attend(queries.reshape(batch_size, num_frames * num_queries, hidden_size))
            return fused.reshape(total_frames, num_queries, hidden_size)
        if mode in ("stqi", "spatial"):
            queries = self._attend(queries)
        if mode == "spatial":
            return queries
        temporal = queries.view(batch_size, num_frames, num_queries, hidden_size).transpose(1, 2)
        temporal = self._attend(temporal.reshape(batch_size * num_queries, num_frames, hidden_size))
        temporal = temporal.view(batch_size, num_queries, num_frames, hidden_size).transpose(1, 2)
        return temporal.reshape(total_frames, num_queries, hidden_size)

    def _attend(self, queries: torch.Tensor) -> torch.Tensor:
        """Post-norm self-attention with residual over `(batch, length, D)`."""
        return self.self_attention_layer_norm(queries + self.dropout(self.self_attention(queries)[0]))

    def forward(
        self,
        feature_maps: list[torch.Tensor],
        boxes: torch.Tensor,
        queries: torch.Tensor,
        num_frames: int,
        flat_features: torch.Tensor | None = None,
    ) -> TeViTStageOutput:
        """
        Args:
            feature_maps: FPN maps `(B*T, D, H_l, W_l)`.
            boxes: `(B*T, Q, 4)` current xyxy boxes in input pixels (detached), float32.
            queries: `(B*T, Q, D)` query features.
            flat_features: `flatten_feature_pyramid(feature_maps)`, shared by the stages (computed when None).
        """
        total_frames, num_queries, hidden_size = queries.shape
        roi_features = multi_level_roi_align(
            feature_maps,
            boxes_to_rois(boxes),
            self.config.box_roi_size,
            self.feature_strides,
            self.config.roi_sampling_ratio,
            self.config.roi_finest_scale,
            flat_features=flat_features,
        )
        attention_features = self._query_interaction(queries, num_frames)
        flat_queries = attention_features.reshape(-1, hidden_size)
        interaction = self.dynamic_conv(flat_queries, roi_features)
        object_features = self.dynamic_conv_layer_norm(flat_queries + self.dropout(interaction))
        ffn_output = self.fc2(self.dropout(self.activation(self.fc1(object_features))))
        object_features = self.final_layer_norm(object_features + self.dropout(ffn_output))

        class_features = object_features
        for layer in self.class_fcs:
            class_features = layer(class_features)
        box_features = object_features
        for layer in self.box_fcs:
            box_features = layer(box_features)
        class_logits = self.class_predictor(class_features).view(total_frames, num_queries, -1)
        deltas = self.box_delta_predictor(box_features).view(total_frames, num_queries, 4)
        refined_boxes = decode_box_deltas(
            boxes, deltas, self.config.bbox_delta_means, self.config.bbox_delta_stds, self.config.bbox_wh_ratio_clip
        )
        return TeViTStageOutput(
            class_logits=class_logits,
            boxes=refined_boxes,
            query_features=object_features.view(total_frames, num_queries, hidden_size),
            attention_features=attention_features,
        )

    @property
    def feature_strides(self) -> list[int]:
        return feature_strides(self.config)


def feature_strides(config: TeViTConfig) -> list[int]:
    """Strides of the FPN levels (4, 8, 16, 32 for PVTv2 and every Transformers backbone), see `TeViTConfig`."""
    return config.feature_strides


class TeViTMaskConvLayer(nn.Module):
    """`Conv3x3 (no bias) -> BatchNorm -> ReLU`."""

    def __init__(self, config: TeViTConfig, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, config.mask_conv_dim, kernel_size=3, padding=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(config.mask_conv_dim, eps=config.batch_norm_eps)
        self.activation = nn.ReLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.batch_norm(self.conv(hidden_states)))


class TeViTDynamicMaskHead(nn.Module):
    """QueryInst dynamic mask head: dynamic conv on 14x14 RoI features, 4 convs, x2 deconv, per-class logits."""

    def __init__(self, config: TeViTConfig):
        super().__init__()
        self.dynamic_conv = TeViTDynamicConv(config, config.mask_roi_size, with_output_projection=False)
        self.convs = nn.ModuleList(
            TeViTMaskConvLayer(config, config.hidden_size if index == 0 else config.mask_conv_dim)
            for index in range(config.mask_num_convs)
        )
        # CODEPATH: official heads have 4 convs; a conv-free head feeds the RoI features to the upsampler.
        upsample_in = config.mask_conv_dim if config.mask_num_convs > 0 else config.hidden_size
        self.upsample = nn.ConvTranspose2d(
            upsample_in,
            config.mask_conv_dim,
            kernel_size=config.mask_upsample_ratio,
            stride=config.mask_upsample_ratio,
        )
        self.activation = nn.ReLU()
        self.mask_predictor = nn.Conv2d(config.mask_conv_dim, config.num_labels, kernel_size=1)
        self.roi_size = config.mask_roi_size

    def forward(self, roi_features: torch.Tensor, attention_features: torch.Tensor) -> torch.Tensor:
        """`roi_features` `(n, D, S, S)`, `attention_features` `(n, D)` -> `(n, num_labels, 2S, 2S)` logits."""
        features = self.dynamic_conv(attention_features, roi_features)
        features = features.transpose(1, 2).reshape(features.shape[0], -1, self.roi_size, self.roi_size)
        for layer in self.convs:
            features = layer(features)
        features = self.activation(self.upsample(features))
        return self.mask_predictor(features)


# ----------------------------------------------------------------------------------------------------------------------
# Pretrained model base, base model, task model
# ----------------------------------------------------------------------------------------------------------------------


@auto_docstring(custom_intro="Base class of the TeViT models: weight initialisation and loading.")
class TeViTPreTrainedModel(PreTrainedModel):
    config: TeViTConfig
    config_class = TeViTConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _no_split_modules = ["TeViTBackboneLayer", "TeViTSpatioTemporalQueryStage", "TeViTDynamicMaskHead"]
    # `hidden_states`: the output map of every backbone stage (what the FPN reads; no initial-embedding entry), so
    # negative `output_hidden_states` indices count backbone stages. `attentions`: the spatial-reduction attention
    # weights of every backbone layer.
    _can_record_outputs = {
        "hidden_states": OutputRecorder(
            TeViTBackboneStage,
            index=0,
            capture_initial_hidden_state=False,
            num_hidden_layers_key="num_backbone_stages",
        ),
        "attentions": OutputRecorder(TeViTSpatialReductionAttention, index=1),
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Official initialisation, one module at a time: PVTv2 init in the backbone, Xavier in the FPN and heads
        (mmdet defaults), the class-prior bias on the class logits.

        The scheme of a leaf (`nn.Linear`, `nn.Conv2d`, ...) depends on the part of the model that owns it, found from
        its ancestors; modules outside those parts get the generic Transformers init.
        """
        if isinstance(module, TeViTMsgShiftBackbone):
            init.trunc_normal_(module.messenger_tokens, std=self.config.initializer_range)
            return
        ancestors = self._ancestors(module)
        parent = ancestors[-1] if ancestors else None
        owner = next(
            (
                ancestor
                for ancestor in reversed(ancestors)
                if isinstance(
                    ancestor,
                    (
                        TeViTMsgShiftBackbone,
                        TeViTFeaturePyramidNetwork,
                        TeViTSpatioTemporalQueryStage,
                        TeViTDynamicMaskHead,
                    ),
                )
            ),
            None,
        )
        if isinstance(owner, TeViTMsgShiftBackbone):
            _init_backbone_leaf(module, parent)
        elif isinstance(owner, TeViTFeaturePyramidNetwork):
            if isinstance(module, nn.Conv2d):
                init.xavier_uniform_(module.weight)
                init.zeros_(module.bias)
        elif owner is not None:
            _init_head_leaf(module, parent, owner, self.config.class_prior_prob)
        elif isinstance(parent, TeViTModel) and module is parent.proposal_boxes:
            proposal_boxes = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand_as(module.weight)
            init.copy_(module.weight, proposal_boxes)
        elif isinstance(parent, TeViTModel) and module is parent.proposal_features:
            init.normal_(module.weight, mean=0.0, std=1.0)
        else:
            super()._init_weights(module)

    def _ancestors(self, module: nn.Module) -> list[nn.Module]:
        """The modules from `self` down to the parent of `module` (empty when `module` is `self` or not inside it)."""
        name = next((name for name, submodule in self.named_modules() if submodule is module), None)
        if not name:
            return []
        ancestors: list[nn.Module] = [self]
        for part in name.split(".")[:-1]:
            ancestors.append(ancestors[-1].get_submodule(part))
        return ancestors


def _is_attention_input_projection(module: nn.Module, parent: nn.Module | None) -> bool:
    return isinstance(parent, TeViTAttention) and any(
        module is getattr(parent, name) for name in ("q_proj", "k_proj", "v_proj")
    )


def _init_fused_attention_input_projection(module: nn.Linear) -> None:
    """The official layers are `nn.MultiheadAttention`: Xavier over the fused `(3C, C)` in-projection, zero biases."""
    hidden_size = module.weight.shape[1]
    bound = math.sqrt(6.0 / (hidden_size + 3 * hidden_size))
    init.uniform_(module.weight, -bound, bound)
    init.zeros_(module.bias)


def _init_backbone_leaf(module: nn.Module, parent: nn.Module | None) -> None:
    """mmdet `PyramidVisionTransformerV2.init_weights` (the state before ImageNet weights are loaded)."""
    if isinstance(module, nn.Linear):
        if _is_attention_input_projection(module, parent):
            _init_fused_attention_input_projection(module)
        else:  # attention output projection and MixFFN
            init.trunc_normal_(module.weight, std=0.02)
            init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        init.ones_(module.weight)
        init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
        init.zeros_(module.bias)
    elif isinstance(module, nn.Conv1d):  # the temporal-conv ablation layer: like the new Linear layers
        init.trunc_normal_(module.weight, std=0.02)
        init.zeros_(module.bias)


def _init_head_leaf(module: nn.Module, parent: nn.Module | None, head: nn.Module, class_prior_prob: float) -> None:
    """mmdet `DIIHead`/`DynamicMaskHead.init_weights`: Xavier on every >1-D parameter, PyTorch defaults otherwise;
    `head` is the STQI stage or dynamic mask head that owns `module`."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        if _is_attention_input_projection(module, parent):
            _init_fused_attention_input_projection(module)
            return
        init.xavier_uniform_(module.weight)
        if module.bias is None:
            return
        if isinstance(parent, TeViTAttention):  # output projection of `nn.MultiheadAttention`
            init.zeros_(module.bias)
        elif isinstance(head, TeViTSpatioTemporalQueryStage) and module is head.class_predictor:
            init.constant_(module.bias, -math.log((1 - class_prior_prob) / class_prior_prob))
        elif isinstance(head, TeViTDynamicMaskHead) and module is head.mask_predictor:
            init.zeros_(module.bias)
        else:  # PyTorch default bias init (bound 1/sqrt(fan_in))
            fan_in = module.weight.shape[1] * math.prod(module.weight.shape[2:])
            bound = 1.0 / math.sqrt(fan_in)
            init.uniform_(module.bias, -bound, bound)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        init.ones_(module.weight)
        init.zeros_(module.bias)
        if isinstance(module, nn.BatchNorm2d):
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


_ALLOWED_FORWARD_KWARGS = frozenset(TransformersKwargs.__optional_keys__ | TransformersKwargs.__required_keys__)


def _check_forward_kwargs(model: nn.Module, kwargs: dict) -> None:
    """`**kwargs` of the forwards are typed `TransformersKwargs`; anything else is a typo, not a silent no-op."""
    unexpected = sorted(set(kwargs) - _ALLOWED_FORWARD_KWARGS)
    if unexpected:
        raise TypeError(
            f"{type(model).__name__}.forward() got unexpected keyword argument(s) {', '.join(map(repr, unexpected))}; "
            f"the accepted extra keyword arguments are those of `TransformersKwargs`: {sorted(_ALLOWED_FORWARD_KWARGS)}."
        )


# ----------------------------------------------------------------------------------------------------------------------
# Backbone choice: the MsgShifT PVTv2 or any Transformers `AutoBackbone`
# ----------------------------------------------------------------------------------------------------------------------

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def build_backbone(config: TeViTConfig) -> tuple[nn.Module, list[int]]:
    """The backbone `config` selects and its output widths (the FPN input widths)."""
    # CODEPATH: MsgShifT checkpoints (tevit_msgshift*) build the PVTv2 here; tevit_r50* and tevit_swin-l_mstrain
    # build their Transformers ResNet / Swin backbone from `backbone_config`.
    if config.uses_msgshift_backbone:
        return TeViTMsgShiftBackbone(config), list(config.backbone_hidden_sizes)
    backbone = load_backbone(config)
    return backbone, list(backbone.channels)


def backbone_freeze_units(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone split as mmdet's `frozen_stages` counts it: `[stem, stage 1, ..., stage 4]`, each a list of
    modules (the MsgShifT stem lives in its stage 1, so its stem entry is empty; a Swin stage includes its output
    LayerNorm, as mmdet's `norm{i}`)."""
    if isinstance(backbone, TeViTMsgShiftBackbone):
        return [[]] + [[stage] for stage in backbone.stages]
    # Swin keeps its layers in a wrapped base model (`backbone.swin`), ResNet and ConvNeXt at the top level.
    root = getattr(backbone, getattr(backbone, "base_model_prefix", ""), None)
    root = root if isinstance(root, nn.Module) else backbone
    stem = next((getattr(root, name) for name in ("embedder", "embeddings") if hasattr(root, name)), None)
    encoder = getattr(root, "encoder", None)
    stages = next((getattr(encoder, name) for name in ("stages", "layers") if hasattr(encoder, name)), None)
    if stem is None or stages is None:
        raise ValueError(
            f"`backbone_frozen_stages` is not supported for {type(backbone).__name__}: expected a stem "
            "(`embedder`/`embeddings`) and `encoder.stages`/`encoder.layers` as in ResNet, ConvNeXt and Swin."
        )
    units = [[stem]] + [[stage] for stage in stages]
    output_norms = getattr(backbone, "hidden_states_norms", None)
    if isinstance(output_norms, nn.ModuleDict):
        for index, name in enumerate(backbone.stage_names[1:], start=1):
            if name in output_norms and index < len(units):
                units[index].append(output_norms[name])
    return units


def check_feature_map_strides(feature_maps: list[torch.Tensor], height: int, width: int, strides: list[int]) -> None:
    """A Transformers backbone must return maps at strides 4, 8, 16, 32 (RoIAlign scales by these strides)."""
    for level, (feature_map, stride) in enumerate(zip(feature_maps, strides)):
        expected = (math.ceil(height / stride), math.ceil(width / stride))
        if tuple(feature_map.shape[-2:]) != expected:
            raise ValueError(
                f"Backbone level {level} is {tuple(feature_map.shape[-2:])} for a {height}x{width} input, expected "
                f"{expected} (stride {stride}); TeViT needs backbone features at strides {strides}."
            )


@auto_docstring(
    custom_intro="TeViT without the mask heads: MsgShifT backbone (or a Transformers backbone), FPN, learned "
    "proposals and the STQI stage cascade."
)
class TeViTModel(TeViTPreTrainedModel):
    def __init__(self, config: TeViTConfig):
        super().__init__(config)
        self.backbone, backbone_channels = build_backbone(config)
        self.neck = TeViTFeaturePyramidNetwork(config, backbone_channels)
        self.proposal_boxes = nn.Embedding(config.num_queries, 4)
        self.proposal_features = nn.Embedding(config.num_queries, config.hidden_size)
        self.decoder_stages = nn.ModuleList(
            TeViTSpatioTemporalQueryStage(config) for _ in range(config.num_head_stages)
        )
        self.post_init()
        self.train(self.training)

    def get_input_embeddings(self) -> nn.Module:
        """The module that reads the pixels: the MsgShifT stage-1 patch embedding, or the Transformers backbone's."""
        # CODEPATH: MsgShifT (tevit_msgshift*) vs Transformers backbones (tevit_r50*, tevit_swin-l_mstrain).
        if self.config.uses_msgshift_backbone:
            return self.backbone.stages[0].patch_embeddings
        try:
            return self.backbone.get_input_embeddings()
        except NotImplementedError:  # e.g. ResNetBackbone: its stem reads the pixels
            return backbone_freeze_units(self.backbone)[0][0]

    def _unused_backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters a Transformers backbone never uses for its feature maps (its `_keys_to_ignore_on_load_missing`,
        e.g. Swin's final LayerNorm): kept for loading, frozen so that DDP does not wait for their gradients."""
        patterns = getattr(self.backbone, "_keys_to_ignore_on_load_missing", None) or []
        # CODEPATH: only Transformers backbones declare such keys (Swin of tevit_swin-l_mstrain: its final norm).
        if self.config.uses_msgshift_backbone or not patterns:
            return []
        return [
            parameter
            for name, parameter in self.backbone.named_parameters()
            if any(re.search(pattern, name) for pattern in patterns)
        ]

    def _frozen_backbone_modules(self) -> list[nn.Module]:
        # CODEPATH: tevit_r50* freeze the stem and stage 1 (frozen_stages=1); MsgShifT and Swin-L freeze nothing (-1).
        units = backbone_freeze_units(self.backbone) if self.config.backbone_frozen_stages >= 0 else []
        return [module for unit in units[: self.config.backbone_frozen_stages + 1] for module in unit]

    def train(self, mode: bool = True) -> TeViTModel:
        """`nn.Module.train`, keeping the frozen backbone stages without gradient and in eval mode and, with
        `backbone_norm_eval`, every backbone BatchNorm in eval mode (mmdet `frozen_stages` / `norm_eval`: their
        running statistics never update). Also called by the constructor and by `from_pretrained` (through `eval`),
        so the freeze holds on every model, however its parameters were loaded."""
        super().train(mode)
        for module in self._frozen_backbone_modules():
            module.requires_grad_(False)
        for parameter in self._unused_backbone_parameters():
            parameter.requires_grad_(False)
        if mode:
            for module in self._frozen_backbone_modules():
                module.eval()
            # CODEPATH: tevit_r50* keep every BatchNorm in eval mode (norm_eval=True); the others have no BatchNorm.
            if self.config.backbone_norm_eval:
                for module in self.backbone.modules():
                    if isinstance(module, _BATCH_NORMS):
                        module.eval()
        return self

    @auto_docstring
    # `last_hidden_state` holds the query features, not the last backbone map: keep the recorded maps as they are.
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        pixel_mask: torch.LongTensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        original_sizes: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TeViTModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Normalized clips (see [`TeViTImageProcessor`]); height and width should be multiples of 32.
        pixel_mask (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
            1 for real pixels, 0 for bottom/right padding. Proposals are scaled to the unpadded size.
        image_sizes (`torch.LongTensor` of shape `(batch_size, 2)`, *optional*):
            Output of [`TeViTImageProcessor`] for post-processing and accepted so that `model(**inputs)` works;
            not read: the model derives the unpadded sizes from `pixel_mask` (and returns them as `image_sizes`).
        original_sizes (`torch.LongTensor` of shape `(batch_size, 2)`, *optional*):
            Output of [`TeViTImageProcessor`] for post-processing, where masks are pasted at these sizes; not read.
        """
        _check_forward_kwargs(self, kwargs)
        if pixel_values.ndim != 5:
            raise ValueError(
                f"`pixel_values` must be (batch_size, num_frames, channels, height, width), got {tuple(pixel_values.shape)}."
            )
        batch_size, num_frames, num_channels, height, width = pixel_values.shape
        if num_channels != self.config.num_channels:
            raise ValueError(f"Expected {self.config.num_channels} channels in `pixel_values`, got {num_channels}.")
        output_hidden_states = kwargs.get("output_hidden_states", self.config.output_hidden_states)
        # `output_hidden_states` may also select hidden states by index (0 included): only None/False mean "no".
        output_hidden_states = output_hidden_states is not None and output_hidden_states is not False
        images = pixel_values.reshape(batch_size * num_frames, num_channels, height, width)
        # CODEPATH: the released numbers were produced with every frame as its own backbone clip (T=1) at inference
        # (`shift_messengers_at_inference=False`); the current official code shifts over the whole clip.
        backbone_frames = num_frames if (self.training or self.config.shift_messengers_at_inference) else 1
        # CODEPATH: MsgShifT (tevit_msgshift*) shifts messengers over the clip; tevit_r50* / tevit_swin-l_mstrain run
        # their Transformers backbone frame by frame.
        if self.config.uses_msgshift_backbone:
            backbone_maps = self.backbone(images, backbone_frames, **kwargs)
        else:  # a per-frame Transformers backbone: no messenger tokens to shift ("STQI only")
            backbone_maps = list(self.backbone(images).feature_maps)
            check_feature_map_strides(backbone_maps, height, width, self.config.feature_strides)
        feature_maps = self.neck(backbone_maps)
        # RoIAlign reads channels-last rows of the whole pyramid: flatten it once for all stages.
        flat_features = flatten_feature_pyramid(feature_maps)

        image_sizes = self._image_sizes(pixel_mask, batch_size, height, width, pixel_values.device)
        # Boxes stay float32 under bf16/fp16 (a bf16 coordinate near 640 px is only good to 4 px).
        frame_sizes = image_sizes.repeat_interleave(num_frames, dim=0).to(torch.float32)
        scale = torch.stack([frame_sizes[:, 1], frame_sizes[:, 0], frame_sizes[:, 1], frame_sizes[:, 0]], dim=-1)
        boxes = box_cxcywh_to_xyxy(self.proposal_boxes.weight.float())[None] * scale[:, None, :]
        queries = self.proposal_features.weight[None].expand(batch_size * num_frames, -1, -1)

        stage_outputs = []
        for stage in self.decoder_stages:
            stage_output = stage(feature_maps, boxes, queries, num_frames, flat_features=flat_features)
            stage_outputs.append(stage_output)
            boxes = stage_output.boxes.detach()
            queries = stage_output.query_features

        def per_clip(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.view(batch_size, num_frames, *tensor.shape[1:])

        last = stage_outputs[-1]
        pred_boxes = box_xyxy_to_cxcywh(last.boxes / scale[:, None, :])
        return TeViTModelOutput(
            last_hidden_state=per_clip(last.query_features),
            class_logits=per_clip(last.class_logits),
            pred_boxes=per_clip(pred_boxes),
            stage_class_logits=tuple(per_clip(output.class_logits) for output in stage_outputs),
            stage_boxes=tuple(per_clip(output.boxes) for output in stage_outputs),
            stage_attention_features=tuple(per_clip(output.attention_features) for output in stage_outputs),
            image_sizes=image_sizes,
            feature_maps=tuple(feature_maps),
            backbone_hidden_states=tuple(backbone_maps) if output_hidden_states else None,
            fpn_hidden_states=tuple(feature_maps) if output_hidden_states else None,
        )

    @staticmethod
    def _image_sizes(
        pixel_mask: torch.Tensor | None, batch_size: int, height: int, width: int, device: torch.device
    ) -> torch.LongTensor:
        """Unpadded `(height, width)` per clip, `(batch_size, 2)`; the valid area is the top-left rectangle."""
        if pixel_mask is None:
            # Filled on the device: `torch.tensor([[height, width]], device=...)` would be a blocking host copy.
            sizes = torch.empty(batch_size, 2, device=device, dtype=torch.long)
            sizes[:, 0], sizes[:, 1] = height, width
            return sizes
        if pixel_mask.shape != (batch_size, height, width):
            raise ValueError(
                f"`pixel_mask` must be (batch_size, height, width) = {(batch_size, height, width)}, "
                f"got {tuple(pixel_mask.shape)}."
            )
        valid = pixel_mask.bool()
        heights = valid.any(dim=2).sum(dim=1)
        widths = valid.any(dim=1).sum(dim=1)
        return torch.stack([heights, widths], dim=1).long()


@auto_docstring(
    custom_intro="TeViT for video instance segmentation: the model, its dynamic mask heads, the training criterion "
    "and the official top-k instance selection."
)
class TeViTForVideoInstanceSegmentation(TeViTPreTrainedModel):
    def __init__(self, config: TeViTConfig):
        super().__init__(config)
        self.model = TeViTModel(config)
        self.mask_heads = nn.ModuleList(TeViTDynamicMaskHead(config) for _ in range(config.num_head_stages))
        self.criterion = TeViTLoss(config)
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the `video-instance-segmentation` pipeline: its entry in
        config.json (`custom_pipelines`) and its code, so every saved folder is a complete Hub folder."""
        # This relative import also makes `custom_object_save` copy the pipeline's files (it follows relative imports).
        from .pipeline_tevit import custom_pipelines_entry

        self.config.custom_pipelines = custom_pipelines_entry()
        return super().save_pretrained(save_directory, *args, **kwargs)

    @auto_docstring
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        pixel_mask: torch.LongTensor | None = None,
        labels: list[dict[str, torch.Tensor]] | None = None,
        image_sizes: torch.LongTensor | None = None,
        original_sizes: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TeViTVideoInstanceSegmentationOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, height, width)`):
            Normalized clips (see [`TeViTImageProcessor`]); height and width should be multiples of 32.
        pixel_mask (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
            1 for real pixels, 0 for bottom/right padding.
        labels (`list[dict]`, *optional*):
            One dict per clip with
            - `class_labels` (`torch.LongTensor` of shape `(num_instances,)`): class of each instance;
            - `boxes` (`torch.FloatTensor` of shape `(num_frames, num_instances, 4)`): normalized `(cx, cy, w, h)`
              relative to the unpadded frame;
            - `masks` (`torch.BoolTensor` of shape `(num_frames, num_instances, height, width)`): at the padded
              input resolution;
            - `valid` (`torch.BoolTensor` of shape `(num_frames, num_instances)`): whether instance k is visible
              in frame t (its matched query is background in the frames where it is not).
        image_sizes (`torch.LongTensor` of shape `(batch_size, 2)`, *optional*):
            Output of [`TeViTImageProcessor`] for post-processing and accepted so that `model(**inputs)` works;
            not read: the model derives the unpadded sizes from `pixel_mask` (and returns them as `image_sizes`).
        original_sizes (`torch.LongTensor` of shape `(batch_size, 2)`, *optional*):
            Output of [`TeViTImageProcessor`] for post-processing, where masks are pasted at these sizes; not read.

        Example:

        ```python
        >>> import torch
        >>> from tevit_hf import TeViTConfig, TeViTForVideoInstanceSegmentation
        >>> model = TeViTForVideoInstanceSegmentation(TeViTConfig.from_pvt_v2_preset("b0", num_head_stages=1)).eval()
        >>> outputs = model(pixel_values=torch.randn(1, 2, 3, 64, 96))
        >>> outputs.selected_mask_logits.shape
        torch.Size([1, 2, 10, 28, 28])
        ```
        """
        _check_forward_kwargs(self, kwargs)
        outputs: TeViTModelOutput = self.model(pixel_values, pixel_mask=pixel_mask, return_dict=True, **kwargs)
        feature_maps = list(outputs.feature_maps)
        flat_features = flatten_feature_pyramid(feature_maps)  # one copy shared by every mask prediction below
        batch_size, num_frames = pixel_values.shape[:2]

        loss, loss_dict = None, None
        if labels is not None:
            if len(labels) != batch_size:
                raise ValueError(f"`labels` needs one dict per clip: got {len(labels)} for a batch of {batch_size}.")

            def predict_masks(stage, frame_index, query_index, boxes, class_labels):
                attention_features = outputs.stage_attention_features[stage].flatten(0, 1)
                return self._mask_logits(
                    stage,
                    feature_maps,
                    frame_index,
                    boxes,
                    attention_features[frame_index, query_index],
                    class_labels,
                    flat_features=flat_features,
                )

            loss, loss_dict = self.criterion(
                stage_class_logits=outputs.stage_class_logits,
                stage_boxes=outputs.stage_boxes,
                labels=labels,
                image_sizes=outputs.image_sizes,
                predict_masks=predict_masks,
            )

        selected = {}
        if labels is None or not self.training:
            selected = self._select_instances(outputs, feature_maps, flat_features=flat_features)

        scale = outputs.image_sizes.flip(-1).repeat(1, 2).to(outputs.pred_boxes.dtype)[:, None, None, :]
        auxiliary_outputs = [
            {"class_logits": logits, "pred_boxes": box_xyxy_to_cxcywh(boxes / scale)}
            for logits, boxes in zip(outputs.stage_class_logits[:-1], outputs.stage_boxes[:-1])
        ]
        return TeViTVideoInstanceSegmentationOutput(
            loss=loss,
            loss_dict=loss_dict,
            class_logits=outputs.class_logits,
            pred_boxes=outputs.pred_boxes,
            last_hidden_state=outputs.last_hidden_state,
            auxiliary_outputs=auxiliary_outputs,
            image_sizes=outputs.image_sizes,
            backbone_hidden_states=outputs.backbone_hidden_states,
            fpn_hidden_states=outputs.fpn_hidden_states,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **selected,
        )

    def _mask_logits(
        self,
        stage: int,
        feature_maps: list[torch.Tensor],
        frame_index: torch.Tensor,
        boxes: torch.Tensor,
        attention_features: torch.Tensor,
        class_labels: torch.Tensor,
        flat_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits of `n` RoIs for their class: frame index `(n,)`, xyxy boxes `(n, 4)` -> `(n, M, M)`."""
        rois = torch.cat([frame_index[:, None].to(boxes.dtype), boxes], dim=1)
        roi_features = multi_level_roi_align(
            feature_maps,
            rois,
            self.config.mask_roi_size,
            feature_strides(self.config),
            self.config.roi_sampling_ratio,
            self.config.roi_finest_scale,
            flat_features=flat_features,
        )
        logits = self.mask_heads[stage](roi_features, attention_features)
        return logits[torch.arange(logits.shape[0], device=logits.device), class_labels]

    def _select_instances(
        self, outputs: TeViTModelOutput, feature_maps: list[torch.Tensor], flat_features: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Official test-time selection: mean sigmoid over frames, top-k (query, class) pairs, last-stage masks."""
        class_logits = outputs.class_logits
        batch_size, num_frames, num_queries, num_labels = class_logits.shape
        num_selected = min(self.config.num_selected_instances, num_queries * num_labels)
        # float32 so that the top-k order does not depend on bf16 rounding of near-equal scores.
        video_scores = class_logits.float().sigmoid().mean(dim=1).flatten(1)
        scores, flat_index = video_scores.topk(num_selected, dim=1)
        labels = flat_index % num_labels
        query_index = flat_index // num_labels

        gather_index = query_index[:, None, :, None].expand(-1, num_frames, -1, 4)
        boxes_xyxy = outputs.stage_boxes[-1].gather(2, gather_index)  # (B, T, K, 4) input pixels
        attention = outputs.stage_attention_features[-1]
        attention = attention.gather(2, query_index[:, None, :, None].expand(-1, num_frames, -1, attention.shape[-1]))
        frame_index = torch.arange(batch_size * num_frames, device=class_logits.device).repeat_interleave(num_selected)
        frame_labels = labels[:, None, :].expand(-1, num_frames, -1).reshape(-1)
        mask_logits = self._mask_logits(
            len(self.mask_heads) - 1,
            feature_maps,
            frame_index,
            boxes_xyxy.reshape(-1, 4),
            attention.reshape(-1, attention.shape[-1]),
            frame_labels,
            flat_features=flat_features,
        )
        mask_size = mask_logits.shape[-1]
        scale = outputs.image_sizes.flip(-1).repeat(1, 2).to(boxes_xyxy.dtype)[:, None, None, :]
        return {
            "selected_scores": scores,
            "selected_labels": labels,
            "selected_query_indices": query_index,
            "selected_boxes": box_xyxy_to_cxcywh(boxes_xyxy / scale),
            "selected_mask_logits": mask_logits.view(batch_size, num_frames, num_selected, mask_size, mask_size),
        }


__all__ = [
    "TeViTForVideoInstanceSegmentation",
    "TeViTModel",
    "TeViTPreTrainedModel",
    "TeViTModelOutput",
    "TeViTVideoInstanceSegmentationOutput",
]
