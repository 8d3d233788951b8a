"""Tests of TeViTImageProcessor: pre-processing, post-processing, RLE and the YouTube-VIS results writer."""

from __future__ import annotations

import importlib

import numpy as np
import PIL.Image
import pytest
import torch
from pycocotools import mask as coco_mask

from tevit_hf.image_processing_tevit import (
    TeViTImageProcessor,
    decode_mask_rle,
    encode_mask_rle,
    encode_masks_rle,
    get_keep_ratio_resize_size,
    to_youtube_vis_results,
)


OFFICIAL_MEAN_255 = np.array([123.675, 116.28, 103.53], dtype=np.float32)
OFFICIAL_STD_255 = np.array([58.395, 57.12, 57.375], dtype=np.float32)
# Keep-ratio bounds equal to the test frames' sides, so that frames are not resized (scale 1).
NO_RESIZE = {"longest_edge": 48, "shortest_edge": 40}


@pytest.fixture
def processor() -> TeViTImageProcessor:
    return TeViTImageProcessor()


@pytest.fixture
def rgb_frames() -> np.ndarray:
    """Two random RGB frames (T, H, W, C) = (2, 40, 48, 3), uint8."""
    return np.random.default_rng(0).integers(0, 256, size=(2, 40, 48, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Pre-processing
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "expected_width", "expected_height"),
    [(1280, 720, 640, 360), (640, 480, 480, 360), (1920, 1080, 640, 360), (720, 1280, 360, 640), (100, 50, 640, 320)],
)
def test_keep_ratio_resize_matches_spec_examples(processor, width, height, expected_width, expected_height):
    assert get_keep_ratio_resize_size(height, width, 640, 360) == (expected_height, expected_width)
    frame = PIL.Image.new("RGB", (width, height))
    inputs = processor([frame], return_tensors="pt")
    assert inputs["image_sizes"].tolist() == [[expected_height, expected_width]]
    assert inputs["original_sizes"].tolist() == [[height, width]]
    padded = [-(-expected_height // 32) * 32, -(-expected_width // 32) * 32]
    assert list(inputs["pixel_values"].shape) == [1, 1, 3, *padded]


def test_mmcv_rounding_rule():
    # 0.5 rounds up (int(x + 0.5)), unlike Python's round-half-to-even: 10x5 at scale 0.5 -> 5x3 (not 5x2).
    assert get_keep_ratio_resize_size(5, 10, 5, 3) == (3, 5)


def test_bilinear_resize_is_cv2_style_without_antialias(processor):
    # Halving with half-pixel centres and no antialiasing = mean of each 2x2 block (PIL's bilinear would blur more).
    image = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    inputs = processor(
        [image], size={"longest_edge": 4, "shortest_edge": 4}, do_normalize=False, do_rescale=False, do_pad=False
    )
    blocks = image.reshape(4, 2, 4, 2, 3).astype(np.float64).mean(axis=(1, 3))
    expected = np.floor(blocks + 0.5).transpose(2, 0, 1)
    np.testing.assert_array_equal(inputs["pixel_values"][0, 0], expected)


def test_normalization_uses_official_mean_std(processor):
    color = np.array([255, 128, 0], dtype=np.uint8)
    frame = np.broadcast_to(color, (40, 48, 3)).copy()
    inputs = processor([frame], size=NO_RESIZE, return_tensors="np")
    expected = (color.astype(np.float32) - OFFICIAL_MEAN_255) / OFFICIAL_STD_255
    np.testing.assert_allclose(inputs["pixel_values"][0, 0, :, 0, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(inputs["pixel_values"][0, 0, :, 39, 47], expected, rtol=1e-5)


def test_padding_to_multiple_of_32_and_pixel_mask(processor, rgb_frames):
    inputs = processor(rgb_frames, do_resize=False, return_tensors="pt")
    pixel_values, pixel_mask = inputs["pixel_values"], inputs["pixel_mask"]
    assert pixel_values.shape == (1, 2, 3, 64, 64) and pixel_values.dtype == torch.float32
    assert pixel_mask.shape == (1, 64, 64) and pixel_mask.dtype == torch.int64
    assert pixel_mask[0, :40, :48].all() and pixel_mask.sum() == 40 * 48
    # Padding is zero after normalisation (the padded area is exactly 0, not the normalised black).
    assert (pixel_values[0, :, :, 40:, :] == 0).all() and (pixel_values[0, :, :, :, 48:] == 0).all()
    assert inputs["image_sizes"].tolist() == [[40, 48]]


def test_batch_of_different_sizes_pads_to_largest(processor):
    small = [np.zeros((40, 48, 3), dtype=np.uint8)] * 2
    large = [np.zeros((70, 90, 3), dtype=np.uint8)] * 2
    inputs = processor([small, large], do_resize=False, return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 2, 3, 96, 96)
    assert inputs["image_sizes"].tolist() == [[40, 48], [70, 90]]
    assert inputs["pixel_mask"][0].sum() == 40 * 48 and inputs["pixel_mask"][1].sum() == 70 * 90
    with pytest.raises(ValueError, match="do_pad=True"):
        processor([small, large], do_resize=False, do_pad=False)


def test_all_input_kinds_give_the_same_pixels(processor, rgb_frames, tmp_path):
    reference = processor(rgb_frames, size=NO_RESIZE, return_tensors="pt")["pixel_values"]
    paths = []
    for index, frame in enumerate(rgb_frames):
        paths.append(tmp_path / f"{index:05d}.png")
        PIL.Image.fromarray(frame).save(paths[-1])
    variants = {
        "pil list": [PIL.Image.fromarray(frame) for frame in rgb_frames],
        "thwc numpy": rgb_frames,
        "tchw numpy": rgb_frames.transpose(0, 3, 1, 2).copy(),
        "tchw tensor": torch.from_numpy(rgb_frames).permute(0, 3, 1, 2),
        "thwc tensor": torch.from_numpy(rgb_frames),
        "list of hwc arrays": list(rgb_frames),
        "str paths": [str(path) for path in paths],
        "pathlib paths": paths,
        "float 0-255": rgb_frames.astype(np.float32),
        "rgba numpy": np.concatenate([rgb_frames, np.full((2, 40, 48, 1), 7, dtype=np.uint8)], axis=-1),
        "rgba pil": [PIL.Image.fromarray(frame).convert("RGBA") for frame in rgb_frames],
    }
    for name, video in variants.items():
        pixel_values = processor(video, size=NO_RESIZE, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(pixel_values, reference, msg=f"input kind {name!r} differs")


def test_grayscale_becomes_rgb(processor, rgb_frames):
    gray = rgb_frames[..., 0]
    reference = processor(np.repeat(gray[..., None], 3, axis=-1), size=NO_RESIZE, return_tensors="pt")
    for video in ([PIL.Image.fromarray(frame, mode="L") for frame in gray], list(gray), gray[..., None]):
        pixel_values = processor(video, size=NO_RESIZE, return_tensors="pt")["pixel_values"]
        assert pixel_values.shape == (1, 2, 3, 64, 64)
        torch.testing.assert_close(pixel_values, reference["pixel_values"])


def test_single_video_vs_batch_disambiguation(processor, rgb_frames):
    frames = [PIL.Image.fromarray(frame) for frame in rgb_frames]

    def batch_and_length(videos):
        return tuple(processor(videos, size=NO_RESIZE, return_tensors="pt")["pixel_values"].shape[:2])

    assert batch_and_length(frames) == (1, 2)  # list of frames: one video
    assert batch_and_length(rgb_frames) == (1, 2)  # 4-D array: one video
    assert batch_and_length(list(rgb_frames)) == (1, 2)  # list of 3-D arrays: one video
    assert batch_and_length(frames[0]) == (1, 1)  # one image: one one-frame video
    assert batch_and_length([frames, frames, frames]) == (3, 2)  # list of lists: batch
    assert batch_and_length([rgb_frames, rgb_frames]) == (2, 2)  # list of 4-D arrays: batch
    assert batch_and_length(np.stack([rgb_frames] * 3)) == (3, 2)  # 5-D array: batch
    assert batch_and_length([[frames[0]], [frames[1]]]) == (2, 1)  # batch of one-frame videos


def test_bad_inputs_raise_clear_errors(processor, rgb_frames, tmp_path):
    frames = list(rgb_frames)
    with pytest.raises(ValueError, match="video 0 has 2 frames but video 1 has 1"):
        processor([frames, frames[:1]])
    with pytest.raises(ValueError, match="Video 0: frame 1 is 20x48"):
        processor([frames[0], frames[1][:20]])
    with pytest.raises(ValueError, match="empty"):
        processor([])
    with pytest.raises(ValueError, match="Video 1 has no frames"):
        processor([frames, []])
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        processor([str(tmp_path / "missing.jpg")])
    not_an_image = tmp_path / "clip.mp4"
    not_an_image.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="clip.mp4"):
        processor([str(not_an_image)])
    with pytest.raises(ValueError, match="channels"):
        processor([np.zeros((40, 48, 5), dtype=np.uint8)], input_data_format="channels_last")
    with pytest.raises(ValueError, match="batch"):
        processor([frames, frames[0]])
    with pytest.raises(TypeError, match="unexpected"):
        processor(frames, crop_to_square=True)
    with pytest.raises(ValueError, match="resample"):
        processor(frames, resample=PIL.Image.Resampling.LANCZOS)


def test_save_load_round_trip_and_auto_image_processor(tmp_path):
    from transformers import AutoImageProcessor

    import tevit_hf

    importlib.reload(tevit_hf)  # importing (registering) twice must be harmless
    processor = TeViTImageProcessor(size={"longest_edge": 960, "shortest_edge": 480}, pad_size_divisor=64)
    processor.save_pretrained(tmp_path)
    loaded = TeViTImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    assert loaded.size == {"longest_edge": 960, "shortest_edge": 480} and loaded.pad_size_divisor == 64
    auto = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(auto, TeViTImageProcessor) and auto.to_dict() == processor.to_dict()
    overridden = AutoImageProcessor.from_pretrained(tmp_path, pad_size_divisor=32)
    assert overridden.pad_size_divisor == 32
    assert TeViTImageProcessor.model_input_names == ["pixel_values", "pixel_mask"]


# ----------------------------------------------------------------------------------------------------------------
# Post-processing
# ----------------------------------------------------------------------------------------------------------------

HEIGHT, WIDTH, MASK_SIZE = 40, 60, 28


def hand_built_outputs(frame_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One video, T=2 frames, K=3 instances; every mask logit is +10 (a mask that fills its box)."""
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.2, 0.2], [0.7, 0.6, 0.4, 0.6]])  # cxcywh
    outputs = {
        "selected_scores": torch.tensor([[0.2, 0.9, 0.5]]),
        "selected_labels": torch.tensor([[4, 1, 2]]),
        "selected_boxes": boxes[None, None].repeat(1, 2, 1, 1),
        "selected_mask_logits": torch.full((1, 2, 3, MASK_SIZE, MASK_SIZE), 10.0),
    }
    if frame_valid is not None:
        outputs["frame_valid"] = frame_valid
    return outputs


def test_post_process_maps_boxes_and_pastes_masks_to_original_pixels(processor):
    results = processor.post_process_video_instance_segmentation(hand_built_outputs(), target_sizes=[(HEIGHT, WIDTH)])
    assert len(results) == 1 and [instance["id"] for instance in results[0]] == [1, 2, 0]  # sorted by score
    assert [instance["label"] for instance in results[0]] == [1, 2, 4]
    assert results[0][0]["score"] == pytest.approx(0.9)
    instance = results[0][2]  # box (cx, cy, w, h) = (0.5, 0.5, 0.5, 0.5) -> xyxy (15, 10, 45, 30) in 60x40 pixels
    torch.testing.assert_close(instance["boxes"], torch.tensor([[15.0, 10.0, 45.0, 30.0]] * 2))
    expected = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
    expected[:, 10:30, 15:45] = True  # pixel centres inside the box
    assert instance["masks"].dtype == torch.bool and torch.equal(instance["masks"], expected)
    assert instance["frame_valid"].all()


def test_post_process_threshold_top_k_and_sizes(processor):
    outputs = hand_built_outputs()
    kept = processor.post_process_video_instance_segmentation(outputs, target_sizes=[(HEIGHT, WIDTH)], threshold=0.4)
    assert [instance["id"] for instance in kept[0]] == [1, 2]
    best = processor.post_process_video_instance_segmentation(outputs, target_sizes=[(HEIGHT, WIDTH)], top_k=1)
    assert [instance["id"] for instance in best[0]] == [1]
    # Without target sizes the unpadded input size is used (argument, or an `image_sizes` entry of the outputs).
    resized = processor.post_process_video_instance_segmentation(outputs, image_sizes=torch.tensor([[20, 30]]))
    assert resized[0][0]["masks"].shape == (2, 20, 30)
    with_sizes = processor.post_process_video_instance_segmentation(
        {**outputs, "image_sizes": torch.tensor([[20, 30]])}
    )
    assert with_sizes[0][0]["masks"].shape == (2, 20, 30)
    with pytest.raises(ValueError, match="target_sizes"):
        processor.post_process_video_instance_segmentation(outputs)
    with pytest.raises(ValueError, match="selected_mask_logits"):
        processor.post_process_video_instance_segmentation({"selected_scores": outputs["selected_scores"]})


def test_post_process_rle_round_trip(processor):
    outputs = hand_built_outputs()
    dense = processor.post_process_video_instance_segmentation(outputs, target_sizes=[(HEIGHT, WIDTH)])
    rle = processor.post_process_video_instance_segmentation(outputs, target_sizes=[(HEIGHT, WIDTH)], return_rle=True)
    for dense_instance, rle_instance in zip(dense[0], rle[0]):
        assert "masks" not in rle_instance and len(rle_instance["segmentations"]) == 2
        for frame_index, segmentation in enumerate(rle_instance["segmentations"]):
            assert isinstance(segmentation["counts"], str) and segmentation["size"] == [HEIGHT, WIDTH]
            np.testing.assert_array_equal(decode_mask_rle(segmentation), dense_instance["masks"][frame_index].numpy())


def test_post_process_frame_valid_marks_absent_frames(processor):
    frame_valid = torch.tensor([[True, True, True], [True, False, True]])  # (T, K): instance 1 absent in frame 1
    outputs = hand_built_outputs(frame_valid)
    results = processor.post_process_video_instance_segmentation(outputs, target_sizes=[(HEIGHT, WIDTH)])
    track = results[0][0]
    assert track["id"] == 1 and track["frame_valid"].tolist() == [True, False]
    assert track["masks"][0].any() and not track["masks"][1].any()
    assert torch.isfinite(track["boxes"][0]).all() and torch.isnan(track["boxes"][1]).all()
    rle = processor.post_process_video_instance_segmentation(outputs, target_sizes=[(HEIGHT, WIDTH)], return_rle=True)
    assert not decode_mask_rle(rle[0][0]["segmentations"][1]).any()
    assert decode_mask_rle(rle[0][0]["segmentations"][0]).any()


# ----------------------------------------------------------------------------------------------------------------
# RLE and YouTube-VIS results
# ----------------------------------------------------------------------------------------------------------------


def test_rle_round_trip_matches_pycocotools():
    mask = np.random.default_rng(2).random((17, 23)) > 0.6
    rle = encode_mask_rle(torch.from_numpy(mask))
    assert rle["size"] == [17, 23] and isinstance(rle["counts"], str)
    reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"] == reference["counts"].decode()
    np.testing.assert_array_equal(decode_mask_rle(rle), mask)
    assert [decoded["counts"] for decoded in encode_masks_rle(np.stack([mask, ~mask]))][0] == rle["counts"]
    uncompressed = {"size": [2, 3], "counts": [1, 2, 3]}  # column-major runs: 0, 1 1, 0 0 0
    np.testing.assert_array_equal(decode_mask_rle(uncompressed), [[False, True, False], [True, False, False]])
    with pytest.raises(ValueError, match="\\(H, W\\)"):
        encode_mask_rle(np.zeros((2, 3, 4), dtype=bool))


def test_to_youtube_vis_results(processor):
    frame_valid = torch.tensor([[True, True, True], [True, False, True]])
    instances = processor.post_process_video_instance_segmentation(
        hand_built_outputs(frame_valid), target_sizes=[(HEIGHT, WIDTH)]
    )[0]
    entries = to_youtube_vis_results(instances, video_id=7)
    assert [entry["category_id"] for entry in entries] == [2, 3, 5]  # label + 1
    assert entries[0]["video_id"] == 7 and entries[0]["score"] == pytest.approx(0.9)
    assert all(len(entry["segmentations"]) == 2 for entry in entries)
    assert entries[0]["segmentations"][1] == encode_mask_rle(np.zeros((HEIGHT, WIDTH), dtype=bool))  # empty, not null
    with_rle = processor.post_process_video_instance_segmentation(
        hand_built_outputs(frame_valid), target_sizes=[(HEIGHT, WIDTH)], return_rle=True
    )[0]
    assert to_youtube_vis_results(with_rle, video_id=7) == entries
    mapped = to_youtube_vis_results(instances, 7, label_to_category_id={1: 10, 2: 20, 4: 40})
    assert [entry["category_id"] for entry in mapped] == [10, 20, 40]
    assert to_youtube_vis_results(instances, 7, absent_frames_as_null=True)[0]["segmentations"][1] is None
    with pytest.raises(ValueError, match="label 4"):
        to_youtube_vis_results(instances, 7, label_to_category_id={1: 10, 2: 20})


# ----------------------------------------------------------------------------------------------------------------
# End to end with a tiny model
# ----------------------------------------------------------------------------------------------------------------


def test_tiny_model_end_to_end(rgb_frames):
    modeling = pytest.importorskip("tevit_hf.modeling_tevit")
    from tevit_hf.configuration_tevit import TeViTConfig

    torch.manual_seed(0)
    config = TeViTConfig(
        backbone_hidden_sizes=[8, 16, 24, 32], backbone_num_attention_heads=[1, 1, 1, 1],
        backbone_mlp_ratios=[2, 2, 2, 2], hidden_size=32, head_num_attention_heads=4, head_ffn_dim=64,
        dynamic_conv_dim=8, mask_conv_dim=16, num_queries=10, num_head_stages=2, num_messenger_tokens=8,
        num_labels=3, num_selected_instances=5,
    )  # fmt: skip
    model = modeling.TeViTForVideoInstanceSegmentation(config).eval()
    processor = TeViTImageProcessor(size={"longest_edge": 64, "shortest_edge": 32})
    inputs = processor(rgb_frames, return_tensors="pt")  # 40x48 -> 32x38 (scale 0.8), padded to 32x64
    assert inputs["image_sizes"].tolist() == [[32, 38]] and inputs["pixel_values"].shape == (1, 2, 3, 32, 64)
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
    results = processor.post_process_video_instance_segmentation(outputs, target_sizes=inputs["original_sizes"])
    assert len(results) == 1 and len(results[0]) == config.num_selected_instances
    scores = [instance["score"] for instance in results[0]]
    assert scores == sorted(scores, reverse=True)
    for instance in results[0]:
        assert instance["masks"].shape == (2, 40, 48) and instance["masks"].dtype == torch.bool
        assert instance["boxes"].shape == (2, 4) and 0 <= instance["label"] < config.num_labels
    # Default sizes come from the model output's `image_sizes` (the unpadded input size).
    resized = processor.post_process_video_instance_segmentation(outputs, return_rle=True)
    assert resized[0][0]["segmentations"][0]["size"] == [32, 38]
    entries = to_youtube_vis_results(results[0], video_id=1)
    assert len(entries) == config.num_selected_instances and all(len(e["segmentations"]) == 2 for e in entries)


def test_processor_and_pipeline_share_the_one_video_or_batch_rule(processor, rgb_frames, tmp_path):
    """The ambiguous cases: image paths are frames of one video, video paths a batch, (H, W, C) arrays one video,
    4-D arrays a batch; `TeViTImageProcessor` and the pipeline read every input the same way."""
    from hub_fixtures import write_mp4

    from tevit_hf.pipeline_tevit import split_video_inputs

    image_paths = []
    for index, frame in enumerate(rgb_frames):
        image_paths.append(str(tmp_path / f"{index}.png"))
        PIL.Image.fromarray(frame).save(image_paths[-1])
    video_paths = [str(write_mp4(tmp_path / f"{name}.mp4", rgb_frames)) for name in "ab"]
    cases = [
        (image_paths, 1, False),  # list of image paths: the frames of one video
        (video_paths, 2, True),  # list of video paths: a batch
        (list(rgb_frames), 1, False),  # list of (H, W, C) arrays: one video
        ([rgb_frames, rgb_frames], 2, True),  # list of 4-D arrays: a batch
        (video_paths[0], 1, False),  # one video file
        (str(tmp_path / "0.png"), 1, False),  # one image: a one-frame video
    ]
    for inputs, num_videos, is_batch in cases:
        videos, batch = split_video_inputs(inputs)
        assert (len(videos), batch) == (num_videos, is_batch), inputs
        pixel_values = processor(inputs, size=NO_RESIZE, return_tensors="pt")["pixel_values"]
        assert pixel_values.shape[0] == num_videos, inputs
    with pytest.raises(ValueError, match="item 1"):
        processor([video_paths[0], image_paths[0]])
