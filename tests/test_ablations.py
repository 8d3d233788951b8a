"""The paper's ablation switches (section 4.4): every variant trains and infers, adds exactly its layers, and equals
the simpler model where the paper's reading says it must."""

import pytest
import torch
from conftest import make_clip_labels, tiny_config

from tevit_hf import TeViTConfig, TeViTForVideoInstanceSegmentation, TeViTModel
from tevit_hf.configuration_tevit import ABLATION_CHOICES


HEIGHT, WIDTH = 64, 96

VARIANTS = [{field: choice} for field, choices in ABLATION_CHOICES.items() for choice in choices[1:]] + [
    {"messenger_manipulation": "none", "frame_aggregation": "conv"}
]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def mixing_layer_parameters(width: int, mlp_ratio: int) -> int:
    """Pre-norm attention (q, k, v, out with bias) + 2 LayerNorms + MLP (width -> ratio*width -> width)."""
    hidden = width * mlp_ratio
    return 4 * (width * width + width) + 2 * 2 * width + (width * hidden + hidden) + (hidden * width + width)


def live_stages(config: TeViTConfig) -> list[int]:
    """Backbone stages whose messenger tokens matter: all but a last stage with sr_ratio 1."""
    last = config.num_backbone_stages - 1
    return [
        stage for stage in range(config.num_backbone_stages) if stage != last or config.backbone_sr_ratios[stage] > 1
    ]


def eval_outputs(model, pixel_values):
    model.eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values)


