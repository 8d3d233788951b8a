"""Official checkpoint conversion: key map, config inference, strict loading and the `tevit-hf convert` command."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
from original_checkpoint_fixture import count_parameters, make_original_state_dict, tiny_config

import tevit_hf.convert_tevit_original_to_hf as convert_hf
from tevit_hf.commands.convert import load_id2label
from tevit_hf.configuration_tevit import YOUTUBE_VIS_2019_CLASSES, TeViTConfig
from tevit_hf.convert_tevit_original_to_hf import (
    KEY_RULES,
    check_state_dict_matches,
    convert_hf_state_dict_to_original,
    infer_config_from_state_dict,
    load_original_state_dict,
    rename_original_state_dict,
)


B1_NUM_PARAMETERS = 161_832_616
B1_NUM_TENSORS = 623
# Architecture fields inferred from shapes (everything the weights pin down).
INFERRED_FIELDS = (
    "num_channels", "backbone_hidden_sizes", "backbone_depths", "backbone_sr_ratios", "backbone_mlp_ratios",
    "backbone_patch_sizes", "backbone_strides", "backbone_paddings", "num_messenger_tokens", "hidden_size",
    "num_queries", "num_head_stages", "head_ffn_dim", "dynamic_conv_dim", "num_cls_fcs", "num_reg_fcs",
    "box_roi_size", "mask_num_convs", "mask_conv_dim", "mask_upsample_ratio", "num_labels",
)  # fmt: skip

requires_model = pytest.mark.skipif(
    importlib.util.find_spec("tevit_hf.modeling_tevit") is None, reason="tevit_hf.modeling_tevit not written yet"
)


@pytest.fixture(scope="module")
def b1_original() -> dict[str, torch.Tensor]:
    return make_original_state_dict(TeViTConfig(), device="meta")


@pytest.fixture(scope="module")
def tiny_original() -> dict[str, torch.Tensor]:
    return make_original_state_dict(tiny_config(), seed=0)


def varied_tiny_config() -> TeViTConfig:
    """A tiny layout where every inferred field differs from the defaults (odd depths, sr 1 early, ...)."""
    return tiny_config(
        backbone_depths=[1, 2, 1, 3],
        backbone_sr_ratios=[4, 1, 2, 1],
        backbone_mlp_ratios=[1, 2, 3, 4],
        backbone_patch_sizes=[5, 3, 3, 1],
        backbone_paddings=[2, 1, 1, 0],
        num_messenger_tokens=12,
        num_queries=7,
        num_head_stages=3,
        head_ffn_dim=48,
        dynamic_conv_dim=4,
        num_cls_fcs=2,
        num_reg_fcs=1,
        box_roi_size=5,
        mask_num_convs=2,
        mask_conv_dim=12,
        mask_upsample_ratio=3,
        num_labels=5,
    )


def _rules_matching(key: str, regex_name: str) -> list:
    return [rule for rule in KEY_RULES if getattr(rule, regex_name).fullmatch(key)]


# --- the official fixture itself (spec 6.2/6.3 and the README parameter count) ---


def test_b1_fixture_has_the_official_tensor_and_parameter_counts(b1_original):
    assert len(b1_original) == B1_NUM_TENSORS
    assert count_parameters(b1_original) == B1_NUM_PARAMETERS
    by_part = {part: sum(key.startswith(part) for key in b1_original) for part in ("backbone", "neck", "rpn", "roi")}
    assert by_part == {"backbone": 161, "neck": 16, "rpn": 2, "roi": 444}
    assert tuple(b1_original["backbone.layers.0.1.0.attn.sr.weight"].shape) == (64, 64, 8, 8)
    assert tuple(b1_original["backbone.layers.2.1.1.ffn.layers.1.weight"].shape) == (1280, 1, 3, 3)
    assert tuple(b1_original["backbone.layers.3.1.1.attn.attn.in_proj_weight"].shape) == (1536, 512)


# --- the pure key map ---


@pytest.mark.parametrize("which", ["b1", "tiny"])
def test_every_official_key_matches_exactly_one_rule_both_ways(which, b1_original, tiny_original):
    original = b1_original if which == "b1" else tiny_original
    for key in original:
        assert len(_rules_matching(key, "original_regex")) >= 1, key
    converted = rename_original_state_dict(original)
    for key in converted:
        assert len(_rules_matching(key, "hf_regex")) == 1, key
    # fused in_proj weight+bias -> 3 tensors each: 2 extra keys per fused tensor
    num_fused = sum(key.endswith(("in_proj_weight", "in_proj_bias")) for key in original)
    assert len(converted) == len(original) + 2 * num_fused
    assert sum(tensor.numel() for tensor in converted.values()) == sum(t.numel() for t in original.values())


def test_known_keys_map_to_the_documented_names(tiny_original):
    converted = rename_original_state_dict(tiny_original)
    fused = tiny_original["backbone.layers.1.1.0.attn.attn.in_proj_weight"]
    width = fused.shape[1]
    prefix = "model.backbone.stages.1.layers.0.attention"
    assert torch.equal(converted[f"{prefix}.q_proj.weight"], fused[:width])
    assert torch.equal(converted[f"{prefix}.k_proj.weight"], fused[width : 2 * width])
    assert torch.equal(converted[f"{prefix}.v_proj.weight"], fused[2 * width :])
    fc1 = tiny_original["backbone.layers.2.1.1.ffn.layers.0.weight"]
    assert torch.equal(converted["model.backbone.stages.2.layers.1.mlp.dense1.weight"], fc1[:, :, 0, 0])
    # cls_fcs/reg_fcs interleave Linear (3k), LayerNorm (3k+1) and ReLU (3k+2)
    assert torch.equal(
        converted["model.decoder_stages.1.box_fcs.2.dense.weight"],
        tiny_original["roi_head.bbox_head.1.reg_fcs.6.weight"],
    )
    assert torch.equal(
        converted["model.decoder_stages.1.box_fcs.2.layer_norm.bias"],
        tiny_original["roi_head.bbox_head.1.reg_fcs.7.bias"],
    )
    assert torch.equal(
        converted["mask_heads.0.convs.3.batch_norm.num_batches_tracked"],
        tiny_original["roi_head.mask_head.0.convs.3.bn.num_batches_tracked"],
    )
    assert torch.equal(converted["model.neck.output_convs.2.weight"], tiny_original["neck.fpn_convs.2.conv.weight"])


def test_round_trip_original_to_hf_to_original_is_identical(tiny_original):
    back = convert_hf_state_dict_to_original(rename_original_state_dict(tiny_original))
    assert set(back) == set(tiny_original)
    for key, tensor in tiny_original.items():
        assert back[key].dtype == tensor.dtype, key
        assert torch.equal(back[key], tensor), key


def test_round_trip_keeps_every_b1_key_and_shape(b1_original):
    back = convert_hf_state_dict_to_original(rename_original_state_dict(b1_original))
    assert {key: tuple(value.shape) for key, value in back.items()} == {
        key: tuple(value.shape) for key, value in b1_original.items()
    }


def test_split_tensors_do_not_share_storage(tiny_original):
    converted = rename_original_state_dict(tiny_original)
    prefix = "model.decoder_stages.0.self_attention"
    pointers = {converted[f"{prefix}.{name}_proj.weight"].untyped_storage().data_ptr() for name in "qkv"}
    assert len(pointers) == 3


# --- negative cases: loud failures naming the key ---


def test_unknown_official_key_is_named(tiny_original):
    broken = {**tiny_original, "roi_head.bbox_head.0.mystery.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"roi_head\.bbox_head\.0\.mystery\.weight"):
        rename_original_state_dict(broken)


def test_linear_layer_bias_in_cls_fcs_is_not_silently_mapped(tiny_original):
    broken = {**tiny_original, "roi_head.bbox_head.0.cls_fcs.0.bias": torch.zeros(32)}
    with pytest.raises(ValueError, match=r"cls_fcs\.0\.bias"):
        rename_original_state_dict(broken)


def test_bad_fused_and_1x1_shapes_are_named(tiny_original):
    key = "roi_head.bbox_head.1.attention.attn.in_proj_bias"
    with pytest.raises(ValueError, match=rf"{key}.*divisible by 3"):
        rename_original_state_dict({**tiny_original, key: torch.zeros(10)})
    key = "backbone.layers.0.1.0.ffn.layers.4.weight"
    with pytest.raises(ValueError, match=rf"{key}.*1x1"):
        rename_original_state_dict({**tiny_original, key: torch.zeros(8, 16, 3, 3)})


def test_unknown_hf_key_and_incomplete_qkv_are_named(tiny_original):
    converted = rename_original_state_dict(tiny_original)
    with pytest.raises(ValueError, match=r"model\.extra\.weight"):
        convert_hf_state_dict_to_original({**converted, "model.extra.weight": torch.zeros(1)})
    del converted["model.decoder_stages.1.self_attention.k_proj.bias"]
    with pytest.raises(ValueError, match=r"roi_head\.bbox_head\.1\.attention\.attn\.in_proj_bias"):
        convert_hf_state_dict_to_original(converted)


def test_check_state_dict_matches_reports_missing_unused_and_shape_by_key(tiny_original):
    converted = rename_original_state_dict(tiny_original)
    expected = {key: tuple(value.shape) for key, value in converted.items()}
    check_state_dict_matches(converted, expected)
    missing_key = "model.proposal_boxes.weight"
    with pytest.raises(ValueError, match=rf"does not fill:\s+{missing_key}"):
        check_state_dict_matches({k: v for k, v in converted.items() if k != missing_key}, expected)
    with pytest.raises(ValueError, match=r"does not have:\s+model\.spare"):
        check_state_dict_matches({**converted, "model.spare": torch.zeros(1)}, expected)
    bad_key = "model.decoder_stages.0.class_predictor.weight"
    with pytest.raises(ValueError, match=rf"{bad_key}: expected \(3, 32\), got \(4, 32\)"):
        check_state_dict_matches({**converted, bad_key: torch.zeros(4, 32)}, expected)


# --- config inference ---


@pytest.mark.parametrize(
    "make_config", [TeViTConfig, varied_tiny_config, lambda: TeViTConfig.from_pvt_v2_preset("b2", num_head_stages=1)]
)
def test_infer_config_recovers_the_architecture(make_config):
    config = make_config()
    original = make_original_state_dict(config, device="meta")
    inferred = infer_config_from_state_dict(
        original,
        backbone_num_attention_heads=config.backbone_num_attention_heads,
        head_num_attention_heads=config.head_num_attention_heads,
    )
    for name in INFERRED_FIELDS:
        assert getattr(inferred, name) == getattr(config, name), name


def test_backbone_heads_default_to_head_dim_64():
    inferred = infer_config_from_state_dict(make_original_state_dict(TeViTConfig(), device="meta"))
    assert inferred.backbone_num_attention_heads == [1, 2, 5, 8]
    b0 = make_original_state_dict(TeViTConfig.from_pvt_v2_preset("b0", num_head_stages=1), device="meta")
    assert infer_config_from_state_dict(b0, backbone_head_dim=32).backbone_num_attention_heads == [1, 2, 5, 8]


def test_labels_default_to_youtube_vis_names_for_40_classes_else_generic(tiny_original):
    b1 = infer_config_from_state_dict(make_original_state_dict(TeViTConfig(), device="meta"))
    assert b1.id2label == dict(enumerate(YOUTUBE_VIS_2019_CLASSES))
    tiny = infer_config_from_state_dict(tiny_original, head_num_attention_heads=4)
    assert tiny.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    named = infer_config_from_state_dict(tiny_original, head_num_attention_heads=4, id2label={0: "a", 1: "b", 2: "c"})
    assert named.label2id == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(ValueError, match="3 rows"):
        infer_config_from_state_dict(tiny_original, head_num_attention_heads=4, id2label={0: "a"})


def test_flags_that_contradict_the_shapes_are_rejected(tiny_original):
    with pytest.raises(ValueError, match="hidden_size"):
        infer_config_from_state_dict(tiny_original, head_num_attention_heads=4, hidden_size=64)


def test_flags_set_shape_free_fields(tiny_original):
    config = infer_config_from_state_dict(
        tiny_original, head_num_attention_heads=4, shift_messengers_at_inference=False
    )
    assert config.head_num_attention_heads == 4
    assert config.shift_messengers_at_inference is False


def test_missing_tensor_needed_for_inference_is_named(tiny_original):
    broken = {k: v for k, v in tiny_original.items() if k != "rpn_head.init_proposal_features.weight"}
    with pytest.raises(ValueError, match=r"rpn_head\.init_proposal_features\.weight"):
        infer_config_from_state_dict(broken)


# --- loading files ---


def test_load_original_state_dict_handles_mmcv_bare_and_module_prefixed(tmp_path, tiny_original):
    small = dict(list(tiny_original.items())[:5])
    mmcv_path, bare_path, ddp_path = tmp_path / "mmcv.pth", tmp_path / "bare.pth", tmp_path / "ddp.pth"
    torch.save({"meta": {"mmdet_version": "2.23.0", "iter": 3}, "state_dict": small}, mmcv_path)
    torch.save(small, bare_path)
    torch.save({f"module.{key}": value for key, value in small.items()}, ddp_path)
    for path in (mmcv_path, bare_path, ddp_path):
        loaded = load_original_state_dict(path)
        assert list(loaded) == list(small), path
        assert all(torch.equal(loaded[key], small[key]) for key in small)


def test_load_original_state_dict_rejects_non_tensor_entries(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": {"backbone.msg_tokens": torch.zeros(1, 4, 3), "note": "text"}}, path)
    with pytest.raises(ValueError, match="note"):
        load_original_state_dict(path)
    with pytest.raises(FileNotFoundError):
        load_original_state_dict(tmp_path / "absent.pth")


def test_load_id2label_accepts_object_and_list(tmp_path):
    (tmp_path / "object.json").write_text(json.dumps({"0": "cat", "1": "dog"}))
    (tmp_path / "list.json").write_text(json.dumps(["cat", "dog"]))
    assert load_id2label(tmp_path / "object.json") == {0: "cat", 1: "dog"}
    assert load_id2label(tmp_path / "list.json") == {0: "cat", 1: "dog"}


# --- against the real model ---


@requires_model
def test_b1_keys_and_shapes_equal_the_models_and_parameter_count(b1_original):
    from tevit_hf.convert_tevit_original_to_hf import convert_original_state_dict, expected_hf_shapes
    from tevit_hf.modeling_tevit import TeViTForVideoInstanceSegmentation

    config = TeViTConfig()
    converted = convert_original_state_dict(b1_original, config)  # raises on any leftover either way
    assert {key: tuple(value.shape) for key, value in converted.items()} == expected_hf_shapes(config)
    with torch.device("meta"):
        model = TeViTForVideoInstanceSegmentation(config)
    assert sum(parameter.numel() for parameter in model.parameters()) == B1_NUM_PARAMETERS
    model.load_state_dict(converted, strict=True, assign=True)


@requires_model
def test_tiny_checkpoint_loads_strictly_with_identical_values(tiny_original):
    from tevit_hf.convert_tevit_original_to_hf import convert_original_state_dict
    from tevit_hf.modeling_tevit import TeViTForVideoInstanceSegmentation

    config = infer_config_from_state_dict(tiny_original, head_num_attention_heads=4)
    converted = convert_original_state_dict(tiny_original, config)
    model = TeViTForVideoInstanceSegmentation(config)
    model.load_state_dict(converted, strict=True)
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in converted.items())
    back = convert_hf_state_dict_to_original(state)
    assert all(torch.equal(back[key], value) for key, value in tiny_original.items())


@requires_model
def test_wrong_shape_and_missing_key_fail_against_the_model(tiny_original):
    from tevit_hf.convert_tevit_original_to_hf import convert_original_state_dict

    config = infer_config_from_state_dict(tiny_original, head_num_attention_heads=4)
    missing = {k: v for k, v in tiny_original.items() if k != "roi_head.mask_head.1.upsample.bias"}
    with pytest.raises(ValueError, match=r"mask_heads\.1\.upsample\.bias"):
        convert_original_state_dict(missing, config)
    key = "roi_head.bbox_head.0.fc_reg.weight"
    with pytest.raises(ValueError, match=r"box_delta_predictor\.weight: expected \(4, 32\), got \(4, 16\)"):
        convert_original_state_dict({**tiny_original, key: torch.zeros(4, 16)}, config)


@requires_model
def test_convert_cli_writes_a_folder_automodel_loads(tmp_path, tiny_original, monkeypatch):
    from transformers import AutoModel

    import tevit_hf  # noqa: F401  (registers the auto classes)
    from tevit_hf.commands.cli import main

    checkpoint = tmp_path / "tevit_tiny.pth"
    torch.save({"meta": {"mmdet_version": "2.23.0"}, "state_dict": tiny_original}, checkpoint)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["cat", "dog", "owl"]))
    output_dir = tmp_path / "converted"
    monkeypatch.setattr(sys, "argv", ["tevit-hf"])
    args = ["convert", "--checkpoint", str(checkpoint), "--output-dir", str(output_dir), "--id2label", str(labels)]
    flags = ["--verify", "--head-num-attention-heads", "4", "--backbone-head-dim", "8", "--no-shift-at-inference"]
    exit_code = main([*args, *flags])
    assert exit_code == 0
    assert (output_dir / "model.safetensors").is_file()
    assert not [path for path in tmp_path.iterdir() if ".tmp-" in path.name]
    if importlib.util.find_spec("tevit_hf.image_processing_tevit") is not None:
        assert (output_dir / "preprocessor_config.json").is_file()

    model = AutoModel.from_pretrained(output_dir)
    assert type(model).__name__ == "TeViTForVideoInstanceSegmentation"
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "owl"}
    assert model.config.shift_messengers_at_inference is False
    assert model.config.head_num_attention_heads == 4
    assert model.config.backbone_num_attention_heads == [1, 2, 3, 4]  # widths [8, 16, 24, 32] / head dim 8
    back = convert_hf_state_dict_to_original(model.state_dict())
    assert set(back) == set(tiny_original)
    assert all(torch.equal(back[key], value) for key, value in tiny_original.items())

    # a second run refuses to overwrite a non-empty folder and leaves no staging folder behind
    with pytest.raises(FileExistsError):
        convert_hf.convert_checkpoint(args[args.index("--checkpoint") + 1], args[args.index("--output-dir") + 1])
    assert main(args + ["--head-num-attention-heads", "4"]) == 1
    assert not [path for path in tmp_path.iterdir() if ".tmp-" in path.name]
