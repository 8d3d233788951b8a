"""Training with Accelerate (`scripts/train.py`, `tevit_hf.training`): schedules, parameter groups, argument and data
checks, a 2-process launch through `accelerate launch`, and exact resume after a SIGKILL."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_train_arguments

from tevit_hf import TeViTForVideoInstanceSegmentation
from tevit_hf.data import generate_synthetic_vis_dataset
from tevit_hf.training import (
    LearningRateSchedule,
    TrainingArgumentError,
    TrainingDataError,
    build_lr_scheduler,
    build_optimizer,
    default_schedule_steps,
    parse_arguments,
    train,
)
from tevit_hf.training.checkpointing import LATEST_FILENAME, TRAINING_STATE_FILENAME


REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
SUBPROCESS_TIMEOUT = 240


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """4 videos x 6 frames x 64x96, 3 classes (24 training items)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_vis_dataset(root, num_videos=4, num_frames=6, height=64, width=96, num_classes=3, mp4="none")
    return root


@pytest.fixture(scope="module")
def two_video_dataset(tmp_path_factory) -> Path:
    """2 videos x 4 frames: at most 8 items, so clips of 3 make an epoch of 3 steps."""
    root = tmp_path_factory.mktemp("synthetic_small")
    generate_synthetic_vis_dataset(root, num_videos=2, num_frames=4, height=64, width=96, num_classes=3, mp4="none")
    return root


def _tiny_run_arguments(dataset: Path, output_dir: Path, *extra: str) -> list[str]:
    return tiny_train_arguments(dataset, output_dir, "--logging_steps", "1", "--debug_rank_report", *extra)


def _run_script(arguments: list[str], launcher: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + [str(TRAIN_SCRIPT), *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **kwargs.pop("env", {})}
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, **kwargs
    )


def _rank_report(output_dir: Path, rank: int) -> dict:
    return json.loads((output_dir / f"rank_{rank}.json").read_text())


# ----------------------------------------------------------------------------------------------------------------------
# Schedules and parameter groups
# ----------------------------------------------------------------------------------------------------------------------


def test_step_schedule_matches_mmcv_warmup_and_drops():
    schedule = LearningRateSchedule(
        "step", max_steps=100, warmup_steps=10, warmup_start_factor=0.001, drop_steps=(60, 90)
    )
    # mmcv linear warm-up: 1 - (1 - s / 10) * (1 - 0.001).
    assert schedule(0) == pytest.approx(0.001)
    assert schedule(5) == pytest.approx(0.5005)
    assert schedule(9) == pytest.approx(1 - 0.1 * 0.999)
    assert schedule(10) == 1.0
    assert schedule(59) == 1.0
    assert schedule(60) == pytest.approx(0.1)
    assert schedule(89) == pytest.approx(0.1)
    assert schedule(90) == pytest.approx(0.01)
    # A drop inside the warm-up multiplies the warm-up factor (mmcv applies warm-up to the regular lr).
    early_drop = LearningRateSchedule("step", max_steps=100, warmup_steps=10, drop_steps=(4,))
    assert early_drop(5) == pytest.approx(0.1 * 0.5005)


def test_official_schedule_defaults_and_scaling():
    assert default_schedule_steps(9200) == (770, (6100, 8500))
    assert default_schedule_steps(920) == (77, (610, 850))
    assert default_schedule_steps(100, warmup_steps=5, drop_steps=[50]) == (5, (50,))


