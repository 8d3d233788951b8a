"""`tevit-hf predict`: results.json, overlay video, summary table, options and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_cli_error
from hub_fixtures import CLASS_NAMES, moving_shapes, save_tiny_hub_folder, write_frame_folder, write_mp4

from tevit_hf.commands.cli import main
from tevit_hf.commands.predict import results_to_youtube_vis
from tevit_hf.image_processing_tevit import decode_mask_rle
from tevit_hf.model_loading import load_pipeline
from tevit_hf.video_io import probe_video


NUM_FRAMES = 9


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_hub_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("video") / "shapes.mp4", moving_shapes(NUM_FRAMES))


def test_predict_writes_results_overlay_and_prints_a_summary(model_dir, video_path, tmp_path, capsys):
    output_dir = tmp_path / "out"
    argv = ["predict", str(video_path), "--model", str(model_dir), "--output-dir", str(output_dir)]
    assert main([*argv, "--clip-length", "4", "--stride", "2"]) == 0

    payload = json.loads((output_dir / "results.json").read_text())
    assert payload["num_frames"] == NUM_FRAMES and (payload["height"], payload["width"]) == (48, 64)
    assert payload["clip_length"] == 4 and payload["stride"] == 2 and payload["video"] == str(video_path)
    assert payload["instances"], "the tiny model always returns its top-k"
    for instance in payload["instances"]:
        assert instance["label"] == CLASS_NAMES[instance["label_id"]]
        assert len(instance["boxes"]) == len(instance["segmentations"]) == NUM_FRAMES
        for box, rle in zip(instance["boxes"], instance["segmentations"]):
            assert (box is None) == (rle is None)
            if rle is not None:
                assert decode_mask_rle(rle).shape == (48, 64) and len(box) == 4

    # The same instances the pipeline returns.
    expected = load_pipeline(model_dir)(str(video_path), clip_length=4, stride=2, return_rle=True)
    assert [i["id"] for i in payload["instances"]] == [i["id"] for i in expected]
    np.testing.assert_allclose([i["score"] for i in payload["instances"]], [i["score"] for i in expected], rtol=1e-6)

    overlay = probe_video(output_dir / "overlay.mp4")
    assert overlay.num_frames == NUM_FRAMES and (overlay.height, overlay.width) == (48, 64)

    printed = capsys.readouterr().out
    assert f"{len(payload['instances'])} instances in {NUM_FRAMES} frames (64x48)" in printed
    assert "id  label" in printed and "results: " in printed and "overlay: " in printed
    for instance in payload["instances"]:
        assert f"{instance['score']:.3f}" in printed


def test_frame_folder_gif_overlay_threshold_and_dtype(model_dir, tmp_path):
    frames = moving_shapes(NUM_FRAMES)
    write_frame_folder(tmp_path / "frames", frames)
    output_dir = tmp_path / "out"
    argv = ["predict", str(tmp_path / "frames"), "--model", str(model_dir), "--output-dir", str(output_dir)]
    assert main([*argv, "--overlay-format", "gif", "--threshold", "0.1", "--dtype", "bfloat16"]) == 0
    payload = json.loads((output_dir / "results.json").read_text())
    assert payload["fps"] is None and payload["threshold"] == 0.1
    assert all(instance["score"] >= 0.1 for instance in payload["instances"])
    assert (output_dir / "overlay.gif").is_file() and not (output_dir / "overlay.mp4").exists()
    assert probe_video(output_dir / "overlay.gif").num_frames == NUM_FRAMES


def test_results_convert_to_youtube_vis_entries(model_dir, video_path, tmp_path):
    main(["predict", str(video_path), "--model", str(model_dir), "--output-dir", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    entries = results_to_youtube_vis(payload, video_id=7, label_to_category_id={0: 10, 1: 11, 2: 12})
    assert [entry["category_id"] for entry in entries] == [10 + i["label_id"] for i in payload["instances"]]
    assert all(entry["video_id"] == 7 and len(entry["segmentations"]) == NUM_FRAMES for entry in entries)
    with pytest.raises(ValueError, match="no category id"):
        results_to_youtube_vis(payload, video_id=7, label_to_category_id={})


def test_missing_inputs_fail_clearly(model_dir, video_path, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert_cli_error(
        capsys,
        ["predict", str(tmp_path / "missing.mp4"), "--model", str(model_dir), "--output-dir", out],
        "missing.mp4",
    )
    assert_cli_error(
        capsys, ["predict", str(video_path), "--model", str(tmp_path / "nowhere"), "--output-dir", out], "nowhere"
    )
    arguments = ["predict", str(video_path), "--model", str(model_dir), "--clip-length", "3", "--stride", "4"]
    assert_cli_error(capsys, [*arguments, "--output-dir", out], "stride")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_summary_frames_are_the_frames_where_the_object_is_visible():
    """A track with a prediction in every frame but an empty mask in the first and last: "first"/"last" and the
    frame count of the summary are where the object is visible; results.json has null masks and boxes elsewhere."""
    from tevit_hf.commands.predict import build_results_payload, format_summary_table
    from tevit_hf.masks_tevit import encode_masks_rle

    masks = np.zeros((5, 8, 8), dtype=bool)
    masks[1:4, 2:5, 2:5] = True
    instance = {
        "id": 0,
        "label": "circle",
        "label_id": 0,
        "score": 0.9,
        "boxes": np.tile(np.array([[2.0, 2.0, 5.0, 5.0]]), (5, 1)),
        "frame_valid": np.ones(5, dtype=bool),
        "visible": masks.any(axis=(1, 2)),
        "segmentations": encode_masks_rle(masks),
    }
    payload = build_results_payload([instance], "v.mp4", 5, None, (8, 8), {0: "circle"})
    (entry,) = payload["instances"]
    assert [rle is not None for rle in entry["segmentations"]] == [False, True, True, True, False]
    assert [box is not None for box in entry["boxes"]] == [False, True, True, True, False]
    row = format_summary_table(payload).splitlines()[-1].split()
    assert row[-3:] == ["3", "1", "3"]  # frames, first, last


def test_results_json_is_streamed_one_instance_at_a_time_and_reads_back_whole(tmp_path):
    from tevit_hf.commands.predict import build_results_payload, write_results_json
    from tevit_hf.masks_tevit import encode_masks_rle

    rng = np.random.default_rng(0)
    instances = []
    for index in range(3):
        masks = rng.random((4, 6, 7)) > 0.5
        instances.append(
            {
                "id": index,
                "label": "circle",
                "label_id": 0,
                "score": 0.5 + index / 10,
                "boxes": rng.random((4, 4)) * 6,
                "frame_valid": np.ones(4, dtype=bool),
                "visible": masks.any(axis=(1, 2)),
                "segmentations": encode_masks_rle(masks),
            }
        )
    payload = build_results_payload(instances, "v.mp4", 4, 24.0, (6, 7), {0: "circle"}, settings={"stride": 2})
    path = write_results_json(tmp_path / "results.json", payload)
    expected = {**payload, "instances": list(payload["instances"])}
    assert json.loads(path.read_text()) == json.loads(json.dumps(expected))
    empty = write_results_json(tmp_path / "empty.json", build_results_payload([], "v.mp4", 4, None, (6, 7), {}))
    assert json.loads(empty.read_text())["instances"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json", "results.json"]  # no temporary files left


def test_model_demo_selects_the_bundled_model(tmp_path, monkeypatch):
    from tevit_hf.commands.demo import bundled_sample_video

    monkeypatch.chdir(tmp_path)  # no folder called "demo" here
    arguments = ["predict", str(bundled_sample_video()), "--model", "demo", "--output-dir", str(tmp_path / "out")]
    assert main(arguments) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["model"].endswith("demo_model") and results["instances"]