@pytest.mark.parametrize("switches", VARIANTS, ids=lambda switches: ",".join(f"{k}={v}" for k, v in switches.items()))
def test_variant_trains_and_infers(switches):
    config = tiny_config(**switches)
    model = TeViTForVideoInstanceSegmentation(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    labels = [make_clip_labels(3, HEIGHT, WIDTH), make_clip_labels(3, HEIGHT, WIDTH, absent=[(0, 1)])]
    outputs = model(pixel_values=torch.randn(2, 3, 3, HEIGHT, WIDTH), labels=labels)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    # The new layers are trained: they receive gradients.
    for name, parameter in model.named_parameters():
        if "messenger_mixer" in name or "frame_aggregation" in name:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    optimizer.step()
    outputs = eval_outputs(model, torch.randn(1, 4, 3, HEIGHT, WIDTH))
    assert outputs.selected_mask_logits.shape == (1, 4, config.num_selected_instances, 28, 28)
    assert torch.isfinite(outputs.selected_scores).all()


def test_parameter_deltas():
    reference = tiny_config()
    base = count_parameters(TeViTForVideoInstanceSegmentation(reference))
    base_names = set(TeViTForVideoInstanceSegmentation(reference).state_dict())
    widths, ratios = reference.backbone_hidden_sizes, reference.backbone_mlp_ratios
    # Every block of a live stage shifts (even depths), so each gets one mixing layer in the MHSA + FFN variant,
    # except the last block of the last live stage: its tokens are dropped afterwards.
    messenger_mixers = sum(
        reference.backbone_depths[stage] * mixing_layer_parameters(widths[stage], ratios[stage])
        for stage in live_stages(reference)
    ) - mixing_layer_parameters(widths[live_stages(reference)[-1]], ratios[live_stages(reference)[-1]])
    expected = {
        "messenger_manipulation": {"none": 0, "mhsa_ffn": messenger_mixers},
        "frame_aggregation": {
            "conv": sum(4 * widths[stage] for stage in live_stages(reference)),  # depth-wise k=3 kernel + bias
            "mhsa_ffn": sum(mixing_layer_parameters(widths[stage], ratios[stage]) for stage in live_stages(reference)),
        },
        "query_interaction": {"spatial": 0, "fused": 0, "temporal": 0},
        "inference_messenger_tokens": {"zero": 0, "random": 0},
    }
    for field, deltas in expected.items():
        for choice, delta in deltas.items():
            model = TeViTForVideoInstanceSegmentation(tiny_config(**{field: choice}))
            assert count_parameters(model) - base == delta, (field, choice)
            # The released model's parameters keep their names: a variant only adds its own layers.
            assert base_names <= set(model.state_dict()), (field, choice)


def test_variants_load_the_released_weights_and_leave_only_their_layers_new():
    reference = TeViTForVideoInstanceSegmentation(tiny_config())
    variant = TeViTForVideoInstanceSegmentation(tiny_config(frame_aggregation="mhsa_ffn"))
    result = variant.load_state_dict(reference.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".frame_aggregation." in key for key in result.missing_keys)


def test_shift_off_equals_all_zero_shift_strides():
    without_shift = TeViTModel(tiny_config(messenger_manipulation="none"))
    zero_strides = TeViTModel(tiny_config(messenger_shift_strides=[0, 0, 0, 0]))
    zero_strides.load_state_dict(without_shift.state_dict())
    shifted = TeViTModel(tiny_config())
    shifted.load_state_dict(without_shift.state_dict())
    pixel_values = torch.randn(1, 4, 3, HEIGHT, WIDTH)
    reference = eval_outputs(without_shift, pixel_values)
    torch.testing.assert_close(eval_outputs(zero_strides, pixel_values).class_logits, reference.class_logits)
    torch.testing.assert_close(eval_outputs(zero_strides, pixel_values).pred_boxes, reference.pred_boxes)
    # ... and the switch does something: the shift changes the outputs of a multi-frame clip.
    assert not torch.allclose(eval_outputs(shifted, pixel_values).class_logits, reference.class_logits)


def test_fused_space_time_on_one_frame_equals_spatial_only():
    spatial = TeViTModel(tiny_config(query_interaction="spatial"))
    fused = TeViTModel(tiny_config(query_interaction="fused"))
    fused.load_state_dict(spatial.state_dict())
    pixel_values = torch.randn(2, 1, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(
        eval_outputs(fused, pixel_values).last_hidden_state, eval_outputs(spatial, pixel_values).last_hidden_state
    )
    # On a multi-frame clip every query interaction is a different model.
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    outputs = {}
    for mode in ABLATION_CHOICES["query_interaction"]:
        model = TeViTModel(tiny_config(query_interaction=mode))
        model.load_state_dict(spatial.state_dict())
        outputs[mode] = eval_outputs(model, pixel_values).last_hidden_state
    modes = list(outputs)
    for index, first in enumerate(modes):
        for second in modes[index + 1 :]:
            assert not torch.allclose(outputs[first], outputs[second]), (first, second)


def test_stqi_is_the_spatial_pass_then_the_temporal_pass():
    config = tiny_config()
    stage = TeViTModel(config).decoder_stages[0].eval()
    queries = torch.randn(2 * 3, config.num_queries, config.hidden_size)
    with torch.no_grad():
        stqi = stage._query_interaction(queries, 3)
        config.query_interaction = "spatial"
        spatial = stage._query_interaction(queries, 3)
        config.query_interaction = "temporal"
        both = stage._query_interaction(spatial, 3)
    torch.testing.assert_close(stqi, both)


def test_zero_initialised_temporal_conv_equals_no_aggregation():
    plain = TeViTModel(tiny_config())
    conv = TeViTModel(tiny_config(frame_aggregation="conv"))
    conv.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for stage in conv.backbone.stages:
            if stage.frame_aggregation is not None:
                stage.frame_aggregation.conv.weight.zero_()
                stage.frame_aggregation.conv.bias.zero_()
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(
        eval_outputs(conv, pixel_values).last_hidden_state, eval_outputs(plain, pixel_values).last_hidden_state
    )


def test_temporal_conv_is_a_zero_padded_depthwise_conv_over_time():
    config = tiny_config(frame_aggregation="conv")
    layer = TeViTModel(config).backbone.stages[0].frame_aggregation
    sequences = torch.randn(5, 4, config.backbone_hidden_sizes[0])  # (positions, T, C)
    weight, bias = layer.conv.weight[:, 0], layer.conv.bias  # (C, 3), (C,)
    padded = torch.nn.functional.pad(sequences, (0, 0, 1, 1))
    expected = sequences + bias + sum(padded[:, k : k + 4] * weight[:, k] for k in range(3))
    with torch.no_grad():
        torch.testing.assert_close(layer(sequences), expected)


@pytest.mark.parametrize("mode", ["zero", "random"])
def test_inference_messenger_tokens(mode):
    replaced = TeViTModel(tiny_config(inference_messenger_tokens=mode))
    learned = TeViTModel(tiny_config())
    learned.load_state_dict(replaced.state_dict())
    with torch.no_grad():
        if mode == "zero":
            learned.backbone.messenger_tokens.zero_()
        else:
            generator = torch.Generator().manual_seed(0)
            tokens = torch.empty_like(learned.backbone.messenger_tokens)
            torch.nn.init.trunc_normal_(tokens, std=learned.config.initializer_range, generator=generator)
            learned.backbone.messenger_tokens.copy_(tokens)
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    first = eval_outputs(replaced, pixel_values).last_hidden_state
    torch.testing.assert_close(first, eval_outputs(learned, pixel_values).last_hidden_state)
    torch.testing.assert_close(eval_outputs(replaced, pixel_values).last_hidden_state, first)  # repeatable
    # Training uses the learned tokens (the parameter is untouched and receives gradients).
    replaced.train()
    replaced.backbone(pixel_values.flatten(0, 1), 3)[0].sum().backward()
    assert replaced.backbone.messenger_tokens.grad.abs().sum() > 0


def test_messenger_mixer_mixes_across_frames():
    model = TeViTModel(tiny_config(messenger_manipulation="mhsa_ffn", drop_path_rate=0.0)).eval()
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    changed = pixel_values.clone()
    changed[:, 2] = torch.randn(3, HEIGHT, WIDTH)
    with torch.no_grad():
        before = model.backbone(pixel_values.flatten(0, 1), 3)
        after = model.backbone(changed.flatten(0, 1), 3)
    # Frame 0's features depend on frame 2 only through the mixed messenger tokens.
    assert not torch.allclose(before[1][0], after[1][0])
    plain = TeViTModel(tiny_config(messenger_manipulation="none", drop_path_rate=0.0)).eval()
    with torch.no_grad():
        before = plain.backbone(pixel_values.flatten(0, 1), 3)
        after = plain.backbone(changed.flatten(0, 1), 3)
    torch.testing.assert_close(before[1][0], after[1][0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_interaction": "both"}, r"`query_interaction` must be one of 'stqi', 'spatial', 'fused', 'temporal'"),
        ({"frame_aggregation": "Conv"}, r"`frame_aggregation` must be one of 'none', 'conv', 'mhsa_ffn', got 'Conv'"),
        ({"messenger_manipulation": True}, r"`messenger_manipulation` must be a string"),
        ({"messenger_manipulation": "mhsa_ffn", "num_messenger_tokens": 0}, r"needs messenger tokens"),
        ({"inference_messenger_tokens": "zero", "num_messenger_tokens": 0}, r"needs messenger tokens"),
    ],
)
def test_invalid_switches_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TeViTConfig(**kwargs)


def test_switches_round_trip_through_save_pretrained(tmp_path):
    config = tiny_config(query_interaction="fused", frame_aggregation="conv", inference_messenger_tokens="random")
    model = TeViTForVideoInstanceSegmentation(config)
    model.save_pretrained(tmp_path)
    loaded = TeViTForVideoInstanceSegmentation.from_pretrained(tmp_path)
    assert loaded.config.query_interaction == "fused"
    assert loaded.config.frame_aggregation == "conv"
    assert loaded.config.inference_messenger_tokens == "random"
    pixel_values = torch.randn(1, 2, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(
        eval_outputs(loaded, pixel_values).class_logits, eval_outputs(model, pixel_values).class_logits
    )
