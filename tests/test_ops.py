import math

import pytest
import torch

from tevit_hf.ops_tevit import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    decode_box_deltas,
    elementwise_generalized_box_iou,
    map_rois_to_levels,
    multi_level_roi_align,
    paste_masks_in_image,
    roi_align,
)


def ramp(height=6, width=8):
    # f[y, x] = 8 y + x: bilinear interpolation of it is exact, so expected values are easy to hand-compute.
    return torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width)


def test_roi_align_matches_hand_computed_values():
    features = ramp()
    # Box (1, 1)-(5, 4), aligned: starts at (0.5, 0.5), 4 x 3; 2x2 bins of 2 x 1.5; 2x2 samples per bin.
    # Bin (0, 0) samples x in {1, 2}, y in {0.875, 1.625}: mean = 8 * 1.25 + 1.5 = 11.5.
    out = roi_align(features, torch.tensor([[0, 1.0, 1.0, 5.0, 4.0]]), 2, spatial_scale=1.0, sampling_ratio=2)
    assert torch.allclose(out[0, 0], torch.tensor([[11.5, 13.5], [23.5, 25.5]]))


def test_roi_align_outside_and_border_behaviour():
    features = ramp()
    # Entirely outside the map (beyond -1): zeros, as mmcv.
    far = roi_align(features, torch.tensor([[0, -20.0, -20.0, -12.0, -12.0]]), 2, 1.0, 2)
    assert torch.count_nonzero(far) == 0
    # Samples past the last column are snapped onto it: value of column 7 only.
    right = roi_align(features, torch.tensor([[0, 8.0, 0.5, 9.0, 1.5]]), 1, 1.0, 1)
    assert right.item() == pytest.approx(8 * 0.5 + 7)


def test_roi_align_adaptive_sampling_uses_per_roi_grid():
    features = ramp()
    # Box 3.8 x 4.2 (aligned) with output 2: grid ceil(1.9)=2 by ceil(2.1)=3 samples per bin.
    box = torch.tensor([[0, 2.3, 1.7, 6.1, 5.9]])
    out = roi_align(features, box, 2, 1.0, 0)
    start_x, start_y, bin_w, bin_h = 1.8, 1.2, 1.9, 2.1
    expected = torch.zeros(2, 2)
    for by in range(2):
        for bx in range(2):
            # Samples beyond the last row (y > 5) snap onto it, as in mmcv bilinear_interpolate.
            ys = [min(start_y + by * bin_h + (i + 0.5) * bin_h / 3, 5.0) for i in range(3)]
            xs = [start_x + bx * bin_w + (i + 0.5) * bin_w / 2 for i in range(2)]
            expected[by, bx] = 8 * sum(ys) / 3 + sum(xs) / 2
    assert torch.allclose(out[0, 0], expected, atol=1e-5)


def test_roi_align_trains_the_features_but_not_the_boxes():
    # As mmcv's RoIAlign: gradients reach the feature maps only; boxes learn through the box regression alone.
    features = torch.randn(1, 2, 8, 8, requires_grad=True)
    rois = torch.tensor([[0, 1.3, 0.7, 5.2, 4.9]], requires_grad=True)
    roi_align(features, rois, 3, 1.0, 0, True).sum().backward()
    assert features.grad.abs().sum() > 0 and rois.grad is None
    maps = [torch.randn(1, 2, 8, 8, requires_grad=True), torch.randn(1, 2, 4, 4, requires_grad=True)]
    rois = torch.tensor([[0, 1.3, 0.7, 20.2, 24.9]], requires_grad=True)
    multi_level_roi_align(maps, rois, 3, [4, 8], 0, 56).sum().backward()
    assert maps[0].grad.abs().sum() > 0 and rois.grad is None


def test_level_mapping_uses_finest_scale_56():
    sizes = [50, 111, 112, 223, 224, 447, 448, 2000]
    rois = torch.tensor([[0, 0, 0, size, size] for size in sizes], dtype=torch.float32)
    assert map_rois_to_levels(rois, 4, 56).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_multi_level_roi_align_reads_the_mapped_level():
    maps = [
        torch.full((1, 2, 64 // stride, 64 // stride), float(level)) for level, stride in enumerate([4, 8, 16, 32])
    ]
    rois = torch.tensor([[0, 0, 0, 20, 20], [0, 0, 0, 150, 150]], dtype=torch.float32)
    out = multi_level_roi_align(maps, rois, 7, [4, 8, 16, 32], 2, 56)
    assert out[0].unique().tolist() == [0.0]
    assert out[1].max().item() == 1.0


def test_box_decoding_matches_delta_xywh_coder():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0]])
    deltas = torch.tensor([[0.2, -0.4, 0.5, 10.0]])
    decoded = decode_box_deltas(boxes, deltas, [0, 0, 0, 0], [0.5, 0.5, 1, 1], 16 / 1000)
    # centre (30, 60) size (40, 80); dx = 0.2 * 0.5 * 40 = 4, dy = -0.4 * 0.5 * 80 = -16;
    # w = 40 e^0.5; h = 80 e^{4.1352} (dh clamped to |ln 0.016|); no clipping to the image.
    width, height = 40 * math.exp(0.5), 80 * math.exp(abs(math.log(0.016)))
    expected = torch.tensor([[34 - width / 2, 44 - height / 2, 34 + width / 2, 44 + height / 2]])
    assert torch.allclose(decoded, expected, rtol=1e-5)
    assert decoded[0, 1] < 0  # not clipped


def test_box_conversions_and_giou():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 10.0]])
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes)
    giou = elementwise_generalized_box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3]]))
    # IoU 1/7, enclosing 9, union 7: 1/7 - 2/9
    assert giou.item() == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)


def test_paste_mask_fills_its_box():
    probs = torch.ones(1, 28, 28)
    pasted = paste_masks_in_image(probs, torch.tensor([[10.0, 5.0, 30.0, 25.0]]), 40, 50)
    binary = pasted[0] >= 0.5
    rows, cols = torch.nonzero(binary, as_tuple=True)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (5, 24, 10, 29)
