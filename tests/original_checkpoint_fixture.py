"""Synthetic official (hustvl/TeViT, mmdet 2.23) state dicts, written from spec section 6.3 alone.

The generator deliberately does not use the converter's key table: it spells out the official key names and
shapes independently, so that tests comparing the two catch a wrong rule on either side.
"""

from __future__ import annotations

import torch

from tevit_hf.configuration_tevit import TINY_CONFIG_KWARGS, TeViTConfig


def make_original_state_dict(
    config: TeViTConfig, *, device: str | torch.device = "cpu", seed: int = 0, queryinst: bool = False
) -> dict[str, torch.Tensor]:
    """Official-format state dict for the architecture described by `config`.

    On `device="meta"` the tensors have shapes only (the full B1 model then costs no memory); otherwise they are
    filled with seeded random values (BatchNorm running variances positive, `num_batches_tracked` an int64 scalar).
    A config with a ResNet `backbone_config` gives mmdet's `ResNet` keys (torchvision's names under `backbone.`), one
    with a Swin `backbone_config` mmdet's `SwinTransformer` keys (as its `swin_converter` writes them);
    `queryinst=True` leaves out the messenger tokens, as in a COCO QueryInst checkpoint (hustvl/QueryInst, Storage).
    """
    generator = torch.Generator().manual_seed(seed)
    state_dict: dict[str, torch.Tensor] = {}

    def add(key: str, *shape: int, dtype: torch.dtype = torch.float32) -> None:
        if key in state_dict:
            raise AssertionError(f"fixture bug: duplicate key {key}")
        if torch.device(device).type == "meta":
            state_dict[key] = torch.empty(shape, dtype=dtype, device="meta")
        elif dtype == torch.int64:
            state_dict[key] = torch.randint(0, 1000, shape, generator=generator, dtype=dtype)
        else:
            state_dict[key] = torch.randn(shape, generator=generator, dtype=dtype)

    def add_weight_bias(prefix: str, *weight_shape: int) -> None:
        add(f"{prefix}.weight", *weight_shape)
        add(f"{prefix}.bias", weight_shape[0])

    def add_batch_norm(prefix: str, width: int) -> None:
        add_weight_bias(prefix, width)
        add(f"{prefix}.running_mean", width)
        add(f"{prefix}.running_var", width)
        add(f"{prefix}.num_batches_tracked", dtype=torch.int64)

    if not config.uses_msgshift_backbone and config.backbone_config.model_type == "swin":
        # mmdet SwinTransformer (after its swin_converter): patch_embed, stages.{i}.blocks.{j}, downsample, norm{i}.
        swin = config.backbone_config
        dim, window = swin.embed_dim, swin.window_size
        add_weight_bias("backbone.patch_embed.projection", dim, config.num_channels, swin.patch_size, swin.patch_size)
        add_weight_bias("backbone.patch_embed.norm", dim)
        # mmdet WindowMSA's index buffer (its `double_step_seq` formula).
        steps = torch.arange(0, (2 * window - 1) * window, 2 * window - 1)[:, None] + torch.arange(window)[None, :]
        coords = steps.reshape(1, -1)
        index = (coords + coords.T).flip(1).contiguous()
        backbone_widths = []
        for stage, (depth, heads) in enumerate(zip(swin.depths, swin.num_heads)):
            width = dim * 2**stage
            backbone_widths.append(width)
            hidden = int(swin.mlp_ratio * width)
            for block in range(depth):
                prefix = f"backbone.stages.{stage}.blocks.{block}"
                add_weight_bias(f"{prefix}.norm1", width)
                add(f"{prefix}.attn.w_msa.relative_position_bias_table", (2 * window - 1) ** 2, heads)
                state_dict[f"{prefix}.attn.w_msa.relative_position_index"] = index  # real values, also on meta
                add_weight_bias(f"{prefix}.attn.w_msa.qkv", 3 * width, width)
                add_weight_bias(f"{prefix}.attn.w_msa.proj", width, width)
                add_weight_bias(f"{prefix}.norm2", width)
                add_weight_bias(f"{prefix}.ffn.layers.0.0", hidden, width)
                add_weight_bias(f"{prefix}.ffn.layers.1", width, hidden)
            if stage < len(swin.depths) - 1:
                add_weight_bias(f"backbone.stages.{stage}.downsample.norm", 4 * width)
                add(f"backbone.stages.{stage}.downsample.reduction.weight", 2 * width, 4 * width)
        for stage, width in enumerate(backbone_widths):
            add_weight_bias(f"backbone.norm{stage}", width)
    elif not config.uses_msgshift_backbone:  # mmdet ResNet (pytorch style, bottleneck: planes = width / 4)
        resnet = config.backbone_config
        add("backbone.conv1.weight", resnet.embedding_size, config.num_channels, 7, 7)
        add_batch_norm("backbone.bn1", resnet.embedding_size)
        in_channels = resnet.embedding_size
        for stage, (width, depth) in enumerate(zip(resnet.hidden_sizes, resnet.depths), start=1):
            planes = width // 4
            for block in range(depth):
                prefix = f"backbone.layer{stage}.{block}"
                add(f"{prefix}.conv1.weight", planes, in_channels, 1, 1)
                add_batch_norm(f"{prefix}.bn1", planes)
                add(f"{prefix}.conv2.weight", planes, planes, 3, 3)
                add_batch_norm(f"{prefix}.bn2", planes)
                add(f"{prefix}.conv3.weight", width, planes, 1, 1)
                add_batch_norm(f"{prefix}.bn3", width)
                if block == 0:
                    add(f"{prefix}.downsample.0.weight", width, in_channels, 1, 1)
                    add_batch_norm(f"{prefix}.downsample.1", width)
                in_channels = width
        backbone_widths = list(resnet.hidden_sizes)
    else:
        backbone_widths = list(config.backbone_hidden_sizes)
    # Backbone (MsgShifT).
    if config.uses_msgshift_backbone and not queryinst:
        add("backbone.msg_tokens", 1, config.num_messenger_tokens, config.num_channels)
    in_channels = config.num_channels
    for stage, width in enumerate(config.backbone_hidden_sizes if config.uses_msgshift_backbone else []):
        kernel = config.backbone_patch_sizes[stage]
        sr_ratio = config.backbone_sr_ratios[stage]
        mlp_width = config.backbone_mlp_ratios[stage] * width
        add_weight_bias(f"backbone.layers.{stage}.0.projection", width, in_channels, kernel, kernel)
        add_weight_bias(f"backbone.layers.{stage}.0.norm", width)
        for block in range(config.backbone_depths[stage]):
            prefix = f"backbone.layers.{stage}.1.{block}"
            add_weight_bias(f"{prefix}.norm1", width)
            add(f"{prefix}.attn.attn.in_proj_weight", 3 * width, width)
            add(f"{prefix}.attn.attn.in_proj_bias", 3 * width)
            add_weight_bias(f"{prefix}.attn.attn.out_proj", width, width)
            if sr_ratio > 1:
                add_weight_bias(f"{prefix}.attn.sr", width, width, sr_ratio, sr_ratio)
                add_weight_bias(f"{prefix}.attn.norm", width)
            add_weight_bias(f"{prefix}.norm2", width)
            add_weight_bias(f"{prefix}.ffn.layers.0", mlp_width, width, 1, 1)
            add_weight_bias(f"{prefix}.ffn.layers.1", mlp_width, 1, 3, 3)
            add_weight_bias(f"{prefix}.ffn.layers.4", width, mlp_width, 1, 1)
        add_weight_bias(f"backbone.layers.{stage}.2", width)
        in_channels = width

    # Neck (FPN).
    hidden = config.hidden_size
    for level, width in enumerate(backbone_widths):
        add_weight_bias(f"neck.lateral_convs.{level}.conv", hidden, width, 1, 1)
        add_weight_bias(f"neck.fpn_convs.{level}.conv", hidden, hidden, 3, 3)

    # EmbeddingRPNHead.
    add("rpn_head.init_proposal_bboxes.weight", config.num_queries, 4)
    add("rpn_head.init_proposal_features.weight", config.num_queries, hidden)

    dynamic = config.dynamic_conv_dim
    num_classes = config.num_labels
    for stage in range(config.num_head_stages):
        prefix = f"roi_head.bbox_head.{stage}"
        add_weight_bias(f"{prefix}.fc_cls", num_classes, hidden)
        add_weight_bias(f"{prefix}.fc_reg", 4, hidden)
        add(f"{prefix}.attention.attn.in_proj_weight", 3 * hidden, hidden)
        add(f"{prefix}.attention.attn.in_proj_bias", 3 * hidden)
        add_weight_bias(f"{prefix}.attention.attn.out_proj", hidden, hidden)
        add_weight_bias(f"{prefix}.attention_norm", hidden)
        add_weight_bias(f"{prefix}.instance_interactive_conv.dynamic_layer", 2 * hidden * dynamic, hidden)
        add_weight_bias(f"{prefix}.instance_interactive_conv.norm_in", dynamic)
        add_weight_bias(f"{prefix}.instance_interactive_conv.norm_out", hidden)
        add_weight_bias(f"{prefix}.instance_interactive_conv.fc_layer", hidden, hidden * config.box_roi_size**2)
        add_weight_bias(f"{prefix}.instance_interactive_conv.fc_norm", hidden)
        add_weight_bias(f"{prefix}.instance_interactive_conv_norm", hidden)
        add_weight_bias(f"{prefix}.ffn.layers.0.0", config.head_ffn_dim, hidden)
        add_weight_bias(f"{prefix}.ffn.layers.1", hidden, config.head_ffn_dim)
        add_weight_bias(f"{prefix}.ffn_norm", hidden)
        for branch, count in (("cls_fcs", config.num_cls_fcs), ("reg_fcs", config.num_reg_fcs)):
            for fc in range(count):  # [Linear(no bias), LayerNorm, ReLU] per fc: indices 3k, 3k+1, 3k+2
                add(f"{prefix}.{branch}.{3 * fc}.weight", hidden, hidden)
                add_weight_bias(f"{prefix}.{branch}.{3 * fc + 1}", hidden)

        prefix = f"roi_head.mask_head.{stage}"
        in_channels = hidden
        for conv in range(config.mask_num_convs):
            add(f"{prefix}.convs.{conv}.conv.weight", config.mask_conv_dim, in_channels, 3, 3)
            add_weight_bias(f"{prefix}.convs.{conv}.bn", config.mask_conv_dim)
            add(f"{prefix}.convs.{conv}.bn.running_mean", config.mask_conv_dim)
            add(f"{prefix}.convs.{conv}.bn.running_var", config.mask_conv_dim)
            add(f"{prefix}.convs.{conv}.bn.num_batches_tracked", dtype=torch.int64)
            in_channels = config.mask_conv_dim
        ratio = config.mask_upsample_ratio
        add_weight_bias(f"{prefix}.upsample", config.mask_conv_dim, config.mask_conv_dim, ratio, ratio)
        add_weight_bias(f"{prefix}.conv_logits", num_classes, config.mask_conv_dim, 1, 1)
        add_weight_bias(f"{prefix}.instance_interactive_conv.dynamic_layer", 2 * hidden * dynamic, hidden)
        add_weight_bias(f"{prefix}.instance_interactive_conv.norm_in", dynamic)
        add_weight_bias(f"{prefix}.instance_interactive_conv.norm_out", hidden)

    if torch.device(device).type != "meta":
        for key, tensor in state_dict.items():
            if key.endswith("running_var"):
                tensor.abs_().add_(0.1)
    return state_dict


BATCH_NORM_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def count_parameters(state_dict: dict[str, torch.Tensor]) -> int:
    """Number of learnable values: every tensor except BatchNorm running statistics."""
    return sum(tensor.numel() for key, tensor in state_dict.items() if not key.endswith(BATCH_NORM_BUFFER_SUFFIXES))


def tiny_config(**overrides) -> TeViTConfig:
    """The project's tiny test architecture (COMMON brief), with optional overrides."""
    kwargs = {**TINY_CONFIG_KWARGS, "num_labels": 3}
    kwargs.update(overrides)
    return TeViTConfig(**kwargs)
