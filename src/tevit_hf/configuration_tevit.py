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
"""TeViT model configuration."""

from __future__ import annotations

import copy
import os
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.backbone_utils import consolidate_backbone_kwargs_to_config
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import auto_docstring, logging


logger = logging.get_logger(__name__)

YOUTUBE_VIS_2019_CLASSES = (
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake", "monkey",
    "hand", "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear",
    "motorbike", "giraffe", "leopard", "fox", "deer", "owl", "surfboard", "airplane", "truck", "zebra",
    "tiger", "elephant", "snowboard", "boat", "shark", "mouse", "frog", "eagle", "earless_seal", "tennis_racket",
)  # fmt: skip

# PVTv2 layouts (whai362/PVT `pvt_v2_b*`); every variant keeps head dim 64 and sr ratios [8, 4, 2, 1].
PVT_V2_PRESETS: dict[str, dict[str, Any]] = {
    "b0": {"backbone_hidden_sizes": [32, 64, 160, 256], "backbone_depths": [2, 2, 2, 2],
           "backbone_num_attention_heads": [1, 2, 5, 8], "backbone_mlp_ratios": [8, 8, 4, 4]},
    "b1": {"backbone_hidden_sizes": [64, 128, 320, 512], "backbone_depths": [2, 2, 2, 2],
           "backbone_num_attention_heads": [1, 2, 5, 8], "backbone_mlp_ratios": [8, 8, 4, 4]},
    "b2": {"backbone_hidden_sizes": [64, 128, 320, 512], "backbone_depths": [3, 4, 6, 3],
           "backbone_num_attention_heads": [1, 2, 5, 8], "backbone_mlp_ratios": [8, 8, 4, 4]},
    "b3": {"backbone_hidden_sizes": [64, 128, 320, 512], "backbone_depths": [3, 4, 18, 3],
           "backbone_num_attention_heads": [1, 2, 5, 8], "backbone_mlp_ratios": [8, 8, 4, 4]},
    "b4": {"backbone_hidden_sizes": [64, 128, 320, 512], "backbone_depths": [3, 8, 27, 3],
           "backbone_num_attention_heads": [1, 2, 5, 8], "backbone_mlp_ratios": [8, 8, 4, 4]},
    "b5": {"backbone_hidden_sizes": [64, 128, 320, 512], "backbone_depths": [3, 6, 40, 3],
           "backbone_num_attention_heads": [1, 2, 5, 8], "backbone_mlp_ratios": [4, 4, 4, 4]},
}  # fmt: skip

_FOUR_LEVELS = ["stage1", "stage2", "stage3", "stage4"]

# The other TeViTs of hustvl/TeViT (`configs/tevit/*.py`): Transformers backbones, no messenger tokens ("STQI only"),
# every other field as in the official config. `r50` and `r50_mstrain` differ only in their training scales.
_RESNET_50 = {
    "model_type": "resnet", "embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 6, 3],
    "layer_type": "bottleneck", "hidden_act": "relu", "downsample_in_bottleneck": False,  # pytorch style
    "out_features": _FOUR_LEVELS,
}  # fmt: skip
_R50_TEVIT = {
    "backbone_config": _RESNET_50, "num_messenger_tokens": 0,
    "backbone_frozen_stages": 1, "backbone_norm_eval": True,  # stem + stage 1 frozen, BatchNorms in eval mode
}  # fmt: skip
OFFICIAL_PRESETS: dict[str, dict[str, Any]] = {
    "r50": _R50_TEVIT,
    "r50_mstrain": _R50_TEVIT,
    "swin_l_mstrain": {
        "backbone_config": {
            "model_type": "swin", "embed_dim": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48],
            "window_size": 7, "mlp_ratio": 4.0, "qkv_bias": True, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.2, "use_absolute_embeddings": False,
            "out_features": _FOUR_LEVELS,
        },
        "num_messenger_tokens": 0,
        "num_queries": 300,
    },
}  # fmt: skip

