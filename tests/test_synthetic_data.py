"""Tests of the synthetic YouTube-VIS generator (`tevit_hf.data.synthetic`, `tevit-hf make-synthetic`)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tevit_hf.commands.cli import main as cli_main
from tevit_hf.data.synthetic import (
    CLASS_COLOURS,
    SHAPE_CLASSES,
    SyntheticSplits,
    SyntheticVisConfig,
    generate_synthetic_vis_dataset,
    render_synthetic_video,
)


TINY = {"num_videos": 3, "num_frames": 6, "height": 64, "width": 96, "num_classes": 4, "max_instances": 3}


def _decode(segmentation: dict) -> np.ndarray:
    return mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")})


def _dataset_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return generate_synthetic_vis_dataset(tmp_path_factory.mktemp("synthetic"), seed=0, mp4="none", **TINY)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, tiny_dataset):
    again = generate_synthetic_vis_dataset(tmp_path / "again", seed=0, mp4="none", **TINY)
    first_files, again_files = _dataset_files(tiny_dataset.parent), _dataset_files(again.parent)
    assert sorted(first_files) == sorted(again_files)
    assert len([name for name in first_files if name.endswith(".jpg")]) == TINY["num_videos"] * TINY["num_frames"]
    assert first_files == again_files

    other = generate_synthetic_vis_dataset(tmp_path / "other", seed=1, mp4="none", **TINY)
    assert other.read_bytes() != tiny_dataset.read_bytes()
    first_frame = "JPEGImages/video_00000/00000.jpg"
    assert _dataset_files(other.parent)[first_frame] != first_files[first_frame]


def test_json_has_youtube_vis_structure_and_decodes_with_pycocotools(tiny_dataset):
    data = json.loads(tiny_dataset.read_text())
    assert set(data) >= {"info", "videos", "annotations", "categories"}
    assert [category["id"] for category in data["categories"]] == [1, 2, 3, 4]
    assert [category["name"] for category in data["categories"]] == list(SHAPE_CLASSES[:4])
    assert [video["id"] for video in data["videos"]] == [1, 2, 3]
    frames_root = tiny_dataset.parent / "JPEGImages"
    for video in data["videos"]:
        assert (video["height"], video["width"], video["length"]) == (64, 96, 6)
        assert len(video["file_names"]) == 6
        with Image.open(frames_root / video["file_names"][0]) as image:
            assert image.size == (96, 64) and image.mode == "RGB"
    assert [annotation["id"] for annotation in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    for annotation in data["annotations"]:
        assert 1 <= annotation["category_id"] <= 4 and annotation["iscrowd"] == 0
        assert len(annotation["segmentations"]) == len(annotation["bboxes"]) == len(annotation["areas"]) == 6
        assert any(segmentation is not None for segmentation in annotation["segmentations"])
        for segmentation, box, area in zip(annotation["segmentations"], annotation["bboxes"], annotation["areas"]):
            assert (segmentation is None) == (box is None) == (area is None)
            if segmentation is None:
                continue
            assert isinstance(segmentation["counts"], str) and segmentation["size"] == [64, 96]
            mask = _decode(segmentation)
            ys, xs = np.nonzero(mask)
            assert area == mask.sum() > 0
            assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_annotations_are_the_visible_parts_under_z_order():
    config = SyntheticVisConfig(**TINY, seed=0, mp4="none")
    overlaps_seen = 0
    for video_index in range(6):
        video = render_synthetic_video(config, video_index)
        full, visible = video.full_masks, video.visible_masks
        assert visible.dtype == bool and visible.shape == full.shape == (len(video.tracks), 6, 64, 96)
        for instance in range(len(video.tracks)):
            above = full[instance + 1 :].any(axis=0)
            np.testing.assert_array_equal(visible[instance], full[instance] & ~above)
        assert (visible.sum(axis=0) <= 1).all(), "visible parts of different instances must not overlap"
        overlaps_seen += int((visible.sum() < full.sum()) and (full.sum(axis=0) > 1).any())
    assert overlaps_seen >= 1, "no occlusion happened in 6 videos"


def test_json_segmentations_equal_the_rendered_visible_masks(tiny_dataset):
    data = json.loads(tiny_dataset.read_text())
    config = SyntheticVisConfig(**TINY, seed=0, mp4="none")
    for video_index in range(TINY["num_videos"]):
        video = render_synthetic_video(config, video_index)
        annotations = [a for a in data["annotations"] if a["video_id"] == video_index + 1]
        assert [a["category_id"] for a in annotations] == [t.category_index + 1 for t in video.tracks]
        for annotation, visible in zip(annotations, video.visible_masks):
            for segmentation, mask in zip(annotation["segmentations"], visible):
                if segmentation is None:
                    assert not mask.any()
                else:
                    np.testing.assert_array_equal(_decode(segmentation).astype(bool), mask)


def test_instances_enter_and_leave_the_frame(tmp_path):
    annotation_file = generate_synthetic_vis_dataset(tmp_path, seed=0, mp4="none", **{**TINY, "num_videos": 8})
    presence = [
        [segmentation is not None for segmentation in annotation["segmentations"]]
        for annotation in json.loads(annotation_file.read_text())["annotations"]
    ]
    entering = [p for p in presence if not p[0] and any(p)]
    leaving = [p for p in presence if p[0] and not p[-1]]
    always = [p for p in presence if all(p)]
    assert entering and leaving and always, presence


def test_frames_show_the_instances_on_a_textured_background():
    config = SyntheticVisConfig(**TINY, seed=0, mp4="none")
    video = render_synthetic_video(config, 0)
    assert video.frames.shape == (6, 64, 96, 3) and video.frames.dtype == np.uint8
    background = ~video.full_masks.any(axis=0)  # (T, H, W)
    assert video.frames[background].std(axis=0).mean() > 5, "background should be textured, not flat"
    for track, full in zip(video.tracks, video.full_masks):
        pixels = video.frames[full].astype(int)
        if len(pixels) == 0:
            continue
        nearest = np.minimum(
            np.abs(pixels - np.array(track.colours[0])).sum(-1), np.abs(pixels - np.array(track.colours[1])).sum(-1)
        )
        # The frame noise is small: every pixel of the full shape shows one of the instance's two colours if on top.
        on_top = video.visible_masks[video.tracks.index(track)][full]
        assert np.median(nearest[on_top]) < 30


def test_class_colours_give_each_class_its_main_colour_and_default_colours_stay_random():
    config = SyntheticVisConfig(**{**TINY, "num_videos": 1}, seed=0, mp4="none", class_colours=True)
    tracks = [track for index in range(12) for track in render_synthetic_video(config, index).tracks]
    assert {track.category_index for track in tracks} == set(range(TINY["num_classes"]))
    for track in tracks:
        distance = np.abs(np.array(track.colours[0]) - np.array(CLASS_COLOURS[track.category_index])).max()
        assert distance <= config.class_colour_jitter
        assert np.abs(np.array(track.colours[0]) - np.array(track.colours[1])).sum() >= config.min_colour_contrast
    default = SyntheticVisConfig(**{**TINY, "num_videos": 1}, seed=0, mp4="none")
    random_tracks = [track for index in range(12) for track in render_synthetic_video(default, index).tracks]
    far = [
        np.abs(np.array(track.colours[0]) - np.array(CLASS_COLOURS[track.category_index])).max()
        > default.class_colour_jitter
        for track in random_tracks
    ]
    assert sum(far) > len(far) // 2, "without class_colours the colours must not follow the class"


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticVisConfig(num_classes=len(SHAPE_CLASSES) + 1)
    with pytest.raises(ValueError, match="min_instances"):
        SyntheticVisConfig(min_instances=3, max_instances=2)
    with pytest.raises(ValueError, match="mp4"):
        SyntheticVisConfig(mp4="some")


def test_cli_make_synthetic_writes_train_and_val_splits_with_train_py_defaults(tmp_path):
    output_dir = tmp_path / "cli"
    arguments = ["make-synthetic", "--output-dir", str(output_dir), "--num-train-videos", "2", "--num-val-videos", "1"]
    arguments += ["--num-frames", "4", "--height", "64", "--width", "96", "--num-classes", "3", "--seed", "5"]
    assert cli_main(arguments + ["--class-colours", "--mp4", "first"]) == 0
    train = json.loads((output_dir / "train" / "annotations.json").read_text())
    val = json.loads((output_dir / "val" / "annotations.json").read_text())
    assert train["info"]["config"]["class_colours"] is True
    assert len(train["videos"]) == 2 and len(val["videos"]) == 1 and len(train["categories"]) == 3
    assert val["info"]["config"]["seed"] != train["info"]["config"]["seed"]  # unseen validation videos
    assert (output_dir / "train" / "JPEGImages" / "video_00001" / "00003.jpg").is_file()
    mp4_files = sorted(path.name for path in (output_dir / "train" / "videos").iterdir())
    assert mp4_files == ["video_00000.mp4"]
    with av.open(str(output_dir / "train" / "videos" / "video_00000.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (64, 96, 3)
    assert not list(output_dir.rglob(".*tmp*")), "temporary files must not be left behind"


def test_make_synthetic_and_train_py_share_defaults_and_data(tmp_path):
    """`train.py --synthetic --synthetic_dir` reuses a make-synthetic folder made with the same settings, and refuses
    (naming the settings) one made with others instead of writing over it."""
    from tevit_hf.training.arguments import parse_arguments
    from tevit_hf.training.data_setup import TrainingDataError, prepare_synthetic_data

    data = tmp_path / "data"
    assert (
        cli_main(["make-synthetic", "--output-dir", str(data), "--num-train-videos", "2", "--num-val-videos", "1"])
        == 0
    )
    args = parse_arguments(["--output_dir", str(tmp_path / "run"), "--synthetic", "--synthetic_dir", str(data)])
    defaults = SyntheticSplits()
    assert (args.synthetic_num_frames, args.synthetic_height, args.synthetic_width, args.synthetic_num_classes) == (
        defaults.num_frames,
        defaults.height,
        defaults.width,
        defaults.num_classes,
    )
    before = {path: path.stat().st_mtime_ns for path in data.rglob("*")}
    same = SyntheticSplits(num_train_videos=2, num_val_videos=1)
    paths = prepare_synthetic_data(data, same, is_main_process=True, replace_other=False)
    assert paths.train_annotations == str(data / "train" / "annotations.json")
    assert {path: path.stat().st_mtime_ns for path in data.rglob("*")} == before  # reused, not rewritten
    other = SyntheticSplits(num_train_videos=2, num_val_videos=1, num_frames=5)
    with pytest.raises(TrainingDataError, match="num_frames: 8 there, 5 asked"):
        prepare_synthetic_data(data, other, is_main_process=True, replace_other=False)
    assert {path: path.stat().st_mtime_ns for path in data.rglob("*")} == before


@pytest.mark.parametrize("same_settings", [True, False])
def test_a_split_published_meanwhile_by_another_run_is_kept(tmp_path, monkeypatch, same_settings):
    """Side-by-side runs (one ablation runner per seed) generating one --synthetic_dir at once: the run that finishes
    second keeps and uses the first one's identical split; a different dataset published meanwhile is never replaced."""
    from tevit_hf.errors import OutputExistsError
    from tevit_hf.training import data_setup

    data = tmp_path / "data"
    splits = SyntheticSplits(num_train_videos=2, num_val_videos=1)
    other = SyntheticSplits(num_train_videos=2, num_val_videos=1, num_frames=5)
    real_writer = data_setup.write_synthetic_vis_dataset
    published = {}

    def write_while_another_run_publishes(config, staging):
        split = Path(staging).parent / ("train" if config.num_videos == 2 else "val")
        if not published.get(split.name):  # the other run publishes this split while ours is being written
            published[split.name] = True
            another = (splits if same_settings else other).configs()[split.name]
            with data_setup.staged_directory(split) as their_staging:
                real_writer(another, their_staging)
            published[split.name] = split.stat().st_ino
        return real_writer(config, staging)

    monkeypatch.setattr(data_setup, "write_synthetic_vis_dataset", write_while_another_run_publishes)
    if same_settings:
        data_setup.prepare_synthetic_data(data, splits, is_main_process=True, replace_other=False)
        # Their folders stay in place (a reader of them never sees them vanish): the same inodes.
        assert published == {name: (data / name).stat().st_ino for name in ("train", "val")}
    else:
        with pytest.raises(OutputExistsError, match="already holds earlier work"):
            data_setup.prepare_synthetic_data(data, splits, is_main_process=True, replace_other=False)
        theirs = data_setup.recorded_config(data / "train")
        assert not data_setup.config_differences(other.configs()["train"], theirs)  # untouched
    assert not list(data.glob(".*tmp*")), "no staging folder is left behind"


def test_a_synthetic_dir_holding_other_files_is_refused(tmp_path):
    from tevit_hf.training.data_setup import TrainingDataError, prepare_synthetic_data

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "notes.txt").write_text("mine")
    with pytest.raises(TrainingDataError, match=r"data/train holds files that are not a synthetic dataset"):
        prepare_synthetic_data(data, SyntheticSplits(num_train_videos=2, num_val_videos=1), True, replace_other=False)
    assert [path.name for path in (data / "train").iterdir()] == ["notes.txt"]
