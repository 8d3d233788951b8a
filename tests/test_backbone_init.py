"""ImageNet initialisation of the backbone: parity with Transformers' PvtV2Backbone (an outside reference), the
whai362/PVT key layout (spec section 1.8), torchvision's ResNet layout, and `scripts/train.py --backbone_init_from`."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_config, tiny_train_arguments
from test_backbones import TINY_RESNET, tiny_r50_config
from transformers import PvtV2Backbone, PvtV2Config, PvtV2ForImageClassification

from tevit_hf import TeViTForVideoInstanceSegmentation
from tevit_hf.convert_tevit_original_to_hf import hf_resnet_key_to_torchvision
from tevit_hf.data.synthetic import generate_synthetic_vis_dataset
from tevit_hf.training import parse_arguments, train
from tevit_hf.training.backbone_init import load_backbone_weights


FOUR_LEVELS = ["stage1", "stage2", "stage3", "stage4"]


def pvt_config(**overrides):
    """A tiny MsgShifT config whose layout a Transformers PvtV2Config can copy (no drop path: outputs compared)."""
    return tiny_config(**{"backbone_depths": [1, 2, 1, 1], "drop_path_rate": 0.0, **overrides})


def reference_pvt_v2(config, layer_norm_eps: float) -> PvtV2Backbone:
    torch.manual_seed(1)
    reference = PvtV2Backbone(
        PvtV2Config(
            hidden_sizes=config.backbone_hidden_sizes,
            depths=config.backbone_depths,
            num_attention_heads=config.backbone_num_attention_heads,
            mlp_ratios=config.backbone_mlp_ratios,
            sr_ratios=config.backbone_sr_ratios,
            layer_norm_eps=layer_norm_eps,
            out_features=FOUR_LEVELS,
        )
    )
    return reference.eval()


def whai362_state_dict(reference: PvtV2Backbone, config) -> dict[str, torch.Tensor]:
    """The reference's weights under whai362/PVT `pvt_v2.py`'s exact key list (a classifier with its `head`)."""
    weights = reference.state_dict()
    state = {}
    for stage, depth in enumerate(config.backbone_depths):
        ours, theirs = f"encoder.layers.{stage}", stage + 1
        for param in ("weight", "bias"):
            state[f"patch_embed{theirs}.proj.{param}"] = weights[f"{ours}.patch_embedding.proj.{param}"]
            state[f"patch_embed{theirs}.norm.{param}"] = weights[f"{ours}.patch_embedding.layer_norm.{param}"]
            for block in range(depth):
                source, target = f"{ours}.blocks.{block}", f"block{theirs}.{block}"
                state[f"{target}.norm1.{param}"] = weights[f"{source}.layer_norm_1.{param}"]
                state[f"{target}.attn.q.{param}"] = weights[f"{source}.attention.query.{param}"]
                state[f"{target}.attn.kv.{param}"] = torch.cat(
                    [weights[f"{source}.attention.key.{param}"], weights[f"{source}.attention.value.{param}"]]
                )
                state[f"{target}.attn.proj.{param}"] = weights[f"{source}.attention.proj.{param}"]
                if config.backbone_sr_ratios[stage] > 1:
                    state[f"{target}.attn.sr.{param}"] = weights[f"{source}.attention.spatial_reduction.{param}"]
                    state[f"{target}.attn.norm.{param}"] = weights[f"{source}.attention.layer_norm.{param}"]
                state[f"{target}.norm2.{param}"] = weights[f"{source}.layer_norm_2.{param}"]
                state[f"{target}.mlp.fc1.{param}"] = weights[f"{source}.mlp.dense1.{param}"]
                state[f"{target}.mlp.dwconv.dwconv.{param}"] = weights[f"{source}.mlp.dwconv.dwconv.{param}"]
                state[f"{target}.mlp.fc2.{param}"] = weights[f"{source}.mlp.dense2.{param}"]
            state[f"norm{theirs}.{param}"] = weights[f"{ours}.layer_norm.{param}"]
    state["head.weight"] = torch.randn(1000, config.backbone_hidden_sizes[-1])
    state["head.bias"] = torch.zeros(1000)
    return state


@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_msgshift_without_messengers_reproduces_transformers_pvt_v2_backbone(tmp_path, eps):
    config = pvt_config(num_messenger_tokens=0, backbone_layer_norm_eps=eps)
    reference = reference_pvt_v2(config, layer_norm_eps=eps)
    reference.save_pretrained(tmp_path / "pvt_v2")
    model = TeViTForVideoInstanceSegmentation(config).eval()
    report = load_backbone_weights(model, tmp_path / "pvt_v2")
    assert report.layout == "Transformers PvtV2" and report.fresh == ["messenger_tokens"] and not report.dropped
    assert len(report.loaded) == len(reference.state_dict())
    pixels = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = reference(pixels).feature_maps
        got = model.model.backbone(pixels, num_frames=1)
    for level, (reference_map, our_map) in enumerate(zip(expected, got)):
        assert our_map.shape == reference_map.shape, level
        assert torch.allclose(our_map, reference_map, atol=1e-5), (level, (our_map - reference_map).abs().max())


def test_classifier_layout_and_whai362_layout_load_every_key_to_the_same_backbone(tmp_path):
    config = pvt_config(num_messenger_tokens=0)
    reference = reference_pvt_v2(config, layer_norm_eps=1e-6)
    from_backbone = TeViTForVideoInstanceSegmentation(config)
    load_backbone_weights(from_backbone, reference.state_dict())
    expected = from_backbone.model.backbone.state_dict()

    # whai362/PVT's `pvt_v2_b*.pth`: every key but the classifier head loads (fused kv split into k and v).
    torch.save(whai362_state_dict(reference, config), tmp_path / "pvt_v2_tiny.pth")
    from_whai362 = TeViTForVideoInstanceSegmentation(config)
    report = load_backbone_weights(from_whai362, tmp_path / "pvt_v2_tiny.pth")
    assert report.layout == "whai362/PVT" and sorted(report.dropped) == ["head.bias", "head.weight"]
    assert all(torch.equal(expected[key], value) for key, value in from_whai362.model.backbone.state_dict().items())

    # Transformers' classifier layout (`pvt_v2.` prefix and a `classifier`), as the ImageNet repositories ship it.
    classifier = PvtV2ForImageClassification(reference.config)
    classifier.pvt_v2.load_state_dict(reference.state_dict())
    from_classifier = TeViTForVideoInstanceSegmentation(config)
    report = load_backbone_weights(from_classifier, classifier.state_dict())
    assert sorted(report.dropped) == ["classifier.bias", "classifier.weight"]
    assert all(torch.equal(expected[key], value) for key, value in from_classifier.model.backbone.state_dict().items())


def test_with_messenger_tokens_everything_but_the_messenger_tokens_loads():
    config = pvt_config()  # 8 messenger tokens
    reference = reference_pvt_v2(config, layer_norm_eps=1e-6)
    model = TeViTForVideoInstanceSegmentation(config)
    tokens = model.model.backbone.messenger_tokens.detach().clone()
    report = load_backbone_weights(model, whai362_state_dict(reference, config))
    assert report.fresh == ["messenger_tokens"]
    assert len(report.loaded) == len(model.model.backbone.state_dict()) - 1
    assert torch.equal(model.model.backbone.messenger_tokens, tokens)  # kept its own initialisation


def test_unknown_key_wrong_shape_and_missing_tensor_are_errors_naming_them():
    config = pvt_config(num_messenger_tokens=0)
    state = whai362_state_dict(reference_pvt_v2(config, 1e-6), config)
    model = TeViTForVideoInstanceSegmentation(config)
    with pytest.raises(ValueError, match=r"match no PVTv2 backbone key: block1\.0\.attn\.extra\.weight"):
        load_backbone_weights(model, {**state, "block1.0.attn.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"stages\.0\.layers\.0\.layer_norm_1\.weight: checkpoint \[3\]"):
        load_backbone_weights(model, {**state, "block1.0.norm1.weight": torch.zeros(3)})
    incomplete = {key: value for key, value in state.items() if key != "norm4.weight"}
    with pytest.raises(ValueError, match=r"lacks: stages\.3\.layer_norm\.weight"):
        load_backbone_weights(model, incomplete)


def torchvision_resnet_keys(depths: list[int]) -> list[str]:
    """torchvision `resnet*` (bottleneck) state-dict keys, which mmdet's ResNet shares under `backbone.`."""
    batch_norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{name}" for name in batch_norm)]
    for stage, depth in enumerate(depths, start=1):
        for block in range(depth):
            for index in (1, 2, 3):
                keys += [f"layer{stage}.{block}.conv{index}.weight"]
                keys += [f"layer{stage}.{block}.bn{index}.{name}" for name in batch_norm]
            if block == 0:
                keys += [f"layer{stage}.{block}.downsample.0.weight"]
                keys += [f"layer{stage}.{block}.downsample.1.{name}" for name in batch_norm]
    return keys + ["fc.weight", "fc.bias"]


