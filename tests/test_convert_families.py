"""Conversion of the other official checkpoint families: TeViT R50 (mmdet ResNet keys -> Transformers ResNetBackbone)
and COCO QueryInst checkpoints (R50 and PVTv2-B1, 80 classes, no messenger tokens) as TeViT initialisations for
`scripts/train.py`. State dicts come from `original_checkpoint_fixture`, which spells out the official key lists."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_train_arguments
from original_checkpoint_fixture import make_original_state_dict
from test_backbones import TINY_RESNET, tiny_r50_config

from tevit_hf import TeViTConfig, TeViTForVideoInstanceSegmentation
from tevit_hf.commands.cli import main as cli_main
from tevit_hf.convert_tevit_original_to_hf import (
    check_state_dict_matches,
    convert_hf_state_dict_to_original,
    convert_original_state_dict,
    expected_hf_shapes,
    fresh_keys,
    infer_config_from_state_dict,
    rename_original_state_dict,
)
from tevit_hf.data.synthetic import generate_synthetic_vis_dataset
from tevit_hf.model_loading import load_model_and_processor
from tevit_hf.training import parse_arguments, train


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("preset", ["r50", "r50_mstrain"])
def test_full_size_official_r50_keys_fill_the_model_exactly(preset):
    config = TeViTConfig.from_official_preset(preset)
    original = make_original_state_dict(config, device="meta")
    assert len([key for key in original if key.startswith("backbone.")]) == 318  # torchvision resnet50 without its fc
    converted = rename_original_state_dict(original)
    check_state_dict_matches(converted, expected_hf_shapes(config))  # every key, every shape, nothing left over
    inferred = infer_config_from_state_dict(original)
    assert inferred.backbone_config.to_dict() == config.backbone_config.to_dict()
    assert (inferred.backbone_frozen_stages, inferred.backbone_norm_eval, inferred.num_messenger_tokens) == (
        1,
        True,
        0,
    )


def test_tiny_tevit_r50_converts_strictly_and_round_trips():
    config = tiny_r50_config()
    original = make_original_state_dict(config)
    inferred = infer_config_from_state_dict(original)
    assert inferred.backbone_config.depths == TINY_RESNET["depths"]
    assert inferred.backbone_config.hidden_sizes == TINY_RESNET["hidden_sizes"]
    converted = convert_original_state_dict(original, inferred)
    model = TeViTForVideoInstanceSegmentation(inferred)
    model.load_state_dict(converted, strict=True)
    back = convert_hf_state_dict_to_original(model.state_dict())
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[key], original[key]) for key in original)


def test_an_unknown_resnet_key_is_named():
    original = make_original_state_dict(tiny_r50_config())
    with pytest.raises(ValueError, match=r"backbone\.layer1\.0\.conv4\.weight"):
        rename_original_state_dict({**original, "backbone.layer1.0.conv4.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"model\.backbone\.encoder\.stages\.0\.extra\.weight"):
        convert_hf_state_dict_to_original({"model.backbone.encoder.stages.0.extra.weight": torch.zeros(1)})


def test_full_size_queryinst_pvt_v2_b1_coco_checkpoint_leaves_only_the_messenger_tokens_fresh():
    original = make_original_state_dict(TeViTConfig(num_labels=80), device="meta", queryinst=True)
    config = infer_config_from_state_dict(original)
    assert config.num_labels == 80 and config.num_messenger_tokens == 32 and config.num_queries == 100
    assert fresh_keys(original, config) == ("model.backbone.messenger_tokens",)
    convert_original_state_dict(original, config)  # strict but for the messenger tokens
    # The same checkpoint with the tokens removed from the allowance is incomplete: nothing else is let through.
    with pytest.raises(ValueError, match=r"does not fill:\n\s+model\.backbone\.messenger_tokens"):
        check_state_dict_matches(rename_original_state_dict(original), expected_hf_shapes(config))


@pytest.mark.parametrize(
    ("family", "make_config", "expected"),
    [
        ("pvt_v2", lambda: tiny_config(num_labels=80), "initialised fresh: model.backbone.messenger_tokens"),
        ("r50", lambda: tiny_r50_config(num_labels=80, num_queries=30), "every model tensor loaded"),
    ],
)
def test_queryinst_coco_checkpoint_converts_and_initialises_training(tmp_path, caplog, family, make_config, expected):
    config = make_config()
    checkpoint = tmp_path / f"queryinst_{family}_coco.pth"
    torch.save({"state_dict": make_original_state_dict(config, queryinst=True), "meta": {}}, checkpoint)
    converted = tmp_path / "converted"
    with caplog.at_level(logging.INFO, logger="tevit_hf.convert_tevit_original_to_hf"):
        assert cli_main(["convert", "--checkpoint", str(checkpoint), "--output-dir", str(converted)]) == 0
    found = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Found a")]
    assert len(found) == 1 and "80 classes" in found[0] and expected in found[0], found
    saved = json.loads((converted / "config.json").read_text())
    assert len(saved["id2label"]) == 80 and saved["num_queries"] == config.num_queries

    # `scripts/train.py --init_from` takes it: every tensor loads but the 80-class layers (3 classes here).
    dataset = tmp_path / "data"
    generate_synthetic_vis_dataset(dataset, num_videos=2, num_frames=4, height=64, width=96, num_classes=3, mp4="none")
    arguments = tiny_train_arguments(dataset, tmp_path / "run", "--max_train_steps", "2", "--skip_final_evaluation")
    arguments += ["--logging_steps", "1"]
    arguments[arguments.index("tiny")] = str(converted)  # the converted architecture, the dataset's labels
    arguments += ["--init_from", str(converted)]
    if family == "pvt_v2":
        train(parse_arguments(arguments))
    else:  # the R50 run goes through a 2-process `accelerate launch`, as a multi-GPU run would
        launcher = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--main_process_port", "0", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        ]  # fmt: skip
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
        command = [*launcher, str(REPO_ROOT / "scripts" / "train.py"), *arguments, "--debug_rank_report"]
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
        assert "8 of another shape" in result.stdout  # the 80-class layers of the 2 stages, and nothing else
        reports = [json.loads((tmp_path / "run" / f"rank_{rank}.json").read_text()) for rank in (0, 1)]
        assert reports[0]["world_size"] == 2 and reports[0]["parameters_sha256"] == reports[1]["parameters_sha256"]
        losses = [float(value) for value in re.findall(r"train/loss=([^,\s]+)", result.stdout + result.stderr)]
        assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)  # logged at both steps
    trained, _ = load_model_and_processor(tmp_path / "run")  # the strict loader
    assert trained.config.num_labels == 3
    assert trained.config.uses_msgshift_backbone == (family == "pvt_v2")


# ----------------------------------------------------------------------------------------------------------------------
# Swin-L: mmdet SwinTransformer keys
# ----------------------------------------------------------------------------------------------------------------------


def test_full_size_official_swin_l_keys_fill_the_model_exactly():
    config = TeViTConfig.from_official_preset("swin_l_mstrain")
    original = make_original_state_dict(config, device="meta")
    inferred = infer_config_from_state_dict(original)
    assert inferred.backbone_config.to_dict() == config.backbone_config.to_dict()
    assert inferred.num_queries == 300 and inferred.num_messenger_tokens == 0
    # Every official key is used and every model tensor filled, but Transformers' unused final Swin LayerNorm.
    assert fresh_keys(original, inferred) == (
        "model.backbone.swin.layernorm.weight",
        "model.backbone.swin.layernorm.bias",
    )
    convert_original_state_dict(original, inferred)


def test_tiny_tevit_swin_converts_strictly_and_round_trips(tmp_path, caplog):
    from test_backbones import tiny_swin_config

    original = make_original_state_dict(tiny_swin_config())
    checkpoint = tmp_path / "tevit_swin.pth"
    torch.save({"state_dict": original}, checkpoint)
    with caplog.at_level(logging.INFO, logger="tevit_hf.convert_tevit_original_to_hf"):
        assert cli_main(["convert", "--checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "out")]) == 0
    assert any("swin depths [1, 1, 2, 1]" in record.getMessage() for record in caplog.records)
    model = TeViTForVideoInstanceSegmentation.from_pretrained(tmp_path / "out")
    back = convert_hf_state_dict_to_original(model.state_dict())
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[key], original[key]) for key in original)
    with pytest.raises(ValueError, match=r"backbone\.stages\.0\.blocks\.0\.attn\.w_msa\.extra\.weight"):
        rename_original_state_dict({**original, "backbone.stages.0.blocks.0.attn.w_msa.extra.weight": torch.zeros(1)})
    broken_index = {**original, "backbone.stages.0.blocks.0.attn.w_msa.relative_position_index": torch.zeros(4, 4)}
    with pytest.raises(ValueError, match="not the relative position index of a 2x2 window"):
        rename_original_state_dict(broken_index)


def test_patch_merging_weights_compute_what_mmdet_unfold_merging_computes():
    """mmdet's PatchMerging (nn.Unfold gather, then norm and reduction), written out here, and Transformers' with the
    converted weights give the same output: the channel reordering is right."""
    from transformers.models.swin.modeling_swin import SwinPatchMerging

    torch.manual_seed(0)
    channels, height, width = 6, 4, 6
    norm_weight, norm_bias = torch.randn(4 * channels), torch.randn(4 * channels)
    reduction = torch.randn(2 * channels, 4 * channels)
    tokens = torch.randn(2, height * width, channels)

    grid = tokens.view(2, height, width, channels).permute(0, 3, 1, 2)
    unfolded = torch.nn.functional.unfold(grid, kernel_size=2, stride=2).transpose(1, 2)  # (B, L, C * 4)
    normed = torch.nn.functional.layer_norm(unfolded, (4 * channels,), norm_weight, norm_bias)
    expected = normed @ reduction.T

    converted = rename_original_state_dict(
        {
            "backbone.stages.0.downsample.norm.weight": norm_weight,
            "backbone.stages.0.downsample.norm.bias": norm_bias,
            "backbone.stages.0.downsample.reduction.weight": reduction,
        }
    )
    prefix = "model.backbone.swin.encoder.layers.0.downsample."
    merging = SwinPatchMerging(dim=channels)
    merging.load_state_dict({key.removeprefix(prefix): value for key, value in converted.items()})
    with torch.no_grad():
        assert torch.allclose(merging(tokens, (height, width)), expected, atol=1e-5)
