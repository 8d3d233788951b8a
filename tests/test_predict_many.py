"""`tevit-hf predict` on many videos: folder / list / annotation sources, 2 processes under `accelerate launch`, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_cli_error
from hub_fixtures import moving_shapes, save_tiny_hub_folder, write_frame_folder, write_mp4

from tevit_hf.commands.cli import main
from tevit_hf.commands.predict_many import is_video_collection, list_videos


NUM_VIDEOS = 5
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_hub_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def videos_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    for index in range(NUM_VIDEOS):
        write_mp4(folder / f"clip{index}.mp4", moving_shapes(4 + index, seed=index))
    return folder


def predict_argv(source, model_dir, output_dir, *extra) -> list[str]:
    return ["predict", str(source), "--model", str(model_dir), "--output-dir", str(output_dir), "--clip-length", "4",
            "--stride", "2", *extra]  # fmt: skip


def launch(argv: list[str], num_processes: int, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """`accelerate launch` of `tevit-hf` on the CPU (2 processes talk through gloo)."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    if num_processes > 1:
        command += ["--multi_gpu", "--main_process_port", "0"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "tevit_hf.commands.cli", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_sources_are_told_apart(videos_dir, tmp_path):
    frames = tmp_path / "frames"
    write_frame_folder(frames, moving_shapes(3))
    assert not is_video_collection(frames) and not is_video_collection(videos_dir / "clip0.mp4")
    assert is_video_collection(videos_dir)
    (tmp_path / "list.txt").write_text("# two videos\nframes\n\n" + str(videos_dir / "clip1.mp4") + "\n")
    items, categories = list_videos(tmp_path / "list.txt")
    assert [item.video_id for item in items] == [1, 2] and categories is None
    assert items[0].source == str(frames) and items[1].source == str(videos_dir / "clip1.mp4")


def test_two_processes_merge_the_one_process_results_and_a_rerun_resumes(model_dir, videos_dir, tmp_path):
    one = launch(predict_argv(videos_dir, model_dir, tmp_path / "one"), 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(predict_argv(videos_dir, model_dir, tmp_path / "two"), 2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 process(es)" in two.stdout

    results = json.loads((tmp_path / "one" / "results.json").read_text())
    assert json.loads((tmp_path / "two" / "results.json").read_text()) == results
    assert {entry["video_id"] for entry in results} == set(range(1, NUM_VIDEOS + 1))
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    assert index["num_processes"] == 2 and index["num_videos"] == NUM_VIDEOS
    assert [video["num_frames"] for video in index["videos"]] == [4 + i for i in range(NUM_VIDEOS)]
    assert index["frames_per_second"] > 0

    # A run killed after some videos: their documents stay, the rerun predicts only the others.
    for video_id in (2, 4):
        (tmp_path / "two" / "videos" / f"{video_id}.json").unlink()
    (tmp_path / "two" / "results.json").unlink()
    finished = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two" / "videos").iterdir()}
    rerun = launch(predict_argv(videos_dir, model_dir, tmp_path / "two"), 2)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "3 of 5 videos are finished" in rerun.stderr
    for name, mtime in finished.items():
        assert (tmp_path / "two" / "videos" / name).stat().st_mtime_ns == mtime, f"{name} was predicted again"
    assert json.loads((tmp_path / "two" / "results.json").read_text()) == results


def test_annotation_file_maps_labels_to_its_categories(model_dir, tmp_path):
    frames = moving_shapes(3)
    write_frame_folder(tmp_path / "frames" / "a", frames)
    annotations = {
        "videos": [{"id": 7, "file_names": [f"a/{i}.png" for i in range(3)], "height": 48, "width": 64}],
        "categories": [{"id": 10 + i, "name": name} for i, name in enumerate(["circle", "square", "triangle"])],
        "annotations": [],
    }
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    argv = predict_argv(tmp_path / "ann.json", model_dir, tmp_path / "out", "--frames-dir", str(tmp_path / "frames"))
    assert main(argv) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results and {entry["video_id"] for entry in results} == {7}
    assert {entry["category_id"] for entry in results} <= {10, 11, 12}
    assert all(len(entry["segmentations"]) == 3 for entry in results)


def test_a_list_naming_a_missing_video_is_one_error_line(model_dir, tmp_path, capsys):
    (tmp_path / "list.txt").write_text("missing.mp4\n")
    argv = predict_argv(tmp_path / "list.txt", model_dir, tmp_path / "out")
    assert_cli_error(capsys, argv, r"list.txt: line 1 names 'missing.mp4', which does not exist")
    assert not (tmp_path / "out").exists()


def test_overwrite_predicts_again(model_dir, videos_dir, tmp_path):
    source = tmp_path / "two"
    source.mkdir()
    for name in ("clip0.mp4", "clip1.mp4"):
        shutil.copy(videos_dir / name, source / name)
    assert main(predict_argv(source, model_dir, tmp_path / "out")) == 0
    document = tmp_path / "out" / "videos" / "1.json"
    before = document.stat().st_mtime_ns
    assert main(predict_argv(source, model_dir, tmp_path / "out")) == 0
    assert document.stat().st_mtime_ns == before
    assert main(predict_argv(source, model_dir, tmp_path / "out", "--overwrite")) == 0
    assert document.stat().st_mtime_ns != before


def test_evaluate_runs_the_same_path_and_refuses_to_mix_settings(model_dir, tmp_path, capsys):
    from tevit_hf.data.synthetic import generate_synthetic_vis_dataset

    annotations = generate_synthetic_vis_dataset(
        tmp_path / "data", num_videos=2, num_frames=3, height=48, width=64, num_classes=3, mp4="none", seed=1
    )
    argv = ["evaluate", "--model", str(model_dir), "--annotations", str(annotations)]
    argv += ["--frames-dir", str(tmp_path / "data" / "JPEGImages"), "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["num_videos"] == 2 and index["near_online"] is False
    merged = json.loads((tmp_path / "out" / "results.json").read_text())
    documents = [json.loads((tmp_path / "out" / video["document"]).read_text()) for video in index["videos"]]
    assert merged == [entry for document in documents for entry in document["results"]]
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert_cli_error(capsys, [*argv, "--mask-threshold", "0.4"], r"videos/\d+.json was predicted with other settings")
    assert main([*argv, "--mask-threshold", "0.4", "--overwrite"]) == 0


def test_a_folder_that_gained_a_video_is_not_mixed_with_earlier_documents(model_dir, videos_dir, tmp_path, capsys):
    source = tmp_path / "videos"
    source.mkdir()
    shutil.copy(videos_dir / "clip1.mp4", source / "clip1.mp4")
    assert main(predict_argv(source, model_dir, tmp_path / "out")) == 0
    shutil.copy(videos_dir / "clip0.mp4", source / "clip0.mp4")  # sorts first: clip1 becomes video 2
    assert_cli_error(capsys, predict_argv(source, model_dir, tmp_path / "out"), r"videos/1.json holds the results of")