# A tiny TeViT keeping every structural feature of the full model: for tests, smoke runs and benchmarks on CPU.
TINY_CONFIG_KWARGS: dict[str, Any] = {
    "backbone_hidden_sizes": [8, 16, 24, 32],
    "backbone_num_attention_heads": [1, 1, 1, 1],
    "backbone_mlp_ratios": [2, 2, 2, 2],
    "hidden_size": 32,
    "head_num_attention_heads": 4,
    "head_ffn_dim": 64,
    "dynamic_conv_dim": 8,
    "mask_conv_dim": 16,
    "num_queries": 10,
    "num_head_stages": 2,
    "num_messenger_tokens": 8,
    "num_selected_instances": 5,
}

# Ablation switches of the paper (section 4.4): field -> accepted values, the first being the released model's.
ABLATION_CHOICES: dict[str, tuple[str, ...]] = {
    "messenger_manipulation": ("shift", "none", "mhsa_ffn"),
    "frame_aggregation": ("none", "conv", "mhsa_ffn"),
    "query_interaction": ("stqi", "spatial", "fused", "temporal"),
    "inference_messenger_tokens": ("learned", "zero", "random"),
}

_BACKBONE_LIST_FIELDS = (
    "backbone_hidden_sizes",
    "backbone_depths",
    "backbone_num_attention_heads",
    "backbone_sr_ratios",
    "backbone_mlp_ratios",
    "backbone_patch_sizes",
    "backbone_strides",
    "backbone_paddings",
)


# Constructor arguments of the Transformers backbone convention, resolved into `backbone_config` and not stored.
_BACKBONE_ARGUMENTS = ("backbone", "use_timm_backbone", "backbone_kwargs", "use_pretrained_backbone")
# The FPN levels of TeViT (mmdet `featmap_strides`), which a Transformers backbone must produce.
HF_BACKBONE_FEATURE_STRIDES = (4, 8, 16, 32)


def _backbone_out_features(backbone_config: PreTrainedConfig) -> list:
    """The levels a Transformers backbone returns (`out_indices` for timm backbones, which have no names)."""
    out_features = getattr(backbone_config, "out_features", None)
    if out_features is None:
        out_features = getattr(backbone_config, "out_indices", None) or []
    return list(out_features)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_int(item) for item in value)


def _is_number_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_number(item) for item in value)


# Annotation (as written in `TeViTConfig`) -> (what to tell the user, check). Fields not listed are not checked here.
_FIELD_TYPE_CHECKS = {
    "int": ("an integer", _is_int),
    "float": ("a number", _is_number),
    "float | int": ("a number", _is_number),
    "bool": ("true or false", lambda value: isinstance(value, bool)),
    "str": ("a string", lambda value: isinstance(value, str)),
    "list[int] | tuple[int, ...]": ("a list of integers", _is_int_list),
    "list[float] | tuple[float, ...]": ("a list of numbers", _is_number_list),
    "list[float] | tuple[float, ...] | None": ("a list of numbers", _is_number_list),
}


