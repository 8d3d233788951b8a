"""End-to-end tests of TeViTForVideoInstanceSegmentation on a tiny config."""

import pytest
import torch
from conftest import make_clip_labels, tiny_config
from transformers import AutoModel, AutoModelForUniversalSegmentation

from tevit_hf import TeViTForVideoInstanceSegmentation, TeViTModel


HEIGHT, WIDTH = 64, 96


def run_eval(model, pixel_values, **kwargs):
    model.eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values, **kwargs)


@pytest.mark.parametrize("num_frames", [1, 3])
def test_eval_forward_shapes(config, num_frames):
    model = TeViTForVideoInstanceSegmentation(config)
    outputs = run_eval(model, torch.randn(2, num_frames, 3, HEIGHT, WIDTH))
    queries, labels, selected = config.num_queries, config.num_labels, config.num_selected_instances
    assert outputs.class_logits.shape == (2, num_frames, queries, labels)
    assert outputs.pred_boxes.shape == (2, num_frames, queries, 4)
    assert outputs.selected_scores.shape == (2, selected)
    assert outputs.selected_boxes.shape == (2, num_frames, selected, 4)
    assert outputs.selected_mask_logits.shape == (2, num_frames, selected, 28, 28)
    assert outputs.last_hidden_state.shape == (2, num_frames, queries, config.hidden_size)
    assert len(outputs.auxiliary_outputs) == config.num_head_stages - 1
    assert outputs.loss is None
    # Scores are the video-level mean probabilities of the selected (query, class) pairs, sorted.
    video_probs = outputs.class_logits.sigmoid().mean(1)
    expected = video_probs[torch.arange(2)[:, None], outputs.selected_query_indices, outputs.selected_labels]
    assert torch.allclose(outputs.selected_scores, expected)
    assert torch.all(outputs.selected_scores[:, :-1] >= outputs.selected_scores[:, 1:])
    assert torch.allclose(outputs.selected_scores[:, 0], video_probs.flatten(1).max(1).values)


def test_selected_boxes_are_the_last_stage_boxes_of_the_selected_queries(config):
    model = TeViTForVideoInstanceSegmentation(config)
    outputs = run_eval(model, torch.randn(1, 2, 3, HEIGHT, WIDTH))
    index = outputs.selected_query_indices[0]
    assert torch.allclose(outputs.selected_boxes[0], outputs.pred_boxes[0][:, index])


def test_pixel_mask_scales_proposals_to_the_unpadded_frame(config):
    model = TeViTModel(config).eval()
    # With zero box deltas the first stage returns its proposals as they are (a bound on randomly refined boxes would
    # depend on the random init).
    box_delta_predictor = model.decoder_stages[0].box_delta_predictor
    torch.nn.init.zeros_(box_delta_predictor.weight)
    torch.nn.init.zeros_(box_delta_predictor.bias)
    pixel_mask = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.long)
    pixel_mask[:, :48, :80] = 1
    with torch.no_grad():
        outputs = model(torch.randn(1, 2, 3, HEIGHT, WIDTH), pixel_mask=pixel_mask)
    assert outputs.image_sizes.tolist() == [[48, 80]]
    # The learned whole-image proposal (0.5, 0.5, 1, 1) covers the *unpadded* 80x48 frame, not the 96x64 input.
    first_boxes = outputs.stage_boxes[0]
    assert torch.allclose(first_boxes, torch.tensor([0.0, 0.0, 80.0, 48.0]).expand_as(first_boxes), atol=1e-4)


