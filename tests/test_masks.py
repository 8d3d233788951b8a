"""`masks_tevit`: the one RLE / video mask IoU / box module, shared by the linker, the metric and the data code."""

import numpy as np
import pytest
import torch

from tevit_hf import image_processing_tevit
from tevit_hf.masks_tevit import (
    box_xywh_to_xyxy,
    decode_mask_rle,
    decode_masks_rle,
    encode_masks_rle,
    rle_areas,
    rle_boxes_xywh,
    to_coco_rle,
    video_mask_iou,
)


def _random_tracks(rng, num_tracks, num_frames, size=(12, 16)):
    masks = rng.random((num_tracks, num_frames, *size)) > 0.6
    masks[0, 1] = False  # an empty frame
    return masks, [encode_masks_rle(track) for track in masks]


def test_video_mask_iou_is_the_youtube_vis_iou_of_the_dense_masks():
    rng = np.random.default_rng(0)
    masks_a, rles_a = _random_tracks(rng, 3, 4)
    masks_b, rles_b = _random_tracks(rng, 2, 4)
    rles_b[1][2] = None  # absent frame: an empty mask
    masks_b[1, 2] = False
    expected = np.zeros((3, 2))
    for i in range(3):
        for j in range(2):
            intersection = np.logical_and(masks_a[i], masks_b[j]).sum()
            union = np.logical_or(masks_a[i], masks_b[j]).sum()
            expected[i, j] = intersection / union
    np.testing.assert_allclose(video_mask_iou(rles_a, rles_b), expected, rtol=0, atol=1e-12)
    assert video_mask_iou([], rles_b).shape == (0, 2)


def test_rle_round_trip_areas_boxes_and_old_import_names():
    mask = np.zeros((2, 5, 6), dtype=bool)
    mask[0, 1:3, 2:5] = True
    rles = encode_masks_rle(mask)
    assert decode_masks_rle(rles).equal(torch.from_numpy(mask))
    assert rle_areas([*rles, None]).tolist() == [6.0, 0.0, 0.0]
    assert rle_boxes_xywh(rles)[0].tolist() == [2.0, 1.0, 3.0, 2.0]
    assert box_xywh_to_xyxy(torch.tensor([2.0, 1.0, 3.0, 2.0])).tolist() == [2.0, 1.0, 5.0, 3.0]
    polygon = to_coco_rle([[2, 1, 5, 1, 5, 3, 2, 3]], 5, 6)
    assert decode_mask_rle(polygon).shape == (5, 6)
    assert to_coco_rle(None, 5, 6) is None
    with pytest.raises(ValueError, match="does not match"):
        to_coco_rle(rles[0], 4, 6)
    # Old public import names keep working.
    assert image_processing_tevit.encode_masks_rle is encode_masks_rle
    assert image_processing_tevit.decode_mask_rle is decode_mask_rle
