"""Tests of YouTube-VIS loading, training clip sampling, transforms, collate and bad-data errors (`tevit_hf.data`)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader

from tevit_hf import TeViTConfig, TeViTImageProcessor
from tevit_hf.data import (
    VIS_VIDEO_FEATURES,
    ClipCollator,
    ClipTransform,
    VisDataError,
    YouTubeVISClipDataset,
    build_clip_sample,
    build_sampling_items,
    collate_clips,
    decode_segmentation,
    generate_synthetic_vis_dataset,
    load_video_frames,
    load_youtube_vis,
    sample_clip_frames,
    sample_clip_transform,
)


NUM_FRAMES, HEIGHT, WIDTH, NUM_CLASSES = 6, 64, 96, 4
TINY_SCALES = [(96, 64), (128, 80)]
IMAGE_MEAN = torch.tensor(TeViTImageProcessor().image_mean)[:, None, None]
IMAGE_STD = torch.tensor(TeViTImageProcessor().image_std)[:, None, None]


@pytest.fixture(scope="module")
def annotation_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vis")
    return generate_synthetic_vis_dataset(
        root,
        num_videos=3,
        num_frames=NUM_FRAMES,
        height=HEIGHT,
        width=WIDTH,
        num_classes=NUM_CLASSES,
        seed=0,
        mp4="none",
    )


@pytest.fixture(scope="module")
def loaded(annotation_file):
    return load_youtube_vis(annotation_file, check_frames=True)


@pytest.fixture(scope="module")
def raw(annotation_file) -> dict:
    return json.loads(annotation_file.read_text())


def _write_variant(tmp_path: Path, data: dict, name: str = "variant.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _unnormalise(pixel_values: torch.Tensor) -> torch.Tensor:
    """`(..., 3, H, W)` normalised -> 0-255."""
    return (pixel_values * IMAGE_STD + IMAGE_MEAN) * 255


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------
def test_load_gives_a_videos_dataset_with_explicit_features_and_label_mapping(loaded, raw, annotation_file):
    dataset, info = loaded
    assert dataset.features == VIS_VIDEO_FEATURES
    assert len(dataset) == 3 and dataset["video_id"] == [1, 2, 3]
    assert info.id2label == {0: "circle", 1: "square", 2: "triangle", 3: "star"}
    assert info.label2category_id == {0: 1, 1: 2, 2: 3, 3: 4} and info.category_id2label == {1: 0, 2: 1, 3: 2, 4: 3}
    assert info.has_annotations and info.num_labels == NUM_CLASSES
    assert info.frames_dir == str((annotation_file.parent / "JPEGImages").resolve())
    config = TeViTConfig(id2label=info.id2label)
    assert config.num_labels == NUM_CLASSES and config.id2label[2] == "triangle"

    row = dataset[0]
    assert row["frames_dir"] == info.frames_dir and row["length"] == NUM_FRAMES
    assert (row["height"], row["width"]) == (HEIGHT, WIDTH)
    annotations = [a for a in raw["annotations"] if a["video_id"] == 1]
    assert [instance["id"] for instance in row["instances"]] == [a["id"] for a in annotations]
    for instance, annotation in zip(row["instances"], annotations):
        assert instance["label"] == info.category_id2label[annotation["category_id"]]
        assert instance["iscrowd"] is False
        assert instance["bboxes"] == annotation["bboxes"]
        for stored, original in zip(instance["segmentations"], annotation["segmentations"]):
            assert (stored is None) == (original is None)
            if stored is not None:
                expected = mask_utils.decode({**original, "counts": original["counts"].encode()}).astype(bool)
                np.testing.assert_array_equal(decode_segmentation(stored, HEIGHT, WIDTH), expected)


def test_load_test_split_without_annotations(tmp_path, raw):
    data = {key: value for key, value in raw.items() if key != "annotations"}
    dataset, info = load_youtube_vis(_write_variant(tmp_path, data), frames_dir=tmp_path)
    assert not info.has_annotations
    assert len(dataset) == 3 and all(instances == [] for instances in dataset["instances"])


def test_load_maps_sparse_category_ids_and_reads_uncompressed_rle_and_polygons(tmp_path, raw):
    data = copy.deepcopy(raw)
    new_ids = {1: 40, 2: 7, 3: 12, 4: 3}  # unsorted, sparse
    for category in data["categories"]:
        category["id"] = new_ids[category["id"]]
    annotation = data["annotations"][0]
    for annotation_ in data["annotations"]:
        annotation_["category_id"] = new_ids[annotation_["category_id"]]
        annotation_.pop("areas")  # optional key
    first = next(index for index, s in enumerate(annotation["segmentations"]) if s is not None)
    mask = mask_utils.decode(
        {**annotation["segmentations"][first], "counts": annotation["segmentations"][first]["counts"].encode()}
    )
    # Uncompressed RLE (YouTube-VIS 2019 train style): column-major run lengths starting with zeros.
    flat = mask.flatten(order="F")
    boundaries = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], boundaries, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    annotation["segmentations"][first] = {"size": [HEIGHT, WIDTH], "counts": runs}
    second = next(index for index, s in enumerate(annotation["segmentations"]) if s is not None and index > first)
    annotation["segmentations"][second] = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]  # polygon
    dataset, info = load_youtube_vis(_write_variant(tmp_path, data))
    assert info.id2label == {0: "star", 1: "square", 2: "triangle", 3: "circle"}
    assert info.label2category_id == {0: 3, 1: 7, 2: 12, 3: 40}
    instance = dataset[0]["instances"][0]
    assert instance["label"] == info.category_id2label[annotation["category_id"]]
    assert instance["areas"] == [None] * NUM_FRAMES
    np.testing.assert_array_equal(decode_segmentation(instance["segmentations"][first], HEIGHT, WIDTH), mask > 0)
    polygon_mask = decode_segmentation(instance["segmentations"][second], HEIGHT, WIDTH)
    assert polygon_mask[12:18, 12:28].all() and not polygon_mask[:8].any() and polygon_mask.sum() < 300


# ----------------------------------------------------------------------------------------------------------------
# Clip sampling
# ----------------------------------------------------------------------------------------------------------------
def _video(length: int, present: list[list[bool]], height: int = HEIGHT, iscrowd: bool = False) -> dict:
    instances = [
        {"iscrowd": iscrowd, "bboxes": [[1.0, 1.0, 5.0, 5.0] if p else None for p in row], "areas": [None] * length}
        for row in present
    ]
    return {"height": height, "width": WIDTH, "length": length, "instances": instances}


def test_sampling_items_are_annotated_frames_of_large_enough_videos():
    videos = [
        _video(4, [[True, False, False, True], [False, False, True, False]]),
        _video(3, [[True, True, True]], height=20),  # short side < 32: filtered
        _video(3, [[True, True, True]], iscrowd=True),  # crowd instances are not targets
        _video(2, [[True, True]]),
    ]
    videos[3]["instances"][0]["bboxes"][1] = [1.0, 1.0, 0.5, 5.0]  # w < 1: not usable
    items, annotated = build_sampling_items(videos, min_size=32)
    assert annotated == [[0, 2, 3], [], [], [0]]
    assert items == [(0, 0), (0, 2), (0, 3), (3, 0)]


def test_random_mode_puts_the_reference_first_then_distinct_annotated_frames():
    annotated = [0, 2, 3, 5, 8, 9]
    orders = set()
    for seed in range(20):
        frames = sample_clip_frames(np.random.default_rng(seed), 3, annotated, length=10, clip_length=4)
        assert frames[0] == 3 and len(set(frames)) == 4 and set(frames) <= set(annotated)
        orders.add(tuple(frames[1:]) == tuple(sorted(frames[1:])))
    assert orders == {True, False}, "the other frames come in random order"
    window = sample_clip_frames(np.random.default_rng(0), 8, annotated, length=10, clip_length=4, mode="window")
    assert window == [6, 7, 8, 9]
    with pytest.raises(ValueError, match="needs more frames"):
        sample_clip_frames(np.random.default_rng(0), 0, [0, 1], length=10, clip_length=3)


def test_clip_transform_draws_in_range_and_value_modes():
    rng = np.random.default_rng(0)
    range_draws = [sample_clip_transform(rng, [(640, 360), (960, 480)], "range") for _ in range(200)]
    longs, shorts = [t.scale[0] for t in range_draws], [t.scale[1] for t in range_draws]
    assert 640 <= min(longs) < 700 and 900 < max(longs) <= 960 and 360 <= min(shorts) and max(shorts) <= 480
    assert 0.35 < np.mean([t.flip for t in range_draws]) < 0.65
    value_draws = {sample_clip_transform(rng, [(640, 360), (960, 480)], "value").scale for _ in range(50)}
    assert value_draws == {(640, 360), (960, 480)}
    with pytest.raises(ValueError, match="scale_mode"):
        sample_clip_transform(rng, [(640, 360)], "linear")


def test_clip_dataset_follows_the_official_sampling(loaded):
    dataset, _ = loaded
    clips = YouTubeVISClipDataset(dataset, clip_length=3, scales=TINY_SCALES, seed=0)
    assert len(clips) == len(clips.items) > 0
    for index in range(len(clips)):
        video_index, reference = clips.items[index]
        metadata = clips[index]["metadata"]
        frames = metadata["frame_indices"].tolist()
        assert metadata["video_id"] == dataset[video_index]["video_id"]
        assert frames[0] == reference and len(set(frames)) == 3
        assert set(frames) <= set(clips.annotated_frames[video_index])


def test_videos_with_too_few_annotated_frames_are_replaced_and_named(tmp_path, raw, loaded, caplog):
    data = copy.deepcopy(raw)
    for annotation in data["annotations"]:
        if annotation["video_id"] == 2:  # keep only frames 0 and 1 of video 2
            for key in ("segmentations", "bboxes", "areas"):
                annotation[key] = annotation[key][:2] + [None] * (NUM_FRAMES - 2)
    dataset, _ = load_youtube_vis(_write_variant(tmp_path, data), frames_dir=loaded[1].frames_dir)
    with caplog.at_level("WARNING"):
        clips = YouTubeVISClipDataset(dataset, clip_length=3, scales=TINY_SCALES, seed=0)
    assert "1 of" in caplog.text and "never sampled" in caplog.text and "video ids [2]" in caplog.text
    short_items = [index for index, (video_index, _) in enumerate(clips.items) if video_index == 1]
    assert short_items, "video 2 keeps annotated items"
    for index in short_items:
        assert clips[index]["metadata"]["video_id"] != 2


def test_samples_depend_only_on_seed_epoch_and_index(loaded):
    dataset, _ = loaded
    clips = YouTubeVISClipDataset(dataset, clip_length=3, scales=TINY_SCALES, seed=3)
    other = YouTubeVISClipDataset(dataset, clip_length=3, scales=TINY_SCALES, seed=3)
    reference = [clips[index]["metadata"] for index in range(len(clips))]
    reversed_order = [other[index]["metadata"] for index in reversed(range(len(other)))][::-1]
    assert _metadata_key(reference) == _metadata_key(reversed_order)
    clips.set_epoch(1)
    assert _metadata_key([clips[index]["metadata"] for index in range(len(clips))]) != _metadata_key(reference)
    clips.set_epoch(0)
    assert _metadata_key([clips[index]["metadata"] for index in range(len(clips))]) == _metadata_key(reference)


def _metadata_key(metadata: list[dict]) -> list[tuple]:
    return [(m["video_id"], tuple(m["frame_indices"].tolist()), m["scale"], m["flipped"]) for m in metadata]


def test_window_mode_gives_consecutive_frames(loaded):
    dataset, _ = loaded
    clips = YouTubeVISClipDataset(dataset, clip_length=4, sampling_mode="window", scales=TINY_SCALES, seed=0)
    for index in range(0, len(clips), 3):
        frames = clips[index]["metadata"]["frame_indices"].tolist()
        assert frames == list(range(frames[0], frames[0] + 4))
        assert frames[0] == min(clips.items[index][1], NUM_FRAMES - 4)


# ----------------------------------------------------------------------------------------------------------------
# Targets and transforms
# ----------------------------------------------------------------------------------------------------------------
def test_labels_have_the_model_format(loaded):
    dataset, info = loaded
    clips = YouTubeVISClipDataset(dataset, clip_length=3, scales=TINY_SCALES, seed=0)
    videos_by_id = {video["video_id"]: video for video in dataset}
    for index in range(0, len(clips), 2):
        sample = clips[index]
        pixel_values, pixel_mask, labels = sample["pixel_values"], sample["pixel_mask"], sample["labels"]
        _, _, padded_height, padded_width = pixel_values.shape
        assert pixel_values.shape[:2] == (3, 3) and pixel_values.dtype == torch.float32
        assert padded_height % 32 == 0 and padded_width % 32 == 0
        assert pixel_mask.shape == (padded_height, padded_width) and pixel_mask.dtype == torch.long
        assert set(labels) == {"class_labels", "boxes", "masks", "valid"}
        num_instances = labels["class_labels"].shape[0]
        assert num_instances >= 1 and labels["class_labels"].dtype == torch.long
        assert labels["boxes"].shape == (3, num_instances, 4) and labels["boxes"].dtype == torch.float32
        assert labels["masks"].shape == (3, num_instances, padded_height, padded_width)
        assert labels["masks"].dtype == torch.bool and labels["valid"].dtype == torch.bool
        assert labels["valid"].shape == (3, num_instances) and labels["valid"][0].any(), "reference frame annotated"
        height, width = sample["metadata"]["image_size"].tolist()
        assert pixel_mask[:height, :width].all() and pixel_mask.sum() == height * width
        valid = labels["valid"]
        assert (labels["boxes"][~valid] == 0).all() and not labels["masks"][~valid].any()
        assert ((labels["boxes"][valid] > 0) & (labels["boxes"][valid] <= 1)).all()
        assert not labels["masks"][..., height:, :].any() and not labels["masks"][..., width:].any()
        # Instance k is the same annotation in every frame: its class is that annotation's category.
        video = videos_by_id[sample["metadata"]["video_id"]]
        by_id = {instance["id"]: instance for instance in video["instances"]}
        ids = sample["metadata"]["instance_ids"].tolist()
        assert ids == sorted(ids)
        frames = sample["metadata"]["frame_indices"].tolist()
        for k, instance_id in enumerate(ids):
            assert info.category_id2label[by_id[instance_id]["category_id"]] == labels["class_labels"][k]
            assert valid[:, k].tolist() == [by_id[instance_id]["bboxes"][f] is not None for f in frames]


def test_identity_scale_reproduces_frames_and_ground_truth_masks(loaded, raw):
    dataset, _ = loaded
    video = dataset[0]
    sample = build_clip_sample(
        video, [4, 1, 2], ClipTransform(scale=(WIDTH, HEIGHT), flip=False), TeViTImageProcessor()
    )
    assert sample["metadata"]["image_size"].tolist() == [HEIGHT, WIDTH]
    frames = torch.from_numpy(load_video_frames(video, [4, 1, 2])).permute(0, 3, 1, 2).float()
    restored = _unnormalise(sample["pixel_values"][:, :, :HEIGHT, :WIDTH])
    torch.testing.assert_close(restored, frames, atol=1e-3, rtol=0)
    labels = sample["labels"]
    annotations = {a["id"]: a for a in raw["annotations"] if a["video_id"] == video["video_id"]}
    for k, instance_id in enumerate(sample["metadata"]["instance_ids"].tolist()):
        for t, frame_index in enumerate([4, 1, 2]):
            segmentation = annotations[instance_id]["segmentations"][frame_index]
            if segmentation is None:
                assert not labels["valid"][t, k]
                continue
            expected = mask_utils.decode({**segmentation, "counts": segmentation["counts"].encode()}).astype(bool)
            np.testing.assert_array_equal(labels["masks"][t, k, :HEIGHT, :WIDTH].numpy(), expected)
            x, y, w, h = annotations[instance_id]["bboxes"][frame_index]
            expected_box = torch.tensor([(x + w / 2) / WIDTH, (y + h / 2) / HEIGHT, w / WIDTH, h / HEIGHT])
            torch.testing.assert_close(labels["boxes"][t, k], expected_box)


def test_flip_and_scale_are_shared_by_every_frame_of_a_clip(loaded):
    dataset, _ = loaded
    video, frames = dataset[1], [0, 3, 5]
    scale = (130, 90)  # 64x96 -> 87x130 (keep ratio, long side bound)
    processor = TeViTImageProcessor()
    plain = build_clip_sample(video, frames, ClipTransform(scale=scale, flip=False), processor)
    flipped = build_clip_sample(video, frames, ClipTransform(scale=scale, flip=True), processor)
    height, width = plain["metadata"]["image_size"].tolist()
    assert (height, width) == (87, 130) == tuple(flipped["metadata"]["image_size"].tolist())
    torch.testing.assert_close(
        flipped["pixel_values"][..., :height, :width],
        plain["pixel_values"][..., :height, :width].flip(-1),
        atol=1e-4,
        rtol=0,
    )
    masks_plain, masks_flipped = plain["labels"]["masks"], flipped["labels"]["masks"]
    assert torch.equal(masks_flipped[..., :height, :width], masks_plain[..., :height, :width].flip(-1))
    boxes_plain, boxes_flipped = plain["labels"]["boxes"], flipped["labels"]["boxes"]
    valid = plain["labels"]["valid"]
    torch.testing.assert_close(boxes_flipped[..., 0][valid], 1 - boxes_plain[..., 0][valid])
    torch.testing.assert_close(boxes_flipped[..., 1:][valid], boxes_plain[..., 1:][valid])
    # In every frame, each box encloses its mask at the resized resolution (one pixel of nearest-resize slack).
    for sample in (plain, flipped):
        for t, k in sample["labels"]["valid"].nonzero().tolist():
            ys, xs = sample["labels"]["masks"][t, k].nonzero(as_tuple=True)
            cx, cy, w, h = (sample["labels"]["boxes"][t, k] * torch.tensor([width, height, width, height])).tolist()
            assert abs(xs.min() - (cx - w / 2)) <= 1.5 and abs(xs.max() + 1 - (cx + w / 2)) <= 1.5
            assert abs(ys.min() - (cy - h / 2)) <= 1.5 and abs(ys.max() + 1 - (cy + h / 2)) <= 1.5


# ----------------------------------------------------------------------------------------------------------------
# Collate, DataLoader, model
# ----------------------------------------------------------------------------------------------------------------
def test_collate_pads_clips_of_different_sizes(loaded):
    dataset, _ = loaded
    processor = TeViTImageProcessor()
    small = build_clip_sample(dataset[0], [0, 1], ClipTransform(scale=(96, 64), flip=False), processor)
    large = build_clip_sample(dataset[2], [2, 3], ClipTransform(scale=(160, 100), flip=True), processor)
    batch = collate_clips([small, large], return_metadata=True)
    assert batch["pixel_values"].shape == (2, 2, 3, 128, 160) and batch["pixel_mask"].shape == (2, 128, 160)
    assert batch["pixel_mask"][0].sum() == 64 * 96 and batch["pixel_mask"][1].sum() == 100 * 150
    assert torch.equal(batch["pixel_values"][0, ..., :64, :96], small["pixel_values"][..., :64, :96])
    assert (batch["pixel_values"][0, ..., 64:, :] == 0).all()
    for sample, labels in zip([small, large], batch["labels"]):
        assert labels["masks"].shape[-2:] == (128, 160)
        height, width = sample["labels"]["masks"].shape[-2:]
        assert torch.equal(labels["masks"][..., :height, :width], sample["labels"]["masks"])
        assert torch.equal(labels["boxes"], sample["labels"]["boxes"])
    assert [m["video_id"] for m in batch["metadata"]] == [1, 3]
    assert set(collate_clips([small])) == {"pixel_values", "pixel_mask", "labels"}
    three = build_clip_sample(dataset[0], [0, 1, 2], ClipTransform(scale=(96, 64), flip=False), processor)
    with pytest.raises(ValueError, match="same number of frames"):
        collate_clips([small, three])


def test_two_worker_dataloader_matches_single_process(loaded):
    dataset, _ = loaded
    clips = YouTubeVISClipDataset(dataset, clip_length=3, scales=TINY_SCALES, seed=0)
    clips.set_epoch(2)
    subset = torch.utils.data.Subset(clips, range(6))
    options = {"batch_size": 2, "shuffle": False, "collate_fn": ClipCollator(return_metadata=True)}
    serial = list(DataLoader(subset, num_workers=0, **options))
    parallel = list(DataLoader(subset, num_workers=2, **options))
    assert len(serial) == len(parallel) == 3
    for left, right in zip(serial, parallel):
        # Sampling is exact; pixels may differ by one uint8 level where the bilinear resize lands on .5, because
        # torch's interpolate rounds differently with the workers' single thread.
        one_level = (1 / 255) / min(TeViTImageProcessor().image_std) + 1e-6
        torch.testing.assert_close(left["pixel_values"], right["pixel_values"], atol=one_level, rtol=0)
        for left_labels, right_labels in zip(left["labels"], right["labels"]):
            assert all(torch.equal(left_labels[key], right_labels[key]) for key in left_labels)
        assert _metadata_key(left["metadata"]) == _metadata_key(right["metadata"])


def test_model_accepts_a_collated_batch(loaded):
    from tevit_hf import TeViTForVideoInstanceSegmentation

    dataset, info = loaded
    torch.manual_seed(0)
    config = TeViTConfig(
        backbone_hidden_sizes=[8, 16, 24, 32], backbone_num_attention_heads=[1, 1, 1, 1], backbone_mlp_ratios=[2, 2, 2, 2],
        hidden_size=32, head_num_attention_heads=4, head_ffn_dim=64, dynamic_conv_dim=8, mask_conv_dim=16, num_queries=10,
        num_head_stages=2, num_messenger_tokens=8, id2label=info.id2label, num_selected_instances=5,
    )  # fmt: skip
    clips = YouTubeVISClipDataset(dataset, clip_length=2, scales=TINY_SCALES, seed=0)
    batch = collate_clips([clips[0], clips[5]])
    outputs = TeViTForVideoInstanceSegmentation(config)(**batch)
    assert torch.isfinite(outputs.loss)


# ----------------------------------------------------------------------------------------------------------------
# Bad data
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda d: d.pop("videos"), r"missing top-level key 'videos'"),
        (lambda d: d["videos"][1].pop("height"), r"video 2 is missing field 'height'"),
        (lambda d: d["annotations"][0].pop("bboxes"), r"video 1, annotation 1 is missing field 'bboxes'"),
        (lambda d: d["annotations"][0].update(category_id=99), r"video 1, annotation 1: field 'category_id' is 99"),
        (lambda d: d["annotations"][0].update(video_id=42), r"video 42, annotation 1: field 'video_id'"),
        (
            lambda d: d["annotations"][0]["bboxes"].pop(),
            rf"video 1, annotation 1: field 'bboxes' must have one entry per frame \({NUM_FRAMES}\), got {NUM_FRAMES - 1}",
        ),
        (
            lambda d: next(s for s in d["annotations"][0]["segmentations"] if s).update(size=[32, 48]),
            r"video 1, annotation 1: field 'segmentations' frame \d+ has size \[32, 48\] but the video is \[64, 96\]",
        ),
        (lambda d: d["videos"][0].update(length=3), r"video 1: field 'length' is 3 but 'file_names' has 6"),
    ],
)
def test_bad_annotations_raise_errors_naming_video_and_field(tmp_path, raw, mutate, pattern):
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(VisDataError, match=pattern):
        load_youtube_vis(_write_variant(tmp_path, data), frames_dir=tmp_path)


def test_mask_decoded_with_a_wrong_size_raises():
    polygon = [[1.0, 1.0, 10.0, 1.0, 10.0, 10.0]]
    segmentation = {
        "size": [32, 48],
        "counts": mask_utils.encode(np.zeros((32, 48), np.uint8, order="F"))["counts"].decode(),
    }
    with pytest.raises(
        VisDataError, match=r"video 7, frame 2: mask size \[32, 48\] disagrees with the video \[64, 96\]"
    ):
        decode_segmentation(segmentation, 64, 96, where="video 7, frame 2")
    assert decode_segmentation(polygon, 64, 96).shape == (64, 96)


def test_missing_frame_file_is_reported_or_skipped(tmp_path, raw, loaded, caplog):
    frames_dir = Path(loaded[1].frames_dir)
    copied = tmp_path / "frames"
    for file_name in (name for video in raw["videos"] for name in video["file_names"]):
        (copied / file_name).parent.mkdir(parents=True, exist_ok=True)
        (copied / file_name).write_bytes((frames_dir / file_name).read_bytes())
    missing = raw["videos"][1]["file_names"][3]
    (copied / missing).unlink()
    annotation_path = _write_variant(tmp_path, raw)
    with pytest.raises(VisDataError, match=rf"video 2: frame file '{missing}' \(field 'file_names'\) not found"):
        load_youtube_vis(annotation_path, frames_dir=copied, check_frames=True)

    dataset, _ = load_youtube_vis(annotation_path, frames_dir=copied)
    clips = YouTubeVISClipDataset(dataset, clip_length=NUM_FRAMES, sampling_mode="window", scales=TINY_SCALES, seed=0)
    broken = next(index for index, (video_index, _) in enumerate(clips.items) if video_index == 1)
    with pytest.raises(FileNotFoundError, match=rf"video 2: frame 3 file '{missing}'"):
        clips[broken]
    skipping = YouTubeVISClipDataset(
        dataset, clip_length=NUM_FRAMES, sampling_mode="window", scales=TINY_SCALES, seed=0, skip_bad_clips=True
    )
    with caplog.at_level(logging.WARNING, logger="tevit_hf.data.clip_dataset"):
        sample = skipping[broken]
    assert sample["metadata"]["video_id"] != 2
    assert "skipping a bad clip of video 2" in caplog.text
