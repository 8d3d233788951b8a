"""VideoInstanceSegmentationPipeline: every input kind, single video vs batch, parameters, near-online, device/dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hub_fixtures import (
    CLASS_NAMES,
    moving_shapes,
    save_tiny_hub_folder,
    tiny_model,
    tiny_processor,
    write_frame_folder,
    write_mp4,
)
from PIL import Image
from transformers import pipeline

from tevit_hf import VideoInstanceSegmentationPipeline
from tevit_hf.image_processing_tevit import decode_mask_rle
from tevit_hf.pipeline_tevit import split_video_inputs
from tevit_hf.tracking_tevit import num_clips


NUM_FRAMES, HEIGHT, WIDTH = 6, 48, 64


@pytest.fixture(scope="module")
def segmenter() -> VideoInstanceSegmentationPipeline:
    return pipeline("video-instance-segmentation", model=tiny_model(), image_processor=tiny_processor())


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    return moving_shapes(NUM_FRAMES, HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def reference(segmenter, video) -> list[dict]:
    return segmenter(video)


def assert_same_instances(actual: list[dict], expected: list[dict]) -> None:
    assert [i["label"] for i in actual] == [i["label"] for i in expected]
    np.testing.assert_allclose([i["score"] for i in actual], [i["score"] for i in expected], rtol=1e-5)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a["boxes"], e["boxes"], equal_nan=True, rtol=1e-4, atol=1e-3)
        assert torch.equal(a["masks"], e["masks"])


def assert_video_result(instances: list[dict], num_frames: int = NUM_FRAMES, size=(HEIGHT, WIDTH)) -> None:
    assert isinstance(instances, list) and instances, "expected the instances of one video"
    assert all(isinstance(instance, dict) for instance in instances)
    for instance in instances:
        assert set(instance) == {"id", "label", "label_id", "score", "boxes", "frame_valid", "visible", "masks"}
        # visible: the frames where the mask is not empty (frame_valid: where the track has a prediction).
        assert instance["visible"].equal(instance["masks"].flatten(1).any(1))
        assert not (instance["visible"] & ~instance["frame_valid"]).any()
        assert instance["label"] == CLASS_NAMES[instance["label_id"]]
        assert instance["boxes"].shape == (num_frames, 4)
        assert instance["masks"].shape == (num_frames, *size) and instance["masks"].dtype == torch.bool
    scores = [instance["score"] for instance in instances]
    assert scores == sorted(scores, reverse=True)
    assert len({instance["id"] for instance in instances}) == len(instances)


def test_task_is_registered_and_resolves_to_the_pipeline(segmenter):
    assert isinstance(segmenter, VideoInstanceSegmentationPipeline)


def test_array_video(reference, segmenter):
    assert_video_result(reference)
    # The official top-k without threshold: config.num_selected_instances instances.
    assert len(reference) == segmenter.model.config.num_selected_instances


def test_single_video_as_list_of_numpy_frames_is_not_a_batch(segmenter, video, reference):
    result = segmenter(list(video))
    assert_video_result(result)
    assert_same_instances(result, reference)


def test_list_of_pil_frames(segmenter, video, reference):
    assert_same_instances(segmenter([Image.fromarray(frame) for frame in video]), reference)


def test_channels_first_tensor(segmenter, video, reference):
    assert_same_instances(segmenter(torch.from_numpy(video).permute(0, 3, 1, 2)), reference)


def test_frame_folder_and_list_of_frame_paths(segmenter, video, reference, tmp_path):
    paths = write_frame_folder(tmp_path / "frames", video)
    assert_same_instances(segmenter(str(tmp_path / "frames")), reference)
    assert_same_instances(segmenter([str(path) for path in paths]), reference)


def test_video_file(segmenter, video, tmp_path):
    path = write_mp4(tmp_path / "clip.mp4", video)
    result = segmenter(str(path))
    assert_video_result(result)
    assert len(result) == segmenter.model.config.num_selected_instances


def test_batches_return_one_result_per_video(segmenter, video, reference, tmp_path):
    short = video[:3]
    batch = segmenter([video, short])
    assert len(batch) == 2
    assert_same_instances(batch[0], reference)
    assert_video_result(batch[1], num_frames=3)

    stacked = segmenter(np.stack([video, video]))
    assert len(stacked) == 2 and all(len(result) == len(reference) for result in stacked)

    path_a, path_b = write_mp4(tmp_path / "a.mp4", video), write_mp4(tmp_path / "b.mp4", short)
    from_paths = segmenter([str(path_a), str(path_b)])
    assert [len(result[0]["frame_valid"]) for result in from_paths] == [NUM_FRAMES, 3]

    list_of_frame_lists = segmenter([list(video), list(short)])
    assert_same_instances(list_of_frame_lists[0], reference)


def test_split_video_inputs_rules(video):
    frames = list(video)
    assert split_video_inputs(frames) == ([frames], False)
    assert split_video_inputs(video)[1] is False
    assert split_video_inputs(np.stack([video, video]))[1] is True
    assert split_video_inputs([video, video])[1] is True
    assert split_video_inputs(["a.mp4", "b.mp4"]) == (["a.mp4", "b.mp4"], True)
    assert split_video_inputs(["0.jpg", "1.jpg"]) == ([["0.jpg", "1.jpg"]], False)
    frame = video[0]
    (one_frame_video,), is_batch = split_video_inputs(frame)
    assert not is_batch and len(one_frame_video) == 1 and one_frame_video[0] is frame


@pytest.mark.parametrize(
    "bad_input, error, message",
    [
        ([], ValueError, "Empty input"),
        (["a.mp4", "0.jpg"], ValueError, "item 1"),
        ({"frames": 1}, TypeError, "Unsupported input"),
        ("no/such/video.mp4", FileNotFoundError, "no/such/video.mp4"),
    ],
)
def test_bad_inputs_give_clear_errors(segmenter, bad_input, error, message):
    with pytest.raises(error, match=message):
        segmenter(bad_input)


def test_threshold_top_k_and_label_names(segmenter, video, reference):
    threshold = reference[2]["score"]
    kept = segmenter(video, threshold=threshold)
    assert len(kept) == 3 and all(instance["score"] >= threshold for instance in kept)
    assert len(segmenter(video, top_k=2)) == 2
    assert {instance["label"] for instance in reference} <= set(CLASS_NAMES.values())


def test_mask_threshold_shrinks_masks(segmenter, video, reference):
    strict = segmenter(video, mask_threshold=0.9)
    for loose_instance, strict_instance in zip(reference, strict):
        assert not (strict_instance["masks"] & ~loose_instance["masks"]).any()
    assert sum(int(i["masks"].sum()) for i in strict) < sum(int(i["masks"].sum()) for i in reference)


def test_return_rle_matches_dense_masks(segmenter, video, reference):
    encoded = segmenter(video, return_rle=True)
    assert "masks" not in encoded[0]
    for rle_instance, dense_instance in zip(encoded, reference):
        assert len(rle_instance["segmentations"]) == NUM_FRAMES
        decoded = np.stack([decode_mask_rle(rle) for rle in rle_instance["segmentations"]])
        assert np.array_equal(decoded, dense_instance["masks"].numpy())


def test_offline_equals_image_processor_post_processing(segmenter, video, reference):
    processor, model = segmenter.image_processor, segmenter.model
    inputs = processor(videos=[video], return_tensors="pt")
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
    expected = processor.post_process_video_instance_segmentation(outputs, target_sizes=inputs["original_sizes"])[0]
    assert [i["label"] for i in expected] == [i["label_id"] for i in reference]
    np.testing.assert_allclose([i["score"] for i in expected], [i["score"] for i in reference], rtol=1e-6)
    for pipeline_instance, processor_instance in zip(reference, expected):
        assert torch.equal(pipeline_instance["masks"], processor_instance["masks"])


def test_long_video_runs_near_online_over_clips(segmenter):
    long_video = moving_shapes(num_frames=11, height=HEIGHT, width=WIDTH)
    calls = []
    handle = segmenter.model.register_forward_hook(lambda module, args, output: calls.append(output))
    try:
        result = segmenter(long_video, clip_length=4, stride=2)
    finally:
        handle.remove()
    assert len(calls) == num_clips(11, 4, 2) == 5
    assert_video_result(result, num_frames=11)
    assert all(instance["frame_valid"].any() for instance in result)
    # A clip as long as the video is the offline protocol: one forward pass.
    calls.clear()
    handle = segmenter.model.register_forward_hook(lambda module, args, output: calls.append(output))
    try:
        segmenter(long_video, clip_length=11)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_near_online_rle_tracks_share_the_empty_rle_of_absent_frames(segmenter):
    """Memory of long videos: frames where a track is absent hold one shared empty RLE, not a copy per track and
    frame (the pipeline's forward step would rebuild every dict it can reach)."""
    long_video = moving_shapes(num_frames=11, height=HEIGHT, width=WIDTH)
    result = segmenter(long_video, clip_length=4, stride=2, return_rle=True)
    absent = [
        rle
        for instance in result
        for rle, valid in zip(instance["segmentations"], instance["frame_valid"])
        if not valid
    ]
    assert len(absent) > 1, "the tiny model's short tracks leave frames without a prediction"
    assert len({id(rle) for rle in absent}) == 1


@pytest.mark.parametrize(
    "parameters, error, message",
    [
        ({"threshold": 1.5}, ValueError, "threshold"),
        ({"mask_threshold": -0.1}, ValueError, "mask_threshold"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"clip_length": 4, "stride": 5}, ValueError, "stride"),
        ({"clip_length": 0}, ValueError, "clip_length"),
        ({"colour": "red"}, TypeError, "colour"),
    ],
)
def test_bad_parameters(segmenter, video, parameters, error, message):
    with pytest.raises(error, match=message):
        segmenter(video, **parameters)