def test_training_loss_and_gradients_reach_every_part():
    # A small finest scale spreads these small RoIs over all four FPN levels so that every parameter is used.
    config = tiny_config(roi_finest_scale=8)
    model = TeViTForVideoInstanceSegmentation(config).train()
    # Proposals of several sizes so that the first stage's RoIs cover every FPN level.
    sizes = torch.tensor([0.1, 0.2, 0.4, 0.8, 1.0]).repeat(2)
    with torch.no_grad():
        model.model.proposal_boxes.weight.copy_(
            torch.stack([torch.full_like(sizes, 0.5), torch.full_like(sizes, 0.5), sizes, sizes], 1)
        )
    labels = [make_clip_labels(3, HEIGHT, WIDTH), make_clip_labels(3, HEIGHT, WIDTH, absent=[(1, 1)])]
    outputs = model(pixel_values=torch.randn(2, 3, 3, HEIGHT, WIDTH), labels=labels)
    assert torch.isfinite(outputs.loss)
    expected_keys = {
        f"stage{stage}_loss_{term}"
        for stage in range(config.num_head_stages)
        for term in ("cls", "bbox", "iou", "mask")
    }
    assert set(outputs.loss_dict) == expected_keys
    assert torch.allclose(outputs.loss, sum(outputs.loss_dict.values()))
    outputs.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    zero = [name for name, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert zero == []
    assert model.model.backbone.messenger_tokens.grad.abs().sum() > 0


def test_instance_disappearing_mid_clip_and_frame_without_instances(config):
    model = TeViTForVideoInstanceSegmentation(config).train()
    # Instance 1 leaves after frame 0; frame 2 has no visible instance at all.
    labels = [make_clip_labels(3, HEIGHT, WIDTH, absent=[(1, 1), (2, 1), (2, 0)])]
    outputs = model(pixel_values=torch.randn(1, 3, 3, HEIGHT, WIDTH), labels=labels)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()


def test_clip_without_any_instance_trains(config):
    model = TeViTForVideoInstanceSegmentation(config).train()
    labels = [make_clip_labels(2, HEIGHT, WIDTH, absent=[(0, 0), (0, 1), (1, 0), (1, 1)])]
    outputs = model(pixel_values=torch.randn(1, 2, 3, HEIGHT, WIDTH), labels=labels)
    assert torch.isfinite(outputs.loss)
    assert outputs.loss_dict["stage0_loss_bbox"].item() == 0.0
    outputs.loss.backward()


def test_bad_labels_raise_clear_errors(config):
    model = TeViTForVideoInstanceSegmentation(config).train()
    labels = make_clip_labels(2, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="one dict per clip"):
        model(pixel_values=torch.randn(2, 2, 3, HEIGHT, WIDTH), labels=[labels])
    bad = dict(labels, class_labels=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="class_labels"):
        model(pixel_values=torch.randn(1, 2, 3, HEIGHT, WIDTH), labels=[bad])
    with pytest.raises(ValueError, match="pixel_values"):
        model(pixel_values=torch.randn(2, 3, HEIGHT, WIDTH))


def test_save_and_auto_model_round_trip(config, tmp_path):
    model = TeViTForVideoInstanceSegmentation(config).eval()
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    expected = run_eval(model, pixel_values)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    for auto_class in (AutoModel, AutoModelForUniversalSegmentation):
        loaded = auto_class.from_pretrained(tmp_path)
        assert isinstance(loaded, TeViTForVideoInstanceSegmentation)
        actual = run_eval(loaded, pixel_values)
        assert torch.equal(actual.selected_mask_logits, expected.selected_mask_logits)
        assert torch.equal(actual.class_logits, expected.class_logits)
    # Batch-norm running statistics are buffers and must survive the round trip too.
    assert torch.equal(
        loaded.mask_heads[0].convs[0].batch_norm.running_var, model.mask_heads[0].convs[0].batch_norm.running_var
    )


def test_return_dict_false_and_hidden_states(config):
    model = TeViTForVideoInstanceSegmentation(config).eval()
    pixel_values = torch.randn(1, 2, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        as_tuple = model(pixel_values=pixel_values, return_dict=False)
        as_output = model(pixel_values=pixel_values, output_hidden_states=True)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_output.class_logits)
    assert [tuple(m.shape[-2:]) for m in as_output.backbone_hidden_states] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert [m.shape[1] for m in as_output.backbone_hidden_states] == config.backbone_hidden_sizes
    assert all(m.shape[1] == config.hidden_size for m in as_output.fpn_hidden_states)


def test_sdpa_and_eager_attention_agree(config):
    torch.manual_seed(0)
    eager = TeViTForVideoInstanceSegmentation(tiny_config(_attn_implementation="eager")).eval()
    sdpa = TeViTForVideoInstanceSegmentation(tiny_config(_attn_implementation="sdpa")).eval()
    sdpa.load_state_dict(eager.state_dict())
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        a, b = eager(pixel_values=pixel_values), sdpa(pixel_values=pixel_values)
    assert torch.allclose(a.class_logits, b.class_logits, atol=1e-4)
    assert torch.allclose(a.selected_mask_logits, b.selected_mask_logits, atol=1e-4)


def test_backbone_clip_mode_at_inference(config):
    shifted = TeViTForVideoInstanceSegmentation(config).eval()
    independent = TeViTForVideoInstanceSegmentation(tiny_config(shift_messengers_at_inference=False)).eval()
    independent.load_state_dict(shifted.state_dict())
    pixel_values = torch.randn(1, 4, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        a = shifted(pixel_values=pixel_values, output_hidden_states=True)
        b = independent(pixel_values=pixel_values, output_hidden_states=True)
        single = independent(pixel_values=pixel_values[:, 2:3], output_hidden_states=True)
    # Messenger exchange across frames changes the features; T=1 backbone mode gives each frame its own features.
    assert not torch.allclose(a.backbone_hidden_states[0], b.backbone_hidden_states[0])
    assert torch.allclose(b.backbone_hidden_states[0][2], single.backbone_hidden_states[0][0], atol=1e-5)