@auto_docstring(custom_intro="Configuration of a TeViT video instance segmentation model.")
@strict
class TeViTConfig(PreTrainedConfig):
    r"""
    backbone_hidden_sizes (`list[int]`, *optional*, defaults to `[64, 128, 320, 512]`):
        Channels of the 4 PVTv2 stages.
    backbone_depths (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`):
        Blocks per backbone stage.
    backbone_num_attention_heads (`list[int]`, *optional*, defaults to `[1, 2, 5, 8]`):
        Attention heads per backbone stage.
    backbone_sr_ratios (`list[int]`, *optional*, defaults to `[8, 4, 2, 1]`):
        Spatial-reduction ratio of the keys/values per stage (1 = none; messenger tokens are then not keys/values).
    backbone_mlp_ratios (`list[int]`, *optional*, defaults to `[8, 8, 4, 4]`):
        MixFFN hidden width divided by the stage width.
    backbone_patch_sizes (`list[int]`, *optional*, defaults to `[7, 3, 3, 3]`):
        Kernel of each overlapping patch-embedding conv.
    backbone_strides (`list[int]`, *optional*, defaults to `[4, 2, 2, 2]`):
        Stride of each patch-embedding conv (the FPN strides are their running products).
    backbone_paddings (`list[int]`, *optional*, defaults to `[3, 1, 1, 1]`):
        Padding of each patch-embedding conv.
    backbone_layer_norm_eps (`float`, *optional*, defaults to `1e-6`):
        Eps of every backbone LayerNorm, patch-embedding and stage-end norms included.
    backbone_hidden_act (`str`, *optional*, defaults to `"gelu"`):
        Activation of the MixFFN.
    num_messenger_tokens (`int`, *optional*, defaults to `32`):
        Messenger tokens per frame (0 disables the messenger shift).
    messenger_shift_strides (`list[int]`, *optional*, defaults to `[1, -1, 2, -2]`):
        Temporal roll of each messenger token group on even blocks of a stage; odd blocks roll by the negation and
        the last block of an odd-depth stage does not roll.
    shift_messengers_at_inference (`bool`, *optional*, defaults to `True`):
        `True` runs the backbone over the whole clip at inference (official code after commit 7db42a2); `False`
        treats each frame as its own backbone clip, as the code that produced the released numbers did.
    num_queries (`int`, *optional*, defaults to `100`):
        Learned proposals (boxes and features) per frame.
    num_head_stages (`int`, *optional*, defaults to `6`):
        Cascaded STQI head stages (each with its own dynamic mask head).
    head_num_attention_heads (`int`, *optional*, defaults to `8`):
        Heads of the query attention shared by the spatial and temporal passes.
    head_ffn_dim (`int`, *optional*, defaults to `2048`):
        Hidden width of the head FFN.
    head_hidden_act (`str`, *optional*, defaults to `"relu"`):
        Activation of the head FFN.
    head_layer_norm_eps (`float`, *optional*, defaults to `1e-5`):
        Eps of the head and dynamic-conv LayerNorms.
    dynamic_conv_dim (`int`, *optional*, defaults to `64`):
        Inner width of the dynamic instance-interaction convs.
    num_cls_fcs (`int`, *optional*, defaults to `1`):
        Linear-LayerNorm-ReLU blocks before the class logits.
    num_reg_fcs (`int`, *optional*, defaults to `3`):
        Linear-LayerNorm-ReLU blocks before the box deltas.
    box_roi_size (`int`, *optional*, defaults to `7`):
        RoIAlign output side for the box branch.
    mask_roi_size (`int`, *optional*, defaults to `14`):
        RoIAlign output side for the mask branch.
    roi_sampling_ratio (`int`, *optional*, defaults to `2`):
        RoIAlign sample points per bin side.
    roi_finest_scale (`int`, *optional*, defaults to `56`):
        RoIs smaller than 2x this scale are pooled from the finest FPN level.
    bbox_delta_means (`list[float]`, *optional*, defaults to `[0.0, 0.0, 0.0, 0.0]`):
        Means of the box-delta coder.
    bbox_delta_stds (`list[float]`, *optional*, defaults to `[0.5, 0.5, 1.0, 1.0]`):
        Standard deviations of the box-delta coder.
    bbox_wh_ratio_clip (`float`, *optional*, defaults to `0.016`):
        Log-scale clamp of the width/height deltas is `abs(log(bbox_wh_ratio_clip))`.
    mask_num_convs (`int`, *optional*, defaults to `4`):
        Conv-BatchNorm-ReLU blocks of the mask head.
    mask_conv_dim (`int`, *optional*, defaults to `256`):
        Channels of the mask-head convs.
    mask_upsample_ratio (`int`, *optional*, defaults to `2`):
        Deconv upsampling of the mask head (mask side = mask_roi_size x this).
    batch_norm_eps (`float`, *optional*, defaults to `1e-5`):
        Eps of the mask-head BatchNorms.
    class_prior_prob (`float`, *optional*, defaults to `0.01`):
        Prior probability that sets the initial class-logit bias.
    focal_alpha (`float`, *optional*, defaults to `0.25`):
        Focal loss and focal matching-cost alpha.
    focal_gamma (`float`, *optional*, defaults to `2.0`):
        Focal loss and focal matching-cost gamma.
    focal_cost_eps (`float`, *optional*, defaults to `1e-12`):
        Eps inside the logs of the focal matching cost.
    class_cost_weight (`float`, *optional*, defaults to `2.0`):
        Weight of the focal classification cost in matching.
    bbox_cost_weight (`float`, *optional*, defaults to `5.0`):
        Weight of the normalised L1 box cost in matching.
    giou_cost_weight (`float`, *optional*, defaults to `2.0`):
        Weight of the GIoU cost in matching.
    class_loss_weight (`float`, *optional*, defaults to `2.0`):
        Weight of the focal classification loss.
    bbox_loss_weight (`float`, *optional*, defaults to `5.0`):
        Weight of the normalised L1 box loss.
    giou_loss_weight (`float`, *optional*, defaults to `2.0`):
        Weight of the GIoU loss.
    dice_loss_weight (`float`, *optional*, defaults to `8.0`):
        Weight of the dice mask loss.
    dice_eps (`float`, *optional*, defaults to `1e-5`):
        Eps of the dice loss denominators.
    giou_eps (`float`, *optional*, defaults to `1e-6`):
        Eps of the GIoU union and enclosing areas.
    stage_loss_weights (`list[float]`, *optional*, defaults to `[1.0] * num_head_stages`):
        Loss weight of each head stage.
    num_selected_instances (`int`, *optional*, defaults to `10`):
        Top-k (query, class) pairs kept per video at inference.
    mask_threshold (`float`, *optional*, defaults to `0.5`):
        Probability threshold of the pasted masks.
    initializer_range (`float`, *optional*, defaults to `0.02`):
        Std of the truncated-normal messenger-token initialisation.
    drop_path_rate (`float`, *optional*, defaults to `0.1`):
        Stochastic depth, linear over all backbone blocks.
    hidden_size (`int`, *optional*, defaults to `256`):
        FPN channels, RoI feature channels and query width.
    backbone_config (`dict` or `PreTrainedConfig`, *optional*):
        Config of a Transformers backbone (`AutoBackbone`: ResNet, Swin, ConvNeXt, a `timm_backbone`, ...) with four
        `out_features` at strides 4, 8, 16 and 32, used instead of the MsgShifT PVTv2 (whose `backbone_*` fields are
        then unused); the FPN input widths are its channels. It has no messenger tokens (`num_messenger_tokens` must be
        0): the paper's "STQI only" TeViT. `None` (default) builds the MsgShifT PVTv2. As in Transformers, the
        constructor also accepts `backbone` (a model id or local folder whose config is used, or a timm name),
        `use_timm_backbone` and `backbone_kwargs`, which are resolved into `backbone_config` and not stored.
    backbone_frozen_stages (`int`, *optional*, defaults to `-1`):
        mmdet `frozen_stages`: -1 freezes nothing, 0 the stem, k the stem and the first k stages (no gradient, and
        their BatchNorms stay in eval mode). The MsgShifT PVTv2 has its stem inside stage 1, so 0 and -1 coincide.
    backbone_norm_eval (`bool`, *optional*, defaults to `False`):
        mmdet `norm_eval`: every BatchNorm of the backbone stays in eval mode in training (running statistics frozen;
        their affine parameters still train unless their stage is frozen).
    messenger_manipulation (`str`, *optional*, defaults to `"shift"`):
        Ablation switch (paper Tab. 4 and 6): what the backbone does with the messenger tokens at the end of every
        block that shifts. `"shift"`: the MsgShifT temporal roll; `"none"`: tokens kept, never exchanged across
        frames; `"mhsa_ffn"`: a new pre-norm attention + FFN layer over the T x M tokens of each clip (adds
        parameters). Needs `num_messenger_tokens > 0` unless `"shift"`.
    frame_aggregation (`str`, *optional*, defaults to `"none"`):
        Ablation switch (paper Tab. 7): a new temporal layer on the output map of every backbone stage whose
        messenger tokens are live (all but a last `sr_ratio == 1` stage). `"none"`; `"conv"`: residual depth-wise
        temporal conv, kernel 3, zero-padded in time; `"mhsa_ffn"`: pre-norm attention + FFN over the T frames of
        each position. The paper's "messenger shift" row is `messenger_manipulation="shift"` with `"none"` here.
    query_interaction (`str`, *optional*, defaults to `"stqi"`):
        Ablation switch (paper Tab. 4, 5 and 11) of the head's query attention (same parameters in every mode):
        `"stqi"`: the spatial pass over the queries of a frame then the temporal pass over the frames of a query
        (Eq. 4); `"spatial"`: the spatial pass only (QueryInst); `"fused"`: one pass over all T x N queries of a clip
        (VisTR-style); `"temporal"`: the temporal pass only (Tab. 11).
    inference_messenger_tokens (`str`, *optional*, defaults to `"learned"`):
        Ablation switch (paper Tab. 12): the messenger tokens used at inference (training always uses the learned
        ones). `"learned"`; `"zero"`; `"random"`: a fixed draw (seed 0) from the initialisation distribution,
        truncated normal with std `initializer_range`. Needs `num_messenger_tokens > 0` unless `"learned"`.

    The defaults build the official MsgShifT PVTv2-B1 YouTube-VIS-2019 model (161,832,616 parameters, 40 classes).

    The standard Transformers names `num_hidden_layers` and `num_attention_heads` are aliases (`attribute_map`) of
    `num_head_stages` and `head_num_attention_heads`: with `hidden_size` (the query width) they describe the one
    uniform transformer of the model, the STQI cascade that produces `last_hidden_state`. The PVTv2 backbone is a
    pyramid whose depth, width and heads differ per stage (`backbone_*` lists), so it has no single value for them.
    `num_backbone_stages` is the number of `hidden_states` the model returns (one map per backbone stage), and the
    output-capturing machinery resolves negative `output_hidden_states` indices against it.

    Example:

    ```python
    >>> from tevit_hf import TeViTConfig, TeViTForVideoInstanceSegmentation
    >>> config = TeViTConfig.from_pvt_v2_preset("b0", num_head_stages=2)
    >>> model = TeViTForVideoInstanceSegmentation(config)
    ```
    """

    model_type = "tevit"
    # Optional: `None` keeps the MsgShifT PVTv2; a dict (config.json) becomes the config of its `model_type`.
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet", optional=True),
    }
    attribute_map = {"num_hidden_layers": "num_head_stages", "num_attention_heads": "head_num_attention_heads"}

    num_channels: int = 3
    backbone_hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 320, 512)
    backbone_depths: list[int] | tuple[int, ...] = (2, 2, 2, 2)
    backbone_num_attention_heads: list[int] | tuple[int, ...] = (1, 2, 5, 8)
    backbone_sr_ratios: list[int] | tuple[int, ...] = (8, 4, 2, 1)
    backbone_mlp_ratios: list[int] | tuple[int, ...] = (8, 8, 4, 4)
    backbone_patch_sizes: list[int] | tuple[int, ...] = (7, 3, 3, 3)
    backbone_strides: list[int] | tuple[int, ...] = (4, 2, 2, 2)
    backbone_paddings: list[int] | tuple[int, ...] = (3, 1, 1, 1)
    backbone_layer_norm_eps: float = 1e-6
    backbone_hidden_act: str = "gelu"
    drop_path_rate: float | int = 0.1
    attention_dropout: float | int = 0.0
    hidden_dropout: float | int = 0.0
    num_messenger_tokens: int = 32
    messenger_shift_strides: list[int] | tuple[int, ...] = (1, -1, 2, -2)
    shift_messengers_at_inference: bool = True

    hidden_size: int = 256
    num_queries: int = 100

    num_head_stages: int = 6
    head_num_attention_heads: int = 8
    head_ffn_dim: int = 2048
    head_hidden_act: str = "relu"
    head_layer_norm_eps: float = 1e-5
    dynamic_conv_dim: int = 64
    num_cls_fcs: int = 1
    num_reg_fcs: int = 3
    box_roi_size: int = 7
    mask_roi_size: int = 14
    roi_sampling_ratio: int = 2
    roi_finest_scale: int = 56
    bbox_delta_means: list[float] | tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    bbox_delta_stds: list[float] | tuple[float, ...] = (0.5, 0.5, 1.0, 1.0)
    bbox_wh_ratio_clip: float = 16 / 1000
    mask_num_convs: int = 4
    mask_conv_dim: int = 256
    mask_upsample_ratio: int = 2
    batch_norm_eps: float = 1e-5

    initializer_range: float = 0.02
    class_prior_prob: float = 0.01

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_cost_eps: float = 1e-12
    class_cost_weight: float = 2.0
    bbox_cost_weight: float = 5.0
    giou_cost_weight: float = 2.0
    class_loss_weight: float = 2.0
    bbox_loss_weight: float = 5.0
    giou_loss_weight: float = 2.0
    dice_loss_weight: float = 8.0
    dice_eps: float = 1e-5
    giou_eps: float = 1e-6
    stage_loss_weights: list[float] | tuple[float, ...] | None = None

    num_selected_instances: int = 10
    mask_threshold: float = 0.5

    # ---- Backbone choice (Transformers backbone conventions; `None` = the MsgShifT PVTv2 described above) ----
    backbone_config: dict | PreTrainedConfig | None = None
    backbone_frozen_stages: int = -1
    backbone_norm_eval: bool = False

    # Ablation switches (paper section 4.4; docs/ablations.md). The defaults build the released model.
    messenger_manipulation: str = "shift"
    frame_aggregation: str = "none"
    query_interaction: str = "stqi"
    inference_messenger_tokens: str = "learned"

    def __post_init__(self, **kwargs):
        kwargs = self._resolve_backbone_config(kwargs)
        # Aliases given to the constructor (`TeViTConfig(num_hidden_layers=3)`) set their field before the fields
        # derived from it (`stage_loss_weights`) are filled in.
        for alias, name in self.attribute_map.items():
            if alias in kwargs:
                setattr(self, name, kwargs.pop(alias))
        self._check_field_types()
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label = dict(enumerate(YOUTUBE_VIS_2019_CLASSES))
            self.label2id = {name: index for index, name in self.id2label.items()}
        for name in _BACKBONE_LIST_FIELDS + ("messenger_shift_strides", "bbox_delta_means", "bbox_delta_stds"):
            setattr(self, name, list(getattr(self, name)))
        if self.stage_loss_weights is None:
            self.stage_loss_weights = [1.0] * self.num_head_stages
        self.stage_loss_weights = [float(weight) for weight in self.stage_loss_weights]
        super().__post_init__(**kwargs)
        # `@strict` wraps validator errors in its own exception type; check here first so that users get a
        # plain `ValueError` naming the inconsistent field.
        self._check_sizes()

    def _resolve_backbone_config(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Turn the Transformers backbone arguments (`backbone`, `use_timm_backbone`, `backbone_kwargs`,
        `use_pretrained_backbone`) into `backbone_config`, as `consolidate_backbone_kwargs_to_config` does for DETR
        and Mask2Former; a local folder given as `backbone` is read offline."""
        given = {name: kwargs.pop(name) for name in _BACKBONE_ARGUMENTS if name in kwargs}
        if given.get("use_pretrained_backbone"):
            raise ValueError(
                "TeViTConfig: `use_pretrained_backbone=True` is not supported: building a model never downloads "
                "weights. Build it, then load ImageNet weights with `tevit_hf.load_backbone_weights` "
                "(or `scripts/train.py --init_from`)."
            )
        backbone = given.get("backbone")
        if self.backbone_config is None and isinstance(backbone, str) and os.path.isdir(backbone):
            self.backbone_config = AutoConfig.from_pretrained(backbone, **(given.get("backbone_kwargs") or {}))
        elif self.backbone_config is None and backbone is not None:
            given.setdefault("use_timm_backbone", False)
            self.backbone_config, _ = consolidate_backbone_kwargs_to_config(None, **given)
        return kwargs

    def _check_field_types(self) -> None:
        """Each own field has its annotated type, checked before anything compares or iterates it, so that
        `num_queries="eight"` or `backbone_depths="2,2,2,2"` (a config.json edited by hand) is named plainly."""
        for name, annotation in type(self).__annotations__.items():
            value = getattr(self, name, None)
            if value is None or annotation not in _FIELD_TYPE_CHECKS:
                continue
            description, accepts = _FIELD_TYPE_CHECKS[annotation]
            if not accepts(value):
                raise ValueError(
                    f"TeViTConfig `{name}` must be {description}, got {value!r} ({type(value).__name__})."
                )

    @property
    def uses_msgshift_backbone(self) -> bool:
        """`True` for the built-in MsgShifT PVTv2, `False` when `backbone_config` selects a Transformers backbone."""
        return self.backbone_config is None

    @property
    def num_backbone_stages(self) -> int:
        if self.uses_msgshift_backbone:
            return len(self.backbone_hidden_sizes)
        return len(_backbone_out_features(self.backbone_config))

    @property
    def feature_strides(self) -> list[int]:
        """Stride of each FPN level: the running products of the PVTv2 patch strides, or 4, 8, 16, 32 (checked
        at the first forward) for a Transformers backbone."""
        if not self.uses_msgshift_backbone:
            return list(HF_BACKBONE_FEATURE_STRIDES)
        strides, total = [], 1
        for stride in self.backbone_strides:
            total *= stride
            strides.append(total)
        return strides

    @property
    def mask_size(self) -> int:
        """Side of the per-class RoI mask logits (28 for the official model)."""
        return self.mask_roi_size * self.mask_upsample_ratio

    def validate_architecture(self):
        """Part of `@strict` validation: rejects inconsistent sizes."""
        super().validate_architecture()
        self._check_sizes()

    def _check_sizes(self) -> None:
        num_stages = len(self.backbone_hidden_sizes)
        for name in _BACKBONE_LIST_FIELDS:
            if len(getattr(self, name)) != num_stages:
                raise ValueError(
                    f"`{name}` has {len(getattr(self, name))} entries but `backbone_hidden_sizes` has {num_stages} "
                    "stages; every backbone list needs one entry per stage."
                )
        for stage, (width, heads) in enumerate(zip(self.backbone_hidden_sizes, self.backbone_num_attention_heads)):
            if width % heads != 0:
                raise ValueError(
                    f"Backbone stage {stage}: hidden size {width} is not divisible by its {heads} attention heads."
                )
        if self.hidden_size % self.head_num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) is not divisible by `head_num_attention_heads` "
                f"({self.head_num_attention_heads})."
            )
        self._check_backbone_choice()
        if self.num_messenger_tokens < 0:
            raise ValueError(f"`num_messenger_tokens` must be >= 0, got {self.num_messenger_tokens}.")
        num_groups = len(self.messenger_shift_strides)
        if self.num_messenger_tokens > 0 and (num_groups == 0 or self.num_messenger_tokens % num_groups != 0):
            raise ValueError(
                f"`num_messenger_tokens` ({self.num_messenger_tokens}) must be divisible by the number of shift "
                f"groups, len(messenger_shift_strides) = {num_groups}."
            )
        if len(self.stage_loss_weights) != self.num_head_stages:
            raise ValueError(
                f"`stage_loss_weights` has {len(self.stage_loss_weights)} entries, expected one per head stage "
                f"(num_head_stages={self.num_head_stages})."
            )
        for name in ("bbox_delta_means", "bbox_delta_stds"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"`{name}` needs 4 values (dx, dy, dw, dh), got {getattr(self, name)}.")
        positive = (
            "num_queries", "num_head_stages", "box_roi_size", "mask_roi_size", "roi_finest_scale",
            "hidden_size", "dynamic_conv_dim", "head_ffn_dim", "mask_conv_dim", "num_selected_instances",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")
        if self.num_labels is None or self.num_labels <= 0:
            raise ValueError(f"The model needs at least one class, got num_labels={self.num_labels}.")
        if not 0.0 <= self.mask_threshold <= 1.0:
            raise ValueError(f"`mask_threshold` must be in [0, 1], got {self.mask_threshold}.")
        self._check_ablation_switches()

    def _check_ablation_switches(self) -> None:
        for name, choices in ABLATION_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"TeViTConfig `{name}` must be one of {', '.join(map(repr, choices))}, got {getattr(self, name)!r}."
                )
        if self.num_messenger_tokens == 0:
            for name in ("messenger_manipulation", "inference_messenger_tokens"):
                if getattr(self, name) != ABLATION_CHOICES[name][0]:
                    raise ValueError(
                        f"TeViTConfig `{name}={getattr(self, name)!r}` needs messenger tokens, but "
                        "`num_messenger_tokens` is 0."
                    )

    def _check_backbone_choice(self) -> None:
        if self.backbone_frozen_stages < -1:
            raise ValueError(f"`backbone_frozen_stages` must be >= -1, got {self.backbone_frozen_stages}.")
        if self.uses_msgshift_backbone:
            return
        backbone_type = self.backbone_config.model_type
        out_features = _backbone_out_features(self.backbone_config)
        if len(out_features) != len(HF_BACKBONE_FEATURE_STRIDES):
            raise ValueError(
                f"`backbone_config` ({backbone_type}) has out_features {out_features}; TeViT's FPN needs 4 levels at "
                "strides 4, 8, 16, 32, e.g. out_features=['stage1', 'stage2', 'stage3', 'stage4']."
            )
        if self.num_messenger_tokens != 0:
            raise ValueError(
                f"`num_messenger_tokens` is {self.num_messenger_tokens} but messenger tokens exist only in the MsgShifT "
                f"PVTv2 backbone; a {backbone_type} backbone is the STQI-only TeViT: set num_messenger_tokens=0."
            )
        backbone_channels = getattr(self.backbone_config, "num_channels", self.num_channels)
        if backbone_channels != self.num_channels:
            raise ValueError(
                f"`backbone_config.num_channels` ({backbone_channels}) differs from `num_channels` ({self.num_channels})."
            )
        if self.backbone_frozen_stages > len(out_features):
            raise ValueError(
                f"`backbone_frozen_stages` ({self.backbone_frozen_stages}) exceeds the {len(out_features)} backbone stages."
            )

    @classmethod
    def from_official_preset(cls, name: str, **kwargs: Any) -> TeViTConfig:
        """Config of the official TeViT `name` ("r50", "r50_mstrain", "swin_l_mstrain"; the MsgShifT PVTv2-B1 is
        `TeViTConfig()`); `kwargs` override any field (a `backbone_config` given here replaces the preset's)."""
        key = name.lower().removeprefix("tevit_").replace("-", "_")
        if key not in OFFICIAL_PRESETS:
            raise ValueError(f"Unknown TeViT preset {name!r}; expected one of {sorted(OFFICIAL_PRESETS)}.")
        values = {**OFFICIAL_PRESETS[key], **kwargs}
        values["backbone_config"] = copy.deepcopy(values["backbone_config"])
        return cls(**values)

    @classmethod
    def from_pvt_v2_preset(cls, variant: str, **kwargs: Any) -> TeViTConfig:
        """Config with the backbone layout of PVTv2 `variant` ("b0" ... "b5"); `kwargs` override any field."""
        key = variant.lower().removeprefix("pvt_v2_").removeprefix("pvtv2-").removeprefix("pvt-v2-")
        if key not in PVT_V2_PRESETS:
            raise ValueError(f"Unknown PVTv2 variant {variant!r}; expected one of {sorted(PVT_V2_PRESETS)}.")
        return cls(**{**PVT_V2_PRESETS[key], **kwargs})


__all__ = [
    "TeViTConfig",
    "ABLATION_CHOICES",
    "OFFICIAL_PRESETS",
    "PVT_V2_PRESETS",
    "TINY_CONFIG_KWARGS",
    "YOUTUBE_VIS_2019_CLASSES",
]
