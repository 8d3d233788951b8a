"""Transformers backbones in TeViT (the "STQI only" TeViTs) and the official R50, R50-MST and Swin-L presets.

Tiny `ResNetConfig` / `SwinConfig` versions keep the structure of the presets (bottleneck ResNet with a frozen stem
and stage 1 and eval-mode BatchNorms; Swin with windows, patch merging and output norms) at CPU-test size.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import make_clip_labels, tiny_config
from hub_fixtures import moving_shapes, run_python_without_tevit_hf, tiny_processor, write_mp4
from transformers import ResNetConfig

from tevit_hf import OFFICIAL_PRESETS, TeViTConfig, TeViTForVideoInstanceSegmentation
from tevit_hf.commands.cli import main as cli_main
from tevit_hf.commands.push_to_hub import save_hub_folder
from tevit_hf.model_loading import load_model_and_processor
from tevit_hf.training import build_parameter_groups, parse_arguments
from tevit_hf.training.model_setup import build_config


HEIGHT, WIDTH = 64, 96
FOUR_LEVELS = ["stage1", "stage2", "stage3", "stage4"]
TINY_RESNET = {
    "model_type": "resnet", "embedding_size": 8, "hidden_sizes": [16, 24, 32, 40], "depths": [1, 2, 1, 1],
    "layer_type": "bottleneck", "out_features": FOUR_LEVELS,
}  # fmt: skip
TINY_SWIN = {
    "model_type": "swin", "embed_dim": 8, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 2, 2], "window_size": 2,
    "drop_path_rate": 0.2, "out_features": FOUR_LEVELS,
}  # fmt: skip
# The official presets at full size: (whole model, backbone) parameter counts. The heads, FPN excepted, are the
# MsgShifT model's (145,713,032 parameters with 100 proposals; 300 proposals add 200 x (4 + 256)).
PRESET_PARAMETERS = {
    "r50": (172_565_448, 23_508_032),
    "r50_mstrain": (172_565_448, 23_508_032),
    # Swin-L: 194,998,164 backbone parameters in use + the 3,072 of Transformers' unused final LayerNorm.
    "swin_l_mstrain": (343_864_892, 195_001_236),
}


def tiny_r50_config(**overrides) -> TeViTConfig:
    """The r50 preset (frozen stem + stage 1, BatchNorm eval) with a tiny ResNet and tiny heads."""
    preset = {**OFFICIAL_PRESETS["r50"], "backbone_config": copy.deepcopy(TINY_RESNET)}
    return tiny_config(**{**preset, **overrides})


def tiny_swin_config(**overrides) -> TeViTConfig:
    preset = {**OFFICIAL_PRESETS["swin_l_mstrain"], "backbone_config": copy.deepcopy(TINY_SWIN), "num_queries": 12}
    return tiny_config(**{**preset, **overrides})


def clip_labels(batch_size: int = 2, num_frames: int = 2) -> list[dict]:
    return [make_clip_labels(num_frames, HEIGHT, WIDTH) for _ in range(batch_size)]


def batch_norm_statistics(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor.clone()
        for name, tensor in module.state_dict().items()
        if name.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


# ----------------------------------------------------------------------------------------------------------------------
# Config: the Transformers backbone conventions
# ----------------------------------------------------------------------------------------------------------------------


def test_backbone_config_accepts_config_dict_and_local_folder_and_round_trips(tmp_path):
    from_instance = TeViTConfig(
        backbone_config=ResNetConfig(**{**TINY_RESNET, "model_type": None}), num_messenger_tokens=0
    )
    from_dict = TeViTConfig(backbone_config=copy.deepcopy(TINY_RESNET), num_messenger_tokens=0)
    assert isinstance(from_dict.backbone_config, ResNetConfig) and from_dict.to_dict() == from_instance.to_dict()
    assert not from_dict.uses_msgshift_backbone and from_dict.num_backbone_stages == 4
    assert from_dict.feature_strides == [4, 8, 16, 32]
    # `backbone=` a local folder (offline), with `backbone_kwargs`, as Transformers' backbone utilities take them.
    ResNetConfig(**{**TINY_RESNET, "model_type": None}).save_pretrained(tmp_path / "resnet")
    from_folder = TeViTConfig(
        backbone=str(tmp_path / "resnet"), backbone_kwargs={"depths": [1, 1, 1, 1]}, num_messenger_tokens=0
    )
    assert (
        from_folder.backbone_config.depths == [1, 1, 1, 1] and from_folder.backbone_config.out_features == FOUR_LEVELS
    )
    assert "backbone" not in from_folder.to_dict() and "backbone_kwargs" not in from_folder.to_dict()
    from_dict.save_pretrained(tmp_path / "tevit")
    saved = json.loads((tmp_path / "tevit" / "config.json").read_text())
    assert saved["backbone_config"]["model_type"] == "resnet"
    loaded = TeViTConfig.from_pretrained(tmp_path / "tevit")
    assert isinstance(loaded.backbone_config, ResNetConfig) and loaded.to_dict() == from_dict.to_dict()
    # The default stays the MsgShifT PVTv2.
    assert TeViTConfig().uses_msgshift_backbone and TeViTConfig().backbone_config is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"backbone_config": {**TINY_RESNET, "out_features": ["stage4"]}, "num_messenger_tokens": 0},
            "needs 4 levels",
        ),
        ({"backbone_config": TINY_RESNET}, "messenger tokens exist only in the MsgShifT"),
        ({"backbone_config": TINY_RESNET, "num_messenger_tokens": 0, "backbone_frozen_stages": 5}, "exceeds the 4"),
        (
            {"backbone_config": TINY_RESNET, "num_messenger_tokens": 0, "num_channels": 1},
            "differs from `num_channels`",
        ),
        ({"use_pretrained_backbone": True}, "never downloads weights"),
        ({"backbone_frozen_stages": -2}, "must be >= -1"),
    ],
)
def test_inconsistent_backbone_choices_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TeViTConfig(**kwargs)


def test_timm_backbone_feeds_the_fpn():
    pytest.importorskip("timm")
    config = tiny_config(
        backbone="resnet18",
        use_timm_backbone=True,
        backbone_kwargs={"out_indices": [1, 2, 3, 4]},
        num_messenger_tokens=0,
    )
    model = TeViTForVideoInstanceSegmentation(config).eval()
    with torch.no_grad():
        assert model(pixel_values=torch.randn(1, 2, 3, HEIGHT, WIDTH)).class_logits.shape[:2] == (1, 2)


# ----------------------------------------------------------------------------------------------------------------------
# The official presets
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESET_PARAMETERS))
def test_official_presets_match_the_official_configs(name):
    config = TeViTConfig.from_official_preset(name)
    backbone = config.backbone_config
    assert config.num_messenger_tokens == 0 and config.num_head_stages == 6 and config.hidden_size == 256
    if name.startswith("r50"):
        assert backbone.model_type == "resnet" and backbone.depths == [3, 4, 6, 3]
        assert backbone.hidden_sizes == [256, 512, 1024, 2048] and not backbone.downsample_in_bottleneck
        assert config.backbone_frozen_stages == 1 and config.backbone_norm_eval and config.num_queries == 100
    else:
        assert backbone.model_type == "swin" and backbone.embed_dim == 192 and backbone.depths == [2, 2, 18, 2]
        assert backbone.num_heads == [6, 12, 24, 48] and backbone.window_size == 7 and backbone.drop_path_rate == 0.2
        assert config.backbone_frozen_stages == -1 and not config.backbone_norm_eval and config.num_queries == 300
    with torch.device("meta"):
        model = TeViTForVideoInstanceSegmentation(config)
    total, in_backbone = PRESET_PARAMETERS[name]
    assert sum(parameter.numel() for parameter in model.parameters()) == total
    assert sum(parameter.numel() for parameter in model.model.backbone.parameters()) == in_backbone
    widths = [conv.in_channels for conv in model.model.neck.lateral_convs]
    assert widths == ([256, 512, 1024, 2048] if name.startswith("r50") else [192, 384, 768, 1536])
    with pytest.raises(ValueError, match="Unknown TeViT preset"):
        TeViTConfig.from_official_preset("r101")


@pytest.mark.parametrize("preset", ["r50", "r50_mstrain", "swin_l_mstrain"])
def test_benchmark_flops_counts_each_preset(preset, tmp_path):
    output_dir = tmp_path / preset
    arguments = ["benchmark", "flops", "--preset", preset, "--num-frames", "1", "--height", "64", "--width", "96"]
    assert cli_main([*arguments, "--output-dir", str(output_dir)]) == 0
    result = json.loads((output_dir / "flops.json").read_text())["result"]
    assert result["by_part"]["backbone"] > 0 and result["gflops_per_frame"] > result["by_part"]["backbone"]
    assert result["paper_gflops_per_frame"] is None  # the paper's 82.19 is the MsgShifT B1's


# ----------------------------------------------------------------------------------------------------------------------
# Tiny R50 / Swin TeViTs: forward, training step, frozen stages, save/load
# ----------------------------------------------------------------------------------------------------------------------


def tiny_convnext_config() -> TeViTConfig:
    convnext = {"model_type": "convnext", "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}
    return tiny_config(backbone_config={**convnext, "out_features": FOUR_LEVELS}, num_messenger_tokens=0)


def test_convnext_backbone_feeds_the_fpn():
    # Without `output_hidden_states`: with it, Transformers 5.24 installs ConvNeXt's output-capturing hooks twice when
    # an outer model captures too, and ConvNextBackbone pairs its maps with the wrong norms (docs/decisions.md).
    model = TeViTForVideoInstanceSegmentation(tiny_convnext_config())
    assert [conv.in_channels for conv in model.model.neck.lateral_convs] == [8, 16, 24, 32]
    outputs = model.train()(pixel_values=torch.randn(2, 2, 3, HEIGHT, WIDTH), labels=clip_labels())
    assert torch.isfinite(outputs.loss)


@pytest.mark.parametrize("make_config", [tiny_r50_config, tiny_swin_config], ids=["r50", "swin"])
def test_forward_and_a_training_step(make_config):
    config = make_config()
    model = TeViTForVideoInstanceSegmentation(config)
    assert [conv.in_channels for conv in model.model.neck.lateral_convs] == model.model.backbone.channels
    stem = model.model.get_input_embeddings()  # the module that reads the pixels
    assert next(module for module in stem.modules() if isinstance(module, torch.nn.Conv2d)).in_channels == 3
    model.eval()
    with torch.no_grad():
        outputs = model(pixel_values=torch.randn(1, 3, 3, HEIGHT, WIDTH), output_hidden_states=True)
    assert outputs.class_logits.shape == (1, 3, config.num_queries, config.num_labels)
    assert [tuple(level.shape[-2:]) for level in outputs.backbone_hidden_states] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    outputs = model(pixel_values=torch.randn(2, 2, 3, HEIGHT, WIDTH), labels=clip_labels())
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    trainable = [name for name, parameter in model.model.backbone.named_parameters() if parameter.requires_grad]
    with_gradient = [name for name, p in model.model.backbone.named_parameters() if p.grad is not None]
    # Every trainable backbone parameter gets a gradient (Swin's unused final LayerNorm is frozen, so DDP never waits).
    assert with_gradient == trainable
    optimizer.step()


def test_frozen_stages_have_no_gradient_and_frozen_batch_norms_keep_their_statistics():
    model = TeViTForVideoInstanceSegmentation(tiny_r50_config()).train()
    backbone = model.model.backbone
    frozen = {name for name, parameter in backbone.named_parameters() if not parameter.requires_grad}
    assert frozen == {
        name for name, _ in backbone.named_parameters() if name.startswith(("embedder.", "encoder.stages.0."))
    }
    before = batch_norm_statistics(backbone)
    model(pixel_values=torch.randn(2, 2, 3, HEIGHT, WIDTH), labels=clip_labels()).loss.backward()
    assert all(backbone.get_parameter(name).grad is None for name in frozen)
    # norm_eval: no BatchNorm of the backbone updates its running statistics in training mode.
    after = batch_norm_statistics(backbone)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not any(module.training for module in backbone.modules() if isinstance(module, torch.nn.BatchNorm2d))
    assert model.training and model.mask_heads[0].training  # the rest trains normally

    # Without norm_eval only the frozen stem and stage 1 keep their statistics.
    model = TeViTForVideoInstanceSegmentation(tiny_r50_config(backbone_norm_eval=False)).train()
    backbone = model.model.backbone
    before = batch_norm_statistics(backbone)
    model(pixel_values=torch.randn(2, 2, 3, HEIGHT, WIDTH), labels=clip_labels())
    after = batch_norm_statistics(backbone)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("encoder.stages.") for name in changed)
    assert not any(name.startswith(("embedder.", "encoder.stages.0.")) for name in changed)


def test_swin_frozen_stages_include_the_stage_output_norms():
    model = TeViTForVideoInstanceSegmentation(tiny_swin_config(backbone_frozen_stages=1))
    frozen = {name for name, parameter in model.model.backbone.named_parameters() if not parameter.requires_grad}
    assert any(name.startswith("swin.embeddings.") for name in frozen)
    assert any(name.startswith("swin.encoder.layers.0.") for name in frozen)
    assert {"hidden_states_norms.stage1.weight", "swin.layernorm.weight"} <= frozen
    assert not any(name.startswith("swin.encoder.layers.1.") for name in frozen)


def test_a_backbone_at_other_strides_is_refused_at_the_first_forward():
    # `downsample_in_first_stage` puts ResNet's first level at stride 8.
    config = tiny_r50_config(backbone_config={**TINY_RESNET, "downsample_in_first_stage": True})
    model = TeViTForVideoInstanceSegmentation(config).eval()
    with pytest.raises(ValueError, match=r"Backbone level 0 is \(8, 12\).*expected \(16, 24\) \(stride 4\)"):
        model(pixel_values=torch.randn(1, 1, 3, HEIGHT, WIDTH))


FRESH_PROCESS_LOAD = """
import json, sys
import torch
from transformers import AutoModel, pipeline

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
segmenter = pipeline("video-instance-segmentation", model=sys.argv[1], trust_remote_code=True)
instances = segmenter(sys.argv[2], return_rle=True)
print(json.dumps({
    "module": type(model).__module__,
    "backbone": type(model.model.backbone).__name__,
    "frozen": sorted(n for n, p in model.named_parameters() if not p.requires_grad),
    "state": {k: v.double().sum().item() for k, v in model.state_dict().items()},
    "frames": len(instances[0]["segmentations"]),
}))
"""


def test_save_load_and_fresh_process_remote_code_loading_with_the_nested_backbone_config(tmp_path):
    model = TeViTForVideoInstanceSegmentation(tiny_r50_config()).eval()
    folder = save_hub_folder(model, tiny_processor(), tmp_path / "r50")
    loaded, _ = load_model_and_processor(folder)  # the project's strict loader
    assert type(loaded.model.backbone).__name__ == "ResNetBackbone"
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys() and all(torch.equal(state[k], loaded_state[k]) for k in state)
    expected_frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert sorted(n for n, p in loaded.named_parameters() if not p.requires_grad) == expected_frozen
    pixel_values = torch.randn(1, 2, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        assert torch.equal(
            model(pixel_values=pixel_values).class_logits, loaded(pixel_values=pixel_values).class_logits
        )

    video = write_mp4(tmp_path / "video.mp4", moving_shapes(num_frames=3))
    output = run_python_without_tevit_hf(FRESH_PROCESS_LOAD, str(folder), str(video), cwd=tmp_path)
    report = json.loads(output.strip().splitlines()[-1])
    assert report["module"].startswith("transformers_modules.") and report["backbone"] == "ResNetBackbone"
    assert report["frozen"] == expected_frozen and report["frames"] == 3
    assert report["state"] == pytest.approx({k: v.double().sum().item() for k, v in state.items()})


# ----------------------------------------------------------------------------------------------------------------------
# Training: presets by name, their recipes, the Swin-L weight-decay rule
# ----------------------------------------------------------------------------------------------------------------------


def test_train_script_selects_the_presets_and_their_recipes(tmp_path):
    labels = {0: "a", 1: "b"}
    assert build_config("r50", labels).backbone_config.model_type == "resnet"
    tiny = build_config("r50_mstrain", labels, {"backbone_config": TINY_RESNET, "hidden_size": 32})
    assert tiny.backbone_config.depths == [1, 2, 1, 1] and tiny.backbone_frozen_stages == 1
    assert build_config("swin_l_mstrain", labels).num_queries == 300

    def recipe(*arguments):
        args = parse_arguments(["--output_dir", str(tmp_path / "out"), "--synthetic", *arguments])
        return args.train_scales, args.scale_mode, args.test_size, args.no_weight_decay_keys

    assert recipe("--model_name_or_path", "r50") == ([(640, 360), (960, 480)], "range", (640, 360), [])
    assert recipe("--model_name_or_path", "r50_mstrain")[1] == "value"
    scales, mode, test_size, no_decay = recipe("--model_name_or_path", "swin_l_mstrain")
    assert scales == [(1333, short) for short in range(320, 801, 32)] and mode == "value"
    assert test_size == (1333, 480) and no_decay == ["absolute_pos_embed", "relative_position_bias_table", "norm"]
    # An explicit option wins over the recipe.
    assert recipe("--model_name_or_path", "swin_l_mstrain", "--scale_mode", "range")[1] == "range"


def test_swin_recipe_weight_decay_follows_mmcv_custom_keys():
    model = TeViTForVideoInstanceSegmentation(tiny_swin_config())
    keys = ["absolute_pos_embed", "relative_position_bias_table", "norm"]
    groups = build_parameter_groups(model, 1e-3, 0.1, 1e-4, keys)
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    by_group = {group["name"]: {names[id(p)] for p in group["params"]} for group in groups}
    decay = {group["name"]: (group["lr"], group["weight_decay"]) for group in groups}
    assert decay == {"backbone": (1e-4, 1e-4), "head": (1e-3, 1e-4), "no_decay": (1e-3, 0.0)}
    # The longest matching key wins: backbone norms keep decay and the backbone lr...
    assert "model.backbone.swin.encoder.layers.0.blocks.0.layernorm_before.weight" in by_group["backbone"]
    # ...the relative position tables lose both, and so do the head norms whose official name has "norm".
    assert (
        "model.backbone.swin.encoder.layers.0.blocks.0.attention.relative_position_bias.relative_position_bias_table"
        in (by_group["no_decay"])
    )
    assert "model.decoder_stages.0.self_attention_layer_norm.weight" in by_group["no_decay"]  # attention_norm
    assert "model.decoder_stages.0.final_layer_norm.weight" in by_group["no_decay"]  # ffn_norm
    # Officially `cls_fcs.1` and the mask head's `convs.0.bn`: no "norm" in the name, so they keep their decay.
    assert "model.decoder_stages.0.class_fcs.0.layer_norm.weight" in by_group["head"]
    assert "mask_heads.0.convs.0.batch_norm.weight" in by_group["head"]
    # Without keys (every other recipe) nothing is exempt.
    assert {group["name"] for group in build_parameter_groups(model, 1e-3, 0.1, 1e-4)} == {"backbone", "head"}
