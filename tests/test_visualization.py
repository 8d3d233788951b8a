"""Drawing instance results onto frames and writing annotated videos."""

from __future__ import annotations

import numpy as np
import pytest

from tevit_hf.image_processing_tevit import encode_masks_rle
from tevit_hf.video_io import read_video_frames
from tevit_hf.visualization import (
    annotate_video,
    color_for_id,
    draw_instances,
    instance_caption,
    write_annotated_video,
)


HEIGHT, WIDTH, NUM_FRAMES = 64, 80, 3
# Far enough from the mask, box and caption that nothing may be drawn there.
MARGIN = 20


def gray_frames(num_frames: int = NUM_FRAMES) -> list[np.ndarray]:
    return [np.full((HEIGHT, WIDTH, 3), 100, dtype=np.uint8) for _ in range(num_frames)]


def square_instance(track_id: int, top: int, left: int, size: int = 16, as_rle: bool = False) -> dict:
    masks = np.zeros((NUM_FRAMES, HEIGHT, WIDTH), dtype=bool)
    masks[:, top : top + size, left : left + size] = True
    masks[1] = False  # absent in the middle frame
    boxes = np.tile(np.array([left, top, left + size, top + size], dtype=np.float32), (NUM_FRAMES, 1))
    instance = {"id": track_id, "label": 1, "score": 0.9, "boxes": boxes}
    if as_rle:
        instance["segmentations"] = encode_masks_rle(masks)
    else:
        instance["masks"] = masks
    return instance


def far_from(top: int, left: int, size: int) -> np.ndarray:
    region = np.ones((HEIGHT, WIDTH), dtype=bool)
    region[max(0, top - MARGIN) : top + size + MARGIN, max(0, left - MARGIN) : left + size + MARGIN] = False
    return region


def test_color_for_id_is_stable_and_distinct():
    assert color_for_id(3) == color_for_id(3)
    assert color_for_id(0) == (242, 36, 36)  # fixed formula: the same colour in every run and process
    colors = {color_for_id(track_id) for track_id in range(20)}
    assert len(colors) == 20
    assert all(0 <= channel <= 255 for color in colors for channel in color)


def test_caption_uses_label_names():
    instance = {"id": 4, "label": 2, "score": 0.876}
    assert instance_caption(instance) == "4 2 0.88"
    assert instance_caption(instance, {2: "cat"}) == "4 cat 0.88"
    assert instance_caption(instance, {"2": "dog"}) == "4 dog 0.88"


def test_draw_changes_mask_pixels_only():
    frame = gray_frames(1)[0]
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[30:46, 40:56] = True
    drawn = draw_instances(frame, masks=[mask], boxes=[(40, 30, 56, 46)], track_ids=[7])
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(frame, gray_frames(1)[0])  # input untouched
    # Inside the mask: blended towards the id colour (alpha 0.5).
    expected = np.rint(0.5 * 100 + 0.5 * np.array(color_for_id(7))).astype(np.uint8)
    np.testing.assert_array_equal(drawn[38, 48], expected)
    assert (drawn[mask] != 100).any(axis=-1).all()
    far = far_from(30, 40, 16)
    np.testing.assert_array_equal(drawn[far], frame[far])


def test_caption_is_drawn_above_the_box():
    frame = gray_frames(1)[0]
    drawn = draw_instances(frame, boxes=[(10, 30, 30, 50)], track_ids=[3], captions=["3 cat 0.50"])
    changed = (drawn != frame).any(axis=-1)
    rows, cols = np.nonzero(changed[:30])
    assert rows.size > 0 and rows.min() >= 30 - MARGIN and cols.min() >= 10
    assert not changed[51:].any() and not changed[:, :9].any()


def test_caption_stays_inside_the_frame_for_boxes_outside_it():
    frame = gray_frames(1)[0]
    drawn = draw_instances(frame, boxes=[(-500, -900, 900, 1200)], track_ids=[3], captions=["3 cat 0.50"])
    changed = (drawn != frame).any(axis=-1)
    assert changed[:16, :16].any()  # the caption, clamped to the top-left corner


def test_draw_without_boxes_or_captions():
    frame = gray_frames(1)[0]
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[5:10, 5:10] = True
    drawn = draw_instances(frame, masks=[mask], track_ids=[1], alpha=1.0)
    np.testing.assert_array_equal(drawn[mask], np.tile(color_for_id(1), (25, 1)))
    np.testing.assert_array_equal(drawn[~mask], frame[~mask])


@pytest.mark.parametrize("as_rle", [False, True])
def test_annotate_video_colours_per_id_and_skips_absent_frames(as_rle):
    instances = [square_instance(1, 4, 4, as_rle=as_rle), square_instance(2, 40, 56, as_rle=as_rle)]
    annotated = list(annotate_video(gray_frames(), instances, alpha=1.0))
    assert len(annotated) == NUM_FRAMES
    for frame_index in (0, 2):
        np.testing.assert_array_equal(annotated[frame_index][12, 12], color_for_id(1))
        np.testing.assert_array_equal(annotated[frame_index][48, 64], color_for_id(2))
    # Frame 1: both masks empty, so nothing at all is drawn (no stray box or caption).
    np.testing.assert_array_equal(annotated[1], gray_frames(1)[0])


def test_annotate_video_respects_threshold_and_frame_valid():
    low = square_instance(1, 4, 4) | {"score": 0.1}
    hidden = square_instance(2, 40, 56) | {"frame_valid": np.array([False, False, True])}
    annotated = list(annotate_video(gray_frames(), [low, hidden], score_threshold=0.5, alpha=1.0))
    np.testing.assert_array_equal(annotated[0], gray_frames(1)[0])
    np.testing.assert_array_equal(annotated[2][48, 64], color_for_id(2))
    np.testing.assert_array_equal(annotated[2][12, 12], (100, 100, 100))


def test_annotate_video_skips_nan_boxes():
    instance = square_instance(3, 4, 4)
    instance["boxes"][0] = np.nan
    annotated = list(annotate_video(gray_frames(), [instance], alpha=1.0))
    np.testing.assert_array_equal(annotated[0][12, 12], color_for_id(3))


def test_annotate_video_checks_frame_count():
    with pytest.raises(ValueError, match="Got 2 frames"):
        list(annotate_video(gray_frames(2), [square_instance(1, 4, 4)]))
    with pytest.raises(ValueError, match="more frames"):
        list(annotate_video(gray_frames(4), [square_instance(1, 4, 4)]))


def test_draw_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="Mask 0 has shape"):
        draw_instances(gray_frames(1)[0], masks=[np.zeros((3, 3), dtype=bool)], track_ids=[0])


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_annotated_video(tmp_path, suffix):
    instances = [square_instance(5, 20, 20, size=24)]
    path = write_annotated_video(gray_frames(), instances, tmp_path / f"overlay{suffix}", fps=5, alpha=1.0)
    decoded, info = read_video_frames(path)
    assert len(decoded) == NUM_FRAMES and (info.height, info.width) == (HEIGHT, WIDTH)
    inside = decoded[0][32, 32].astype(int)
    assert np.abs(inside - np.array(color_for_id(5))).max() < 24  # lossy codec / GIF palette
    assert np.abs(decoded[1][32, 32].astype(int) - 100).max() < 8