def test_cosine_schedule_values():
    schedule = LearningRateSchedule("cosine", max_steps=100, warmup_steps=0, min_lr_ratio=0.1)
    assert schedule(0) == 1.0
    assert schedule(50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(100) == pytest.approx(0.1)
    warm = LearningRateSchedule("cosine", max_steps=100, warmup_steps=20)
    assert warm(10) == pytest.approx((1 - 0.5 * 0.999) * 0.5 * (1 + math.cos(math.pi * 0.1)))


def test_scheduler_drives_both_groups_with_backbone_multiplier():
    model = TeViTForVideoInstanceSegmentation(tiny_config())
    optimizer = build_optimizer(model, learning_rate=2.5e-4, backbone_lr_multiplier=0.1, weight_decay=1e-4)
    schedule = LearningRateSchedule("step", max_steps=8, warmup_steps=2, warmup_start_factor=0.001, drop_steps=(4, 6))
    scheduler = build_lr_scheduler(optimizer, schedule)
    expected_factors = [0.001, 1 - 0.5 * 0.999, 1, 1, 0.1, 0.1, 0.01, 0.01]
    for factor in expected_factors:
        lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
        assert lrs["head"] == pytest.approx(2.5e-4 * factor)
        assert lrs["backbone"] == pytest.approx(2.5e-5 * factor)
        optimizer.step()
        scheduler.step()


def test_parameter_groups_backbone_multiplier_and_weight_decay_on_all():
    model = TeViTForVideoInstanceSegmentation(tiny_config())
    optimizer = build_optimizer(model, learning_rate=1e-3, backbone_lr_multiplier=0.1, weight_decay=1e-4)
    groups = {group["name"]: group for group in optimizer.param_groups}
    names_by_id = {id(parameter): name for name, parameter in model.named_parameters()}
    backbone_names = {names_by_id[id(parameter)] for parameter in groups["backbone"]["params"]}
    head_names = {names_by_id[id(parameter)] for parameter in groups["head"]["params"]}
    assert backbone_names == {name for name in names_by_id.values() if name.startswith("model.backbone.")}
    assert "model.backbone.messenger_tokens" in backbone_names
    assert backbone_names.isdisjoint(head_names)
    assert backbone_names | head_names == set(names_by_id.values())
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert groups["head"]["lr"] == pytest.approx(1e-3)
    assert all(group["weight_decay"] == 1e-4 for group in optimizer.param_groups)


# ----------------------------------------------------------------------------------------------------------------------
# Argument and data checks (all fail before training starts)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "no training data"),
        (["--synthetic", "--train_annotations", "x.json"], "not both"),
        (["--synthetic", "--clip_length", "0"], "--clip_length must be positive"),
        (["--synthetic", "--learning_rate", "-1"], "--learning_rate must be positive"),
        (["--synthetic", "--lr_drop_steps", "50", "20"], "increasing"),
        (["--synthetic", "--max_train_steps", "10", "--lr_drop_steps", "10"], "below --max_train_steps"),
        (["--synthetic", "--lr_scheduler_type", "cosine", "--lr_drop_steps", "5"], "only to --lr_scheduler_type step"),
    ],
)
def test_invalid_arguments_are_rejected(tmp_path, arguments, message):
    with pytest.raises(TrainingArgumentError, match=message):
        parse_arguments(["--output_dir", str(tmp_path), *arguments])


def test_malformed_size_is_rejected_by_the_parser(tmp_path):
    with pytest.raises(SystemExit):
        parse_arguments(["--output_dir", str(tmp_path), "--synthetic", "--train_scales", "96by64"])


def test_missing_annotation_file_fails_before_training(tmp_path):
    args = parse_arguments(["--output_dir", str(tmp_path / "out"), "--train_annotations", str(tmp_path / "no.json")])
    with pytest.raises(TrainingDataError, match=r"--train_annotations: annotation file .*no\.json does not exist"):
        train(args)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_missing_frames_dir_fails_before_training(tiny_dataset, tmp_path):
    arguments = _tiny_run_arguments(tiny_dataset, tmp_path / "out", "--train_frames_dir", str(tmp_path / "nothing"))
    with pytest.raises(TrainingDataError, match="--train_frames_dir: frames folder"):
        train(parse_arguments(arguments))


def test_clip_longer_than_every_video_fails_before_training(tiny_dataset, tmp_path):
    arguments = _tiny_run_arguments(tiny_dataset, tmp_path / "out")
    arguments[arguments.index("--clip_length") + 1] = "7"
    with pytest.raises(TrainingDataError, match="--clip_length 7 is larger than every video .* longest has 6 frames"):
        train(parse_arguments(arguments))


def test_batch_larger_than_dataset_fails_before_training(tiny_dataset, tmp_path):
    arguments = _tiny_run_arguments(tiny_dataset, tmp_path / "out")
    arguments[arguments.index("--per_device_train_batch_size") + 1] = "25"
    with pytest.raises(TrainingDataError, match=r"global batch \(25 clips.*larger than the training set \(24 items"):
        train(parse_arguments(arguments))


