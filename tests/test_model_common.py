"""Common model tests in the spirit of Transformers' `ModelTesterMixin` / `ConfigTester` (which the installed
package does not ship), on the tiny config and 2-frame 64x64 clips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config
from torch import nn
from transformers.utils import TransformersKwargs, import_utils

from tevit_hf import TeViTConfig, TeViTForVideoInstanceSegmentation, TeViTImageProcessor, TeViTModel
from tevit_hf.configuration_tevit import TINY_CONFIG_KWARGS
from tevit_hf.loss_tevit import TeViTSequenceHungarianMatcher
from tevit_hf.modeling_tevit import TeViTOverlapPatchEmbeddings, TeViTPreTrainedModel


BATCH, FRAMES, SIZE = 2, 2, 64
MODEL_CLASSES = (TeViTModel, TeViTForVideoInstanceSegmentation)


def pixel_values(batch_size: int = BATCH) -> torch.Tensor:
    return torch.randn(batch_size, FRAMES, 3, SIZE, SIZE)


def expected_attention_shapes(config: TeViTConfig, batch_size: int) -> list[tuple[int, int, int, int]]:
    """Per backbone layer: `(B*T, heads, H*W [+ M], reduced H*W [+ M])`; messenger tokens are queries in every stage
    that uses them and keys/values only where the keys are spatially reduced (`sr_ratio > 1`)."""
    shapes, side = [], SIZE
    num_stages = config.num_backbone_stages
    for stage in range(num_stages):
        side //= config.backbone_strides[stage]
        sr_ratio = config.backbone_sr_ratios[stage]
        # The last stage with sr_ratio 1 drops the messenger tokens (they could never reach the outputs).
        uses_messengers = not (stage == num_stages - 1 and sr_ratio == 1)
        messengers = config.num_messenger_tokens if uses_messengers else 0
        queries = side * side + messengers
        keys = (side // sr_ratio) ** 2 + messengers if sr_ratio > 1 else side * side
        heads = config.backbone_num_attention_heads[stage]
        shapes += [(batch_size * FRAMES, heads, queries, keys)] * config.backbone_depths[stage]
    return shapes


def expected_hidden_state_shapes(config: TeViTConfig, batch_size: int) -> list[tuple[int, int, int, int]]:
    shapes, side = [], SIZE
    for stage, width in enumerate(config.backbone_hidden_sizes):
        side //= config.backbone_strides[stage]
        shapes.append((batch_size * FRAMES, width, side, side))
    return shapes


# ----------------------------------------------------------------------------------------------------------------------
# Outputs recorded by the output-capturing machinery
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_hidden_states_output(config, model_class):
    model = model_class(config).eval()
    with torch.no_grad():
        outputs = model(pixel_values(), output_hidden_states=True)
        plain = model(pixel_values())
    assert len(outputs.hidden_states) == config.num_backbone_stages
    assert [tuple(h.shape) for h in outputs.hidden_states] == expected_hidden_state_shapes(config, BATCH)
    # The recorded maps are the backbone outputs the FPN reads (kept under their own name as well).
    assert all(h is b for h, b in zip(outputs.hidden_states, outputs.backbone_hidden_states))
    assert len(outputs.fpn_hidden_states) == config.num_backbone_stages
    assert plain.hidden_states is None and plain.backbone_hidden_states is None and plain.attentions is None


def test_hidden_states_from_the_config_and_by_index(config):
    model = TeViTModel(tiny_config(output_hidden_states=True)).eval()
    with torch.no_grad():
        from_config = model(pixel_values(1))
        last_only = TeViTModel(config).eval()(pixel_values(1), output_hidden_states=-1)
    assert len(from_config.hidden_states) == config.num_backbone_stages
    # Negative indices count backbone stages (`num_backbone_stages`), not head stages.
    assert [h is None for h in last_only.hidden_states] == [True] * (config.num_backbone_stages - 1) + [False]


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_attention_outputs(model_class, attn_implementation):
    config = tiny_config(_attn_implementation=attn_implementation)
    model = model_class(config).eval()
    inputs = pixel_values()
    with torch.no_grad():
        outputs = model(inputs, output_attentions=True)
        plain = model(inputs)
    # Real weights even when the configured implementation (sdpa) does not compute them.
    assert [tuple(a.shape) for a in outputs.attentions] == expected_attention_shapes(config, BATCH)
    assert len(outputs.attentions) == sum(config.backbone_depths)
    for attention in outputs.attentions:
        assert torch.allclose(attention.sum(-1), torch.ones(()), atol=1e-5)
    assert outputs.hidden_states is None
    # Asking for the weights does not change the predictions.
    assert torch.allclose(outputs.class_logits, plain.class_logits, atol=1e-5)


def test_return_dict_false_keeps_the_recorded_outputs(config):
    model = TeViTModel(config).eval()
    with torch.no_grad():
        as_tuple = model(pixel_values(1), output_hidden_states=True, output_attentions=True, return_dict=False)
        as_output = model(pixel_values(1), output_hidden_states=True, output_attentions=True)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(as_output.to_tuple())
    assert len(as_tuple[-1]) == sum(config.backbone_depths)  # attentions come last
    assert len(as_tuple[-2]) == config.num_backbone_stages


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_retain_grad_hidden_states_attentions(config, model_class):
    model = model_class(config)
    outputs = model(pixel_values(1), output_hidden_states=True, output_attentions=True)
    hidden_states, attentions = outputs.hidden_states[0], outputs.attentions[0]
    hidden_states.retain_grad()
    attentions.retain_grad()
    outputs.class_logits.sum().backward()
    assert hidden_states.grad is not None and hidden_states.grad.abs().sum() > 0
    assert attentions.grad is not None and attentions.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------------
# Forward signature
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_unknown_keyword_arguments_raise(config, model_class):
    model = model_class(config).eval()
    with pytest.raises(TypeError, match="typo_argument"):
        model(pixel_values(1), typo_argument=1)
    # The `TransformersKwargs` the Trainer and callers pass are accepted.
    assert "num_items_in_batch" in TransformersKwargs.__optional_keys__
    with torch.no_grad():
        model(pixel_values(1), num_items_in_batch=torch.tensor(3), output_hidden_states=False)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_image_processor_outputs_are_accepted(config, model_class):
    # `model(**processor(...))`: the sizes the processor returns for post-processing are known, not typos.
    processor = TeViTImageProcessor(size={"longest_edge": SIZE, "shortest_edge": SIZE - 16})
    video = np.random.default_rng(0).integers(0, 255, size=(FRAMES, 40, 64, 3), dtype=np.uint8)
    inputs = processor(video, return_tensors="pt")
    assert {"image_sizes", "original_sizes"} <= set(inputs)
    with torch.no_grad():
        outputs = model_class(config).eval()(**inputs)
    assert outputs.image_sizes.tolist() == inputs["image_sizes"].tolist()


def test_forward_signatures_take_only_transformers_kwargs():
    import inspect

    for model_class in MODEL_CLASSES:
        parameters = inspect.signature(model_class.forward).parameters
        assert not {"output_hidden_states", "output_attentions", "return_dict"} & set(parameters)
        assert {"pixel_values", "pixel_mask", "image_sizes", "original_sizes"} <= set(parameters)
        assert parameters["kwargs"].kind is inspect.Parameter.VAR_KEYWORD


# ----------------------------------------------------------------------------------------------------------------------
# Save / load, batching, embeddings
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_save_load_round_trip(config, model_class, tmp_path):
    model = model_class(config).eval()
    inputs = pixel_values(1)
    with torch.no_grad():
        expected = model(inputs, output_hidden_states=True)
    model.save_pretrained(tmp_path)
    loaded, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded.eval()
    with torch.no_grad():
        actual = loaded(inputs, output_hidden_states=True)
    for name in ("class_logits", "pred_boxes", "last_hidden_state"):
        assert torch.equal(getattr(actual, name), getattr(expected, name)), name
    for a, b in zip(actual.hidden_states, expected.hidden_states):
        assert torch.equal(a, b)


def test_batching_equivalence(config):
    model = TeViTForVideoInstanceSegmentation(config).eval()
    batch = pixel_values(2)
    with torch.no_grad():
        batched = model(batch, output_hidden_states=True)
        singles = [model(batch[i : i + 1], output_hidden_states=True) for i in range(2)]
    for name in ("class_logits", "pred_boxes", "last_hidden_state", "selected_scores", "selected_boxes"):
        together = getattr(batched, name)
        alone = torch.cat([getattr(single, name) for single in singles])
        assert torch.allclose(together, alone, atol=1e-4), name
    for level, together in enumerate(batched.hidden_states):
        alone = torch.cat([single.hidden_states[level] for single in singles])
        assert torch.allclose(together, alone, atol=1e-4)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_get_input_embeddings(config, model_class):
    model = model_class(config)
    embeddings = model.get_input_embeddings()
    base = model if isinstance(model, TeViTModel) else model.model
    assert isinstance(embeddings, TeViTOverlapPatchEmbeddings)
    assert embeddings is base.backbone.stages[0].patch_embeddings
    assert embeddings.projection.in_channels == config.num_channels


# ----------------------------------------------------------------------------------------------------------------------
# Config (ConfigTester-style)
# ----------------------------------------------------------------------------------------------------------------------


def test_config_common_properties():
    config = tiny_config()
    for name in ("hidden_size", "num_attention_heads", "num_hidden_layers"):
        assert hasattr(config, name), name
    assert config.num_hidden_layers == config.num_head_stages
    assert config.num_attention_heads == config.head_num_attention_heads
    # Settable, and accepted by the constructor, as aliases of their fields.
    config.num_attention_heads = 2
    config.num_hidden_layers = 3
    assert (config.head_num_attention_heads, config.num_head_stages) == (2, 3)
    built = tiny_config(num_hidden_layers=3, num_attention_heads=2)
    assert (built.num_head_stages, built.head_num_attention_heads) == (3, 2)
    assert built.stage_loss_weights == [1.0, 1.0, 1.0]
    assert "num_hidden_layers" not in built.to_dict() and "num_attention_heads" not in built.to_dict()
    assert TeViTForVideoInstanceSegmentation(built).model.decoder_stages.__len__() == 3


def test_config_serialisation_round_trips(tmp_path):
    inputs = {**TINY_CONFIG_KWARGS, "num_messenger_tokens": 4, "mask_threshold": 0.4}
    config = TeViTConfig(**inputs, num_labels=5)
    # to_json_string (a diff against the defaults) holds every value given; the full dict round trips
    as_json = json.loads(config.to_json_string())
    for key, value in inputs.items():
        assert as_json[key] == value, key
    assert len(as_json["id2label"]) == 5
    assert TeViTConfig.from_dict(json.loads(config.to_json_string(use_diff=False))).to_dict() == config.to_dict()
    # to_json_file / from_json_file
    config.to_json_file(tmp_path / "config.json")
    assert TeViTConfig.from_json_file(tmp_path / "config.json").to_dict() == config.to_dict()
    # save_pretrained / from_pretrained
    config.save_pretrained(tmp_path / "saved")
    assert TeViTConfig.from_pretrained(tmp_path / "saved").to_dict() == config.to_dict()
    # to_dict / from_dict
    assert TeViTConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    # Defaults build without arguments.
    assert TeViTConfig().to_dict() == TeViTConfig.from_dict(TeViTConfig().to_dict()).to_dict()


def test_config_num_labels():
    config = tiny_config(num_labels=5)
    assert len(config.id2label) == 5 and len(config.label2id) == 5
    config.num_labels = 3
    assert len(config.id2label) == 3 and len(config.label2id) == 3


# ----------------------------------------------------------------------------------------------------------------------
# Initialisation and mismatched heads
# ----------------------------------------------------------------------------------------------------------------------


def test_init_goes_through_init_weights_only(config):
    assert "_initialize_weights" not in TeViTPreTrainedModel.__dict__
    model = TeViTForVideoInstanceSegmentation(config)
    prior = -math.log((1 - config.class_prior_prob) / config.class_prior_prob)
    for stage in model.model.decoder_stages:
        assert torch.allclose(stage.class_predictor.bias, torch.full_like(stage.class_predictor.bias, prior))
        attention = stage.self_attention
        bound = math.sqrt(6.0 / (4 * config.hidden_size))
        assert attention.q_proj.weight.abs().max() <= bound and torch.count_nonzero(attention.q_proj.bias) == 0
        assert torch.count_nonzero(attention.out_proj.bias) == 0
    for head in model.mask_heads:
        assert torch.count_nonzero(head.mask_predictor.bias) == 0
        assert torch.equal(head.convs[0].batch_norm.running_var, torch.ones_like(head.convs[0].batch_norm.running_var))
    for conv in model.model.neck.modules():
        if isinstance(conv, nn.Conv2d):
            assert torch.count_nonzero(conv.bias) == 0
    backbone = model.model.backbone
    assert torch.count_nonzero(backbone.stages[0].layers[0].mlp.dense1.bias) == 0
    assert 0 < backbone.messenger_tokens.std() < 3 * config.initializer_range
    boxes = model.model.proposal_boxes.weight
    assert torch.equal(boxes, torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand_as(boxes))


def test_ignore_mismatched_sizes_reinitialises_the_class_heads(config, tmp_path):
    model = TeViTForVideoInstanceSegmentation(config)
    model.save_pretrained(tmp_path)
    new_labels = config.num_labels + 2
    loaded, info = TeViTForVideoInstanceSegmentation.from_pretrained(
        tmp_path, num_labels=new_labels, ignore_mismatched_sizes=True, output_loading_info=True
    )
    mismatched = {entry[0] for entry in info["mismatched_keys"]}
    expected = {
        f"model.decoder_stages.{s}.class_predictor.{p}"
        for s in range(config.num_head_stages)
        for p in ("weight", "bias")
    } | {f"mask_heads.{s}.mask_predictor.{p}" for s in range(config.num_head_stages) for p in ("weight", "bias")}
    assert mismatched == expected
    assert not info["missing_keys"] and not info["unexpected_keys"]
    stage = loaded.model.decoder_stages[0]
    assert stage.class_predictor.weight.shape == (new_labels, config.hidden_size)
    # The re-created heads get the model's own init (class prior), everything else is the saved weights.
    prior = -math.log((1 - config.class_prior_prob) / config.class_prior_prob)
    assert torch.allclose(stage.class_predictor.bias, torch.full((new_labels,), prior))
    assert torch.count_nonzero(loaded.mask_heads[0].mask_predictor.bias) == 0
    assert torch.equal(stage.box_delta_predictor.weight, model.model.decoder_stages[0].box_delta_predictor.weight)
    with torch.no_grad():
        outputs = loaded.eval()(pixel_values(1))
    assert outputs.class_logits.shape[-1] == new_labels


# ----------------------------------------------------------------------------------------------------------------------
# Optional backend
# ----------------------------------------------------------------------------------------------------------------------


def test_matching_without_scipy_raises_a_clear_error(config, monkeypatch):
    _, message = import_utils.BACKENDS_MAPPING["scipy"]
    monkeypatch.setitem(import_utils.BACKENDS_MAPPING, "scipy", (lambda: False, message))
    matcher = TeViTSequenceHungarianMatcher(config)  # building the model/criterion does not need scipy
    class_logits = torch.randn(FRAMES, config.num_queries, config.num_labels)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(FRAMES, config.num_queries, 4)
    with pytest.raises(ImportError, match="scipy"):
        matcher(
            class_logits,
            boxes,
            torch.tensor([SIZE, SIZE]),
            torch.tensor([1]),
            torch.tensor([[[0.0, 0.0, 5.0, 5.0]]]).expand(FRAMES, 1, 4),
            torch.ones(FRAMES, 1, dtype=torch.bool),
        )