def test_torchvision_resnet_layout_initialises_the_r50_backbone():
    source = TeViTForVideoInstanceSegmentation(tiny_r50_config()).model.backbone.state_dict()
    torchvision_state = {hf_resnet_key_to_torchvision(key): value.clone() + 1 for key, value in source.items()}
    torchvision_state["fc.weight"], torchvision_state["fc.bias"] = torch.zeros(10, 40), torch.zeros(10)
    assert sorted(torchvision_state) == sorted(torchvision_resnet_keys(TINY_RESNET["depths"]))
    model = TeViTForVideoInstanceSegmentation(tiny_r50_config())
    report = load_backbone_weights(model, torchvision_state)
    assert report.layout == "torchvision ResNet" and sorted(report.dropped) == ["fc.bias", "fc.weight"]
    assert report.fresh == [] and len(report.loaded) == len(source)
    loaded = model.model.backbone.state_dict()
    assert all(torch.equal(loaded[key], source[key] + 1) for key in source)


def test_transformers_classifier_checkpoint_initialises_a_swin_backbone():
    from test_backbones import tiny_swin_config
    from transformers import SwinConfig, SwinForImageClassification

    model = TeViTForVideoInstanceSegmentation(tiny_swin_config())
    swin_kwargs = {key: value for key, value in model.config.backbone_config.to_dict().items()}
    classifier = SwinForImageClassification(SwinConfig(**{**swin_kwargs, "num_labels": 5}))
    report = load_backbone_weights(model, classifier.state_dict())
    assert sorted(report.dropped) == ["classifier.bias", "classifier.weight"]
    # The stage output norms exist only in detection backbones (mmdet's norm0..3): fresh, as officially.
    assert sorted(report.fresh) == sorted(
        f"hidden_states_norms.stage{i}.{p}" for i in range(1, 5) for p in ("bias", "weight")
    )
    expected = classifier.swin.state_dict()
    loaded = model.model.backbone.state_dict()
    assert all(torch.equal(loaded[f"swin.{key}"], value) for key, value in expected.items())