@pytest.mark.parametrize("option", ["--init_from", "--backbone_init_from"])
def test_missing_weights_fail_before_any_work(tiny_dataset, tmp_path, option):
    arguments = _tiny_run_arguments(tiny_dataset, tmp_path / "out", option, str(tmp_path / "no_such_weights"))
    with pytest.raises(FileNotFoundError, match=rf"{option} .*no_such_weights: no such file or folder"):
        train(parse_arguments(arguments))
    assert not (tmp_path / "out").exists()  # nothing was written


def test_script_reports_bad_arguments_in_one_line_with_exit_status_1(tmp_path):
    result = _run_script(["--output_dir", str(tmp_path), "--train_annotations", str(tmp_path / "missing.json")])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "train.py: error: --train_annotations: annotation file" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------------------------------------------------
# Real runs through the script
# ----------------------------------------------------------------------------------------------------------------------


def test_two_process_launch_synchronises_ranks_and_saves_a_loadable_model(tiny_dataset, tmp_path):
    from transformers import AutoModel

    import tevit_hf  # noqa: F401  (Auto class registration)
    from tevit_hf.training.trainer import weights_checksum

    output_dir = tmp_path / "ddp"
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--main_process_port", "0", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip
    arguments = _tiny_run_arguments(tiny_dataset, output_dir, "--max_train_steps", "2", "--skip_final_evaluation")
    result = _run_script(arguments, launcher=launcher, env={"ACCELERATE_USE_CPU": "1"})
    assert result.returncode == 0, result.stderr[-4000:]

    reports = [_rank_report(output_dir, rank) for rank in (0, 1)]
    assert [report["rank"] for report in reports] == [0, 1]
    assert all(report["world_size"] == 2 and report["global_step"] == 2 for report in reports)
    # Gradients are all-reduced: identical parameters on both ranks although each saw other clips.
    assert reports[0]["parameters_sha256"] == reports[1]["parameters_sha256"]

    model = AutoModel.from_pretrained(output_dir)
    assert isinstance(model, TeViTForVideoInstanceSegmentation)
    assert model.config.id2label == {0: "circle", 1: "square", 2: "triangle"}
    assert weights_checksum(model) == reports[0]["weights_sha256"]
    # The ranks trained: the saved weights are not the initial ones.
    assert weights_checksum(TeViTForVideoInstanceSegmentation(model.config)) != reports[0]["weights_sha256"]
    assert weights_checksum(model, include_buffers=False) == reports[1]["parameters_sha256"]
    assert (output_dir / "preprocessor_config.json").is_file()
    from huggingface_hub import ModelCard

    assert ModelCard.load(output_dir / "README.md").data.library_name == "transformers"


