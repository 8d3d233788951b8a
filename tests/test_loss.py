"""Pins the sequence-level matching and the loss terms (spec section 3)."""

import pytest
import torch
from conftest import tiny_config

from tevit_hf.loss_tevit import TeViTSequenceHungarianMatcher, dice_loss, sigmoid_focal_loss


def test_matching_averages_costs_over_visible_frames_only():
    config = tiny_config(class_cost_weight=0.0, giou_cost_weight=0.0, bbox_cost_weight=1.0)
    matcher = TeViTSequenceHungarianMatcher(config)
    size = torch.tensor([100, 100])
    target = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    # Query 0 fits the target perfectly in frame 0 and is far off in frame 1; query 1 is mediocre in both.
    pred = torch.tensor(
        [
            [[10.0, 10.0, 30.0, 30.0], [15.0, 15.0, 35.0, 35.0]],
            [[80.0, 80.0, 99.0, 99.0], [15.0, 15.0, 35.0, 35.0]],
        ]
    )
    logits = torch.zeros(2, 2, 3)
    labels = torch.tensor([1])
    both_visible = torch.tensor([[True], [True]])
    query, instance = matcher(logits, pred, size, labels, target.expand(2, 1, 4), both_visible)
    assert query.tolist() == [1] and instance.tolist() == [0]
    # When the instance is absent in frame 1, that frame must not count: query 0 wins.
    only_first = torch.tensor([[True], [False]])
    query, instance = matcher(logits, pred, size, labels, target.expand(2, 1, 4), only_first)
    assert query.tolist() == [0]


def test_matching_is_one_query_per_instance_and_skips_never_visible_instances():
    matcher = TeViTSequenceHungarianMatcher(tiny_config())
    logits = torch.randn(3, 10, 3)
    pred = torch.tensor([10.0, 10.0, 40.0, 40.0]).expand(3, 10, 4) + torch.rand(3, 10, 4)
    targets = torch.tensor([[10.0, 10.0, 40.0, 40.0], [50, 50, 60, 60], [0, 0, 5, 5]]).expand(3, 3, 4)
    valid = torch.tensor([[True, True, False], [True, False, False], [True, True, False]])
    query, instance = matcher(logits, pred, torch.tensor([64, 96]), torch.tensor([0, 1, 2]), targets, valid)
    assert sorted(instance.tolist()) == [0, 1]
    assert len(set(query.tolist())) == 2


def test_focal_cost_matches_official_formula():
    config = tiny_config(bbox_cost_weight=0.0, giou_cost_weight=0.0)
    matcher = TeViTSequenceHungarianMatcher(config)
    logits = torch.tensor([[[2.0, -1.0, 0.0], [-3.0, 0.5, 1.0]]])
    box = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    query, _ = matcher(
        logits, box.expand(1, 2, 4), torch.tensor([10, 10]), torch.tensor([0]), box, torch.ones(1, 1, dtype=torch.bool)
    )
    assert query.tolist() == [0]  # the high logit of class 0 is the cheaper query


def test_sigmoid_focal_loss_value():
    logits, targets = torch.tensor([0.3, -1.2]), torch.tensor([1.0, 0.0])
    p = logits.sigmoid()
    expected = torch.stack([-0.25 * (1 - p[0]) ** 2 * torch.log(p[0]), -0.75 * p[1] ** 2 * torch.log(1 - p[1])])
    assert torch.allclose(sigmoid_focal_loss(logits, targets, 0.25, 2.0), expected, atol=1e-6)


def test_dice_loss_is_the_squared_vnet_form():
    probs = torch.full((1, 2, 2), 0.5)
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    # 1 - 2 * 0.5 / ((4 * 0.25 + eps) + (1 + eps))
    assert dice_loss(probs, targets, 1e-5).item() == pytest.approx(1 - 1.0 / (2 + 2e-5), abs=1e-7)
    assert dice_loss(targets.clone(), targets, 1e-5).item() == pytest.approx(0.0, abs=1e-4)


def test_matched_query_is_background_in_frames_where_its_instance_is_absent(monkeypatch):
    from conftest import make_clip_labels

    import tevit_hf.loss_tevit as loss_module
    from tevit_hf import TeViTForVideoInstanceSegmentation

    captured = []
    original = loss_module.sigmoid_focal_loss

    def spy(logits, targets, alpha, gamma):
        captured.append(targets.detach().clone())
        return original(logits, targets, alpha, gamma)

    monkeypatch.setattr(loss_module, "sigmoid_focal_loss", spy)
    config = tiny_config(num_head_stages=1)
    model = TeViTForVideoInstanceSegmentation(config).train()
    # Instance 1 (class 2) is absent in frame 1 only.
    labels = [make_clip_labels(3, 64, 96, absent=[(1, 1)])]
    model(pixel_values=torch.randn(1, 3, 3, 64, 96), labels=labels)
    targets = captured[0][0]  # (T, Q, C) one-hot targets of the clip
    positives_per_frame = targets.sum(dim=(1, 2)).tolist()
    assert positives_per_frame == [2.0, 1.0, 2.0]
    # The same query carries class 2 in frames 0 and 2 and is background in frame 1.
    query = torch.nonzero(targets[0, :, 2]).item()
    assert targets[2, query, 2] == 1 and targets[1, query].sum() == 0


def _labelled_clip(num_frames=2, height=64, width=96):
    from conftest import make_clip_labels

    from tevit_hf import TeViTForVideoInstanceSegmentation

    model = TeViTForVideoInstanceSegmentation(tiny_config()).train()
    pixel_values = torch.randn(1, num_frames, 3, height, width)
    return model, pixel_values, make_clip_labels(num_frames, height, width)


@pytest.mark.parametrize(
    ("corrupt", "pattern"),
    [
        (lambda labels: labels["boxes"].__setitem__((0, 0, 0), float("nan")), r"labels\[0\]: `boxes` .* NaN"),
        (lambda labels: labels["boxes"].__setitem__((1, 1, 2), 1.7), r"labels\[0\]: `boxes` must be normalised"),
        (lambda labels: labels.__setitem__("masks", labels["masks"][:1]), r"`masks` must be \(T, K, H, W\) = \(2, 2"),
        (lambda labels: labels.__setitem__("masks", labels["masks"][..., :32]), r"`masks` are 64x32 .* \(64x96\)"),
    ],
)
def test_bad_training_labels_are_named_not_turned_into_nan(corrupt, pattern):
    model, pixel_values, labels = _labelled_clip()
    corrupt(labels)
    with pytest.raises(ValueError, match=pattern):
        model(pixel_values, labels=[labels])


def test_good_labels_give_a_finite_loss():
    model, pixel_values, labels = _labelled_clip()
    assert torch.isfinite(model(pixel_values, labels=[labels]).loss)


def test_nan_pixels_are_named_by_the_processor():
    from tevit_hf import TeViTImageProcessor

    frames = torch.rand(3, 3, 32, 48)
    frames[2, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="Video 0: frame 2 has NaN or infinite pixel values"):
        TeViTImageProcessor(do_rescale=False)(frames, return_tensors="pt")