def test_train_script_initialises_the_backbone_before_init_from(tmp_path, capsys):
    dataset = tmp_path / "data"
    generate_synthetic_vis_dataset(dataset, num_videos=2, num_frames=4, height=64, width=96, num_classes=3, mp4="none")
    config = tiny_config()
    reference = reference_pvt_v2(config, layer_norm_eps=1e-6)
    torch.save(whai362_state_dict(reference, config), tmp_path / "pvt_v2_tiny.pth")
    arguments = tiny_train_arguments(dataset, tmp_path / "run", "--max_train_steps", "1", "--skip_final_evaluation")
    train(parse_arguments([*arguments, "--backbone_init_from", str(tmp_path / "pvt_v2_tiny.pth")]))
    output = capsys.readouterr().out
    assert "Backbone initialised from" in output and "(whai362/PVT layout)" in output
    assert "fresh: messenger_tokens" in output
    with pytest.raises(ValueError, match="match no PVTv2 backbone key"):
        broken = copy.deepcopy(whai362_state_dict(reference, config))
        broken["unknown.weight"] = torch.zeros(1)
        torch.save(broken, tmp_path / "broken.pth")
        train(
            parse_arguments(
                [*arguments, "--overwrite_output_dir", "--backbone_init_from", str(tmp_path / "broken.pth")]
            )
        )
