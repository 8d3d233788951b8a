"""A bad-input corpus through the public command line: each mistake exits with status 1 and one line that names the
culprit, without a traceback, and leaves no partial or mixed output; earlier work is never overwritten silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_cli_error, tiny_config
from hub_fixtures import moving_shapes, save_tiny_hub_folder, write_mp4

from tevit_hf.commands.cli import main
from tevit_hf.commands.demo import bundled_sample_annotations
from tevit_hf.masks_tevit import empty_mask_rle


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_hub_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("video") / "clip.mp4", moving_shapes(num_frames=4))


def predict(video, model_dir, output_dir, *extra) -> list[str]:
    return ["predict", str(video), "--model", str(model_dir), "--output-dir", str(output_dir), *extra]


def test_missing_video(model_dir, tmp_path, capsys):
    assert_cli_error(capsys, predict(tmp_path / "nope.mp4", model_dir, tmp_path / "out"), r"nope\.mp4")
    assert not (tmp_path / "out").exists()


def test_text_file_renamed_mp4(model_dir, tmp_path, capsys):
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    assert_cli_error(capsys, predict(fake, model_dir, tmp_path / "out"), r"fake\.mp4")
    assert not (tmp_path / "out").exists()


def test_unavailable_device(model_dir, video, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert_cli_error(capsys, predict(video, model_dir, tmp_path / "out", "--device", "cuda"), r"CUDA device")
    assert_cli_error(capsys, predict(video, model_dir, tmp_path / "out", "--device", "gpu0"), r"not a torch device")
    assert not (tmp_path / "out").exists()


def test_truncated_weights_are_named(model_dir, video, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in model_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    line = assert_cli_error(capsys, predict(video, broken, tmp_path / "out"), r"model\.safetensors .*truncated")
    assert str(weights) in line
    assert not (tmp_path / "out").exists()


def test_earlier_results_are_never_overwritten_silently(model_dir, video, tmp_path, capsys):
    output_dir = tmp_path / "out"
    assert main(predict(video, model_dir, output_dir)) == 0
    before = {path.name: path.read_bytes() for path in output_dir.iterdir()}
    assert_cli_error(capsys, predict(video, model_dir, output_dir, "--threshold", "0.5"), "--overwrite")
    assert {path.name: path.read_bytes() for path in output_dir.iterdir()} == before
    # With --overwrite the folder is replaced as one unit: the new results, and nothing of the old run's set left.
    assert (
        main(predict(video, model_dir, output_dir, "--threshold", "0.99", "--overlay-format", "gif", "--overwrite"))
        == 0
    )
    assert sorted(path.name for path in output_dir.iterdir()) == ["overlay.gif", "results.json"]
    assert json.loads((output_dir / "results.json").read_text())["threshold"] == 0.99
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out.")]


def test_two_concurrent_runs_into_one_folder_end_consistent(model_dir, video, tmp_path):
    output_dir = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "tevit_hf.commands.cli", *predict(video, model_dir, output_dir, "--threshold", t)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for t in ("0.1", "0.2")
    ]
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 1], [0, 0]), outcomes
    if codes == [0, 1]:
        refused = next(stderr for code, stderr in outcomes if code == 1)
        assert "already holds earlier work" in refused and "Traceback" not in refused
    assert sorted(path.name for path in output_dir.iterdir()) == ["overlay.mp4", "results.json"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out.")]


def test_stale_staging_folder_of_a_killed_run_is_cleaned_up(model_dir, video, tmp_path):
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    stale = tmp_path / f".out.tmp-{dead_pid}-abc"
    stale.mkdir()
    (stale / "results.json").write_text("{}")
    assert main(predict(video, model_dir, tmp_path / "out")) == 0
    assert not stale.exists()


def test_malformed_results_json_names_the_file(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text('[{"video_id": 1, "score": 0.5,')
    arguments = ["evaluate", "--annotations", str(bundled_sample_annotations()), "--results", str(results)]
    assert_cli_error(capsys, arguments, r"results\.json is not valid JSON")


def test_evaluate_needs_frames_dir_with_a_model(model_dir, capsys):
    arguments = ["evaluate", "--annotations", str(bundled_sample_annotations()), "--model", str(model_dir)]
    assert_cli_error(capsys, arguments, r"--frames-dir")


def test_convert_a_text_file(tmp_path, capsys):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    arguments = ["convert", "--checkpoint", str(text), "--output-dir", str(tmp_path / "converted")]
    assert_cli_error(capsys, arguments, r"notes\.pth is not a PyTorch checkpoint")
    assert not (tmp_path / "converted").exists()


def test_convert_refuses_earlier_work(tmp_path, capsys):
    from original_checkpoint_fixture import make_original_state_dict

    checkpoint = tmp_path / "official.pth"
    torch.save({"state_dict": make_original_state_dict(tiny_config())}, checkpoint)
    output_dir = tmp_path / "converted"
    output_dir.mkdir()
    (output_dir / "mine.txt").write_text("earlier work")
    arguments = ["convert", "--checkpoint", str(checkpoint), "--output-dir", str(output_dir)]
    assert_cli_error(capsys, arguments, "--overwrite")
    assert sorted(path.name for path in output_dir.iterdir()) == ["mine.txt"]


def test_make_synthetic_refuses_earlier_data_and_bad_settings(tmp_path, capsys):
    data = tmp_path / "data"
    arguments = [
        "make-synthetic",
        "--output-dir",
        str(data),
        "--num-train-videos",
        "1",
        "--num-val-videos",
        "1",
        "--num-frames",
        "2",
    ]
    assert main(arguments) == 0
    annotations = (data / "train" / "annotations.json").read_bytes()
    assert_cli_error(capsys, [*arguments, "--seed", "3"], "--overwrite")
    assert (data / "train" / "annotations.json").read_bytes() == annotations
    assert_cli_error(capsys, ["make-synthetic", "--output-dir", str(tmp_path / "other"), "--fps", "0"], "fps")
    assert not (tmp_path / "other").exists()


def test_debug_shows_the_traceback(model_dir, tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tevit_hf.commands.cli",
            "--debug",
            *predict(tmp_path / "nope.mp4", model_dir, tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0 and "Traceback" in completed.stderr


def _results_for_the_sample(**change) -> list[dict]:
    annotations = json.loads(bundled_sample_annotations().read_text())
    video = annotations["videos"][0]
    empty = empty_mask_rle(video["height"], video["width"])
    entry = {"video_id": video["id"], "category_id": 1, "score": 0.9, "segmentations": [empty] * video["length"]}
    entry.update(change)
    return [entry]


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"segmentations": None}, r"'segmentations' must be a list"),
        ({"score": "high"}, r"'score' a number"),
        ({"score": float("nan")}, r"finite number"),
        ({"video_id": 999}, r"unknown video_id 999"),
    ],
)
def test_invalid_results_entries_are_named(tmp_path, capsys, change, pattern):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results_for_the_sample(**change)))
    arguments = ["evaluate", "--annotations", str(bundled_sample_annotations()), "--results", str(results)]
    assert_cli_error(capsys, arguments, rf"results\.json\[0\].*{pattern}")


@pytest.mark.parametrize("counts", ["0", "", "garbage", "P0000"])
def test_invalid_rle_counts_are_refused_before_scoring(tmp_path, capsys, counts):
    annotations = json.loads(bundled_sample_annotations().read_text())
    video = annotations["videos"][0]
    rle = {"size": [video["height"], video["width"]], "counts": counts}
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results_for_the_sample(segmentations=[rle] * video["length"])))
    arguments = ["evaluate", "--annotations", str(bundled_sample_annotations()), "--results", str(results)]
    assert_cli_error(capsys, arguments, r"segmentations\[0\]: invalid RLE 'counts'")
    assert not (tmp_path / "metrics.json").exists()


def test_empty_results_are_warned_about(tmp_path, caplog):
    results = tmp_path / "results.json"
    results.write_text("[]")
    arguments = ["evaluate", "--annotations", str(bundled_sample_annotations()), "--results", str(results)]
    assert main(arguments) == 0
    assert "No results in" in caplog.text and "AP is 0" in caplog.text


def _faststart_mp4(path: Path, num_frames: int) -> Path:
    """An MP4 with its index (moov) at the front, as web videos are: cut short, it still opens."""
    import av

    frames = moving_shapes(num_frames=num_frames)
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=6)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"g": "1"}  # every frame a keyframe, so the first half decodes on its own
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_video_cut_short_is_recorded_not_silent(model_dir, tmp_path, caplog):
    video = _faststart_mp4(tmp_path / "cut.mp4", num_frames=40)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    assert main(predict(video, model_dir, tmp_path / "out")) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["container_num_frames"] == 40 and 0 < results["num_frames"] < 40
    assert "container promises 40" in caplog.text


def test_frame_folder_with_mixed_sizes_names_the_file(model_dir, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(moving_shapes(num_frames=4)):
        image = Image.fromarray(frame)
        (image.resize((80, 48)) if index == 2 else image).save(folder / f"{index:05d}.png")
    line = assert_cli_error(capsys, predict(folder, model_dir, tmp_path / "out"), r"Frame 2 of .*00002\.png.*80x48")
    assert "64x48" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"num_queries": "eight"}, r"`num_queries` must be an integer, got 'eight'"),
        ({"backbone_depths": "2,2,2,2"}, r"`backbone_depths` must be a list of integers"),
    ],
)
def test_a_config_field_of_the_wrong_type_is_named(model_dir, video, tmp_path, capsys, change, pattern):
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in model_dir.iterdir():
        (edited / path.name).write_bytes(path.read_bytes())
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, **change}))
    assert_cli_error(capsys, predict(video, edited, tmp_path / "out"), rf"config\.json: .*{pattern}")


def test_outputs_follow_the_umask(model_dir, video, tmp_path):
    previous = os.umask(0o022)
    try:
        assert main(predict(video, model_dir, tmp_path / "out")) == 0
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "out").iterdir()}
    assert modes == {"results.json": 0o644, "overlay.mp4": 0o644}
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: a real filesystem that runs out of space (needs root, as in CI; skipped elsewhere)."""
    mount_point = tmp_path / "full_disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_reported_as_such_and_leaves_nothing_half_written(full_disk, capsys):
    from accelerate import Accelerator

    from tevit_hf.commands.predict import build_results_payload, write_results_json
    from tevit_hf.errors import run_with_error_layer
    from tevit_hf.training.checkpointing import TrainingProgress, save_checkpoint

    # A training checkpoint (torch's zip writer says only "unexpected pos N vs M" on a short write).
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(200, 200))  # 160 KB of weights for 64 KiB of disk
    checkpoints = full_disk / "checkpoints"
    code = run_with_error_layer("train.py", lambda: save_checkpoint(accelerator, checkpoints, TrainingProgress(3)))
    message = capsys.readouterr().err.strip()
    assert code == 1 and message.startswith("train.py: error: no space left on the device while writing "), message
    assert str(checkpoints / "step_3") in message and "Traceback" not in message
    assert sorted(path.name for path in checkpoints.iterdir()) == []  # no partial checkpoint, no `latest`
    del model

    # A results document that does not fit: the error names the file, and no temporary file stays.
    instance = {"id": 0, "label": "a", "label_id": 0, "score": 0.5, "boxes": np.zeros((20_000, 4))}
    instance |= {"visible": [True] * 20_000, "segmentations": [{"size": [1, 1], "counts": "01"}] * 20_000}
    payload = build_results_payload([instance], "v.mp4", 20_000, None, (1, 1), {0: "a"})
    results = full_disk / "results.json"
    assert run_with_error_layer("tevit-hf predict", lambda: write_results_json(results, payload)) == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("tevit-hf predict: error: no space left on the device while writing "), message
    assert str(full_disk) in message and len(message.splitlines()) == 1
    assert list(full_disk.iterdir()) == [checkpoints]


def test_a_run_that_loses_the_race_to_publish_is_refused_cleanly(tmp_path, monkeypatch):
    # Another run publishes `out` between this run's last check and its move (seen once in CI as a raw OSError).
    import tevit_hf.file_utils as file_utils
    from tevit_hf.errors import OutputExistsError

    destination, real_replace = tmp_path / "out", os.replace

    def other_run_publishes_first(source, target):
        (destination / "results.json").parent.mkdir(exist_ok=True)
        (destination / "results.json").write_text("{}")
        real_replace(source, target)

    monkeypatch.setattr(file_utils.os, "replace", other_run_publishes_first)
    with pytest.raises(OutputExistsError, match="already holds earlier work"):
        with file_utils.staged_directory(destination) as staging:
            (staging / "results.json").write_text("[]")
    assert (destination / "results.json").read_text() == "{}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