def test_resume_after_sigkill_gives_identical_weights(two_video_dataset, tmp_path):
    total_steps, checkpoint_every = 4, 2
    common = ["--max_train_steps", str(total_steps), "--checkpointing_steps", str(checkpoint_every)]
    # Batches of 3 clips: the kill falls inside epoch 0 and the resumed half runs into epoch 1.
    common += ["--skip_final_evaluation", "--per_device_train_batch_size", "3"]

    straight_dir = tmp_path / "straight"
    straight = _run_script(_tiny_run_arguments(two_video_dataset, straight_dir, *common))
    assert straight.returncode == 0, straight.stderr[-4000:]

    resumed_dir = tmp_path / "resumed"
    arguments = _tiny_run_arguments(two_video_dataset, resumed_dir, *common)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *arguments, "--debug_sleep_after_checkpoint", "600"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = resumed_dir / "checkpoints" / LATEST_FILENAME
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    try:
        while not (latest.is_file() and latest.read_text().strip() == "step_2"):
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.2)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert (resumed_dir / "checkpoints" / "step_2" / TRAINING_STATE_FILENAME).is_file()
    assert not (resumed_dir / "checkpoints" / "step_4").exists()
    assert not (resumed_dir / "model.safetensors").exists()

    resumed = _run_script(arguments + ["--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr
    straight_report, resumed_report = _rank_report(straight_dir, 0), _rank_report(resumed_dir, 0)
    assert resumed_report["global_step"] == straight_report["global_step"] == total_steps
    assert resumed_report["weights_sha256"] == straight_report["weights_sha256"]

    from safetensors.torch import load_file

    straight_weights = load_file(straight_dir / "model.safetensors")
    resumed_weights = load_file(resumed_dir / "model.safetensors")
    assert straight_weights.keys() == resumed_weights.keys()
    assert all(torch.equal(straight_weights[key], resumed_weights[key]) for key in straight_weights)


def test_evaluation_does_not_change_the_training(two_video_dataset, tmp_path):
    # Evaluating every step (with the validation loader drawing its seed) must leave the trained weights untouched.
    common = ["--max_train_steps", "3", "--skip_final_evaluation", "--per_device_train_batch_size", "3"]
    validation = ["--val_annotations", str(two_video_dataset / "annotations.json"), "--eval_steps", "1"]
    plain = _run_script(_tiny_run_arguments(two_video_dataset, tmp_path / "plain", *common))
    evaluated = _run_script(_tiny_run_arguments(two_video_dataset, tmp_path / "evaluated", *common, *validation))
    assert plain.returncode == 0, plain.stderr[-4000:]
    assert evaluated.returncode == 0, evaluated.stderr[-4000:]
    assert evaluated.stderr.count("validation AP") == 3  # it did evaluate, at every step
    # The card train.py writes is publishable as it is when the run has validation numbers.
    from tevit_hf.commands.push_to_hub import UploadFolderError, validate_model_card

    assert validate_model_card(tmp_path / "evaluated" / "README.md")["model-index"]
    with pytest.raises(UploadFolderError, match="model-index"):
        validate_model_card(tmp_path / "plain" / "README.md")
    assert (
        _rank_report(tmp_path / "plain", 0)["weights_sha256"]
        == _rank_report(tmp_path / "evaluated", 0)["weights_sha256"]
    )


def test_an_earlier_run_is_never_overwritten_silently(two_video_dataset, tmp_path):
    output_dir = tmp_path / "run"
    common = ["--skip_final_evaluation", "--checkpointing_steps", "1"]
    first = _run_script(_tiny_run_arguments(two_video_dataset, output_dir, "--max_train_steps", "2", *common))
    assert first.returncode == 0, first.stderr[-4000:]
    weights = (output_dir / "model.safetensors").read_bytes()

    again = _run_script(_tiny_run_arguments(two_video_dataset, output_dir, "--max_train_steps", "1", *common))
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "holds an earlier run (model.safetensors" in again.stderr and "--overwrite_output_dir" in again.stderr
    assert (output_dir / "model.safetensors").read_bytes() == weights

    # Starting over on purpose: none of the earlier run's checkpoints survive beside the new ones.
    arguments = _tiny_run_arguments(two_video_dataset, output_dir, "--max_train_steps", "1", *common)
    over = _run_script([*arguments, "--overwrite_output_dir"])
    assert over.returncode == 0, over.stderr[-4000:]
    assert sorted(path.name for path in (output_dir / "checkpoints").iterdir() if path.is_dir()) == ["step_1"]
    assert _rank_report(output_dir, 0)["global_step"] == 1


def test_a_corrupted_random_state_file_or_a_changed_schedule_stops_the_resume(two_video_dataset, tmp_path):
    output_dir = tmp_path / "run"
    common = ["--max_train_steps", "2", "--checkpointing_steps", "1", "--skip_final_evaluation"]
    first = _run_script(_tiny_run_arguments(two_video_dataset, output_dir, *common))
    assert first.returncode == 0, first.stderr[-4000:]
    rng_file = output_dir / "checkpoints" / "step_1" / "random_states_0.pkl"
    rng_file.write_bytes(b"garbage")
    resume = [*common, "--resume_from_checkpoint", str(rng_file.parent)]
    refused = _run_script(_tiny_run_arguments(two_video_dataset, output_dir, *resume))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{rng_file} cannot be loaded" in refused.stderr and "--resume_without_rng_state" in refused.stderr
    accepted = _run_script(_tiny_run_arguments(two_video_dataset, output_dir, *resume, "--resume_without_rng_state"))
    assert accepted.returncode == 0, accepted.stderr[-4000:]
    assert "resuming without the random states" in accepted.stderr
    # The saved learning-rate schedule would silently win over a changed one: refused.
    longer = [arg if arg != "2" else "3" for arg in resume]
    changed = _run_script(_tiny_run_arguments(two_video_dataset, output_dir, *longer, "--resume_without_rng_state"))
    assert changed.returncode == 1 and "--max_train_steps 2 (checkpoint) vs 3 (now)" in changed.stderr


def test_requested_tracker_that_is_not_installed_is_an_error():
    from accelerate.tracking import get_available_trackers

    from tevit_hf.training.trainer import check_trackers

    if "tensorboard" in [str(getattr(tracker, "value", tracker)) for tracker in get_available_trackers()]:
        pytest.skip("tensorboard is installed")
    with pytest.raises(TrainingArgumentError, match=r"--report_to tensorboard: \['tensorboard'\] not installed"):
        check_trackers("tensorboard")


# ----------------------------------------------------------------------------------------------------------------------
# Model sources and --init_from
# ----------------------------------------------------------------------------------------------------------------------


def test_build_config_from_preset_json_and_folder_with_dataset_labels(tmp_path):
    from tevit_hf.training import build_config

    labels = {0: "circle", 1: "square"}
    preset = build_config("tiny", labels, {"num_queries": 7, "backbone_depths": [1, 1, 1, 1]})
    assert preset.num_labels == 2 and preset.id2label == labels and preset.label2id == {"circle": 0, "square": 1}
    assert preset.num_queries == 7 and preset.backbone_depths == [1, 1, 1, 1] and preset.hidden_size == 32
    assert build_config("pvt_v2_b0", labels).backbone_hidden_sizes == [32, 64, 160, 256]

    folder = tmp_path / "model"
    tiny_config(num_labels=5, num_queries=9).save_pretrained(folder)
    from_folder = build_config(str(folder), labels, {"num_head_stages": 3})
    assert from_folder.num_queries == 9 and from_folder.num_labels == 2
    assert from_folder.num_head_stages == 3 and len(from_folder.stage_loss_weights) == 3
    assert build_config(str(folder / "config.json"), labels).num_queries == 9
    with pytest.raises(ValueError, match="not TeViTConfig fields"):
        build_config("tiny", labels, {"hidden_sise": 3})
    with pytest.raises(ValueError, match="neither a preset"):
        build_config("pvt_v2_b9", labels)


def test_init_from_skips_and_reports_mismatched_class_layers(tmp_path):
    from tevit_hf.training import build_model, parse_arguments
    from tevit_hf.training.model_setup import parse_config_overrides

    source = TeViTForVideoInstanceSegmentation(tiny_config(num_labels=5))
    source.save_pretrained(tmp_path / "five_classes")
    model, report = build_model(tiny_config(num_labels=3), tmp_path / "five_classes")
    mismatched = {key for key, _, _ in report.mismatched}
    assert mismatched == {
        f"{prefix}.{stage}.{layer}.{kind}"
        for stage in range(2)
        for prefix, layer in (("model.decoder_stages", "class_predictor"), ("mask_heads", "mask_predictor"))
        for kind in ("weight", "bias")
    }
    assert not report.unexpected and not report.missing
    assert len(report.loaded) == len(source.state_dict()) - len(mismatched)
    source_state = source.state_dict()
    for key, tensor in model.state_dict().items():
        if key not in mismatched:
            assert torch.equal(tensor, source_state[key]), key
        else:  # skipped: freshly initialised for the 3 classes
            assert tensor.shape[0] == 3
    text = report.format()
    assert "mismatched: model.decoder_stages.0.class_predictor.weight: checkpoint [5, 32] vs model [3, 32]" in text
    assert parse_config_overrides("hidden_size=64,backbone_depths=[1, 2,1,1],hidden_act=gelu") == {
        "hidden_size": 64,
        "backbone_depths": [1, 2, 1, 1],
        "hidden_act": "gelu",
    }
    with pytest.raises(SystemExit):
        parse_arguments(["--output_dir", str(tmp_path), "--synthetic", "--checkpointing_steps", "often"])
