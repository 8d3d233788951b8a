"""`scripts/train.py` under Accelerate's FSDP (FSDP2): 2 processes, a tiny model, exact resume after a kill, the
final model gathered from the shards.

With 2 CUDA devices the launch is plain `accelerate launch --use_fsdp`. On a CPU machine Accelerate 1.16 would run
that launch as data parallel (it shards only on accelerators), so the script runs through `fsdp_on_cpu.py`, which
switches Accelerate's state to FSDP; torch's FSDP2 then shards over gloo and the rest is Accelerate's own code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import tiny_train_arguments

from tevit_hf.data import generate_synthetic_vis_dataset


REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
CPU_SHIM = Path(__file__).resolve().parent / "fsdp_on_cpu.py"
TIMEOUT = 600
ON_GPUS = torch.cuda.device_count() >= 2


def fsdp_command(*arguments: str) -> list[str]:
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2",
        "--main_process_port", "0", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--use_fsdp", "--fsdp_version", "2", "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
        "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
    ]  # fmt: skip
    script = [str(TRAIN_SCRIPT)] if ON_GPUS else [str(CPU_SHIM), str(TRAIN_SCRIPT)]
    return [*launcher, *script, *arguments]


def launch_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not ON_GPUS:
        env["ACCELERATE_USE_CPU"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def run_fsdp(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        fsdp_command(*arguments), cwd=REPO_ROOT, env=launch_env(), capture_output=True, text=True, timeout=TIMEOUT
    )


def test_fsdp_training_evaluates_saves_and_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    from tevit_hf import TeViTForVideoInstanceSegmentation
    from tevit_hf.training.checkpointing import LATEST_FILENAME
    from tevit_hf.training.trainer import weights_checksum

    data, validation = tmp_path / "data", tmp_path / "validation"
    generate_synthetic_vis_dataset(data, num_videos=2, num_frames=4, height=64, width=96, num_classes=3, mp4="none")
    generate_synthetic_vis_dataset(
        validation, num_videos=3, num_frames=4, height=64, width=96, num_classes=3, mp4="none", seed=1
    )
    common = [
        "--max_train_steps", "4", "--checkpointing_steps", "2", "--debug_rank_report",
        "--val_annotations", str(validation / "annotations.json"),
    ]  # fmt: skip

    straight_dir = tmp_path / "straight"
    straight = run_fsdp(*tiny_train_arguments(data, straight_dir, *common))
    assert straight.returncode == 0, straight.stderr[-4000:]
    assert "Distributed environment: DistributedType.FSDP" in straight.stderr
    # Sharded checkpoints (torch.distributed.checkpoint folders), not one state dict as data parallel writes.
    assert (straight_dir / "checkpoints" / "step_4" / "pytorch_model_fsdp_0").is_dir()
    # The evaluation ran on both processes' shards of the videos and the result was written once.
    assert "eval_AP" in json.loads((straight_dir / "eval_results.json").read_text())
    reports = [json.loads((straight_dir / f"rank_{rank}.json").read_text()) for rank in range(2)]
    assert reports[0]["parameters_sha256"] == reports[1]["parameters_sha256"]
    # The final folder holds the whole model gathered from the shards: it loads strictly, with the ranks' weights.
    model = TeViTForVideoInstanceSegmentation.from_pretrained(straight_dir)
    assert weights_checksum(model, include_buffers=False) == reports[0]["parameters_sha256"]

    resumed_dir = tmp_path / "resumed"
    arguments = tiny_train_arguments(data, resumed_dir, *common)
    process = subprocess.Popen(
        fsdp_command(*arguments, "--debug_sleep_after_checkpoint", "600"),
        cwd=REPO_ROOT,
        env=launch_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    latest = resumed_dir / "checkpoints" / LATEST_FILENAME
    deadline = time.monotonic() + TIMEOUT
    try:
        while not (latest.is_file() and latest.read_text().strip() == "step_2"):
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and both ranks
        process.wait()
    resumed = run_fsdp(*arguments, "--resume_from_checkpoint", "latest")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr
    straight_weights = load_file(straight_dir / "model.safetensors")
    resumed_weights = load_file(resumed_dir / "model.safetensors")
    assert straight_weights.keys() == resumed_weights.keys()
    assert all(torch.equal(straight_weights[key], resumed_weights[key]) for key in straight_weights)