def test_constructor_parameters_are_defaults(video, reference):
    segmenter = pipeline("video-instance-segmentation", model=tiny_model(), image_processor=tiny_processor(), top_k=2)
    assert len(segmenter(video)) == 2
    assert len(segmenter(video, top_k=4)) == 4


def test_device_and_dtype_from_a_saved_folder(tmp_path, video, reference):
    folder = save_tiny_hub_folder(tmp_path / "tiny")
    segmenter = pipeline(
        "video-instance-segmentation",
        model=str(folder),
        pipeline_class=VideoInstanceSegmentationPipeline,
        device="cpu",
        dtype=torch.bfloat16,
    )
    assert segmenter.device == torch.device("cpu") and segmenter.model.dtype == torch.bfloat16
    result = segmenter(video)
    assert_video_result(result)
    assert all(instance["boxes"].dtype == torch.float32 for instance in result)
    full_precision = pipeline(
        "video-instance-segmentation", model=str(folder), pipeline_class=VideoInstanceSegmentationPipeline
    )
    assert full_precision.model.dtype == torch.float32
    assert_same_instances(full_precision(video), reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_matches_cpu(video, reference):
    segmenter = pipeline(
        "video-instance-segmentation", model=tiny_model(), image_processor=tiny_processor(), device="cuda"
    )
    assert segmenter.model.device.type == "cuda"
    result = segmenter(video)
    assert [i["label"] for i in result] == [i["label"] for i in reference]
    np.testing.assert_allclose([i["score"] for i in result], [i["score"] for i in reference], rtol=1e-3, atol=1e-4)
