"""`scripts/train.py` under Accelerate's FSDP (FSDP2): 2 processes, a tiny model, exact resume after a kill.

FSDP shards over accelerators: Accelerate switches a launch to `DistributedType.FSDP` only for multi-GPU-like
distributed types, so on a CPU-only machine (`ACCELERATE_USE_CPU=1`, gloo) `--use_fsdp` is ignored and the run is
plain multi-CPU data parallel. The probe below asks Accelerate which type a 2-process `--use_fsdp` launch gets here;
the training test runs where it is FSDP (2 CUDA devices, or a future Accelerate that shards on CPU) and skips with
the reason otherwise. docs/benchmarks.md gives the GPU command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_arguments

from tevit_hf.data import generate_synthetic_vis_dataset


REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
TIMEOUT = 600
PROBE = "from accelerate import Accelerator; print('DISTRIBUTED_TYPE', Accelerator().distributed_type.value)\n"


def fsdp_launcher() -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2",
        "--main_process_port", "0", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--use_fsdp", "--fsdp_version", "2", "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
    ]  # fmt: skip


def launch_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if torch.cuda.device_count() < 2:
        env["ACCELERATE_USE_CPU"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def fsdp_available(tmp_path_factory) -> None:
    probe = tmp_path_factory.mktemp("probe") / "probe.py"
    probe.write_text(PROBE)
    result = subprocess.run(
        [*fsdp_launcher(), str(probe)], env=launch_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    types = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("DISTRIBUTED_TYPE")}
    if types != {"FSDP"}:
        import accelerate

        pytest.skip(
            f"accelerate {accelerate.__version__} runs a 2-process --use_fsdp launch here as {sorted(types)} "
            f"(exit {result.returncode}), not FSDP: it shards only over accelerators (MULTI_GPU-like types), and this "
            f"machine has {torch.cuda.device_count()} CUDA device(s); see docs/benchmarks.md for the GPU command"
        )


def test_fsdp_training_resumes_exactly(fsdp_available, tmp_path):
    from safetensors.torch import load_file

    from tevit_hf.training.checkpointing import LATEST_FILENAME

    data = tmp_path / "data"
    generate_synthetic_vis_dataset(data, num_videos=2, num_frames=4, height=64, width=96, num_classes=3, mp4="none")
    common = ["--max_train_steps", "4", "--checkpointing_steps", "2", "--skip_final_evaluation"]

    straight_dir = tmp_path / "straight"
    straight = subprocess.run(
        [*fsdp_launcher(), str(TRAIN_SCRIPT), *tiny_train_arguments(data, straight_dir, *common)],
        cwd=REPO_ROOT,
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert straight.returncode == 0, straight.stderr[-4000:]

    resumed_dir = tmp_path / "resumed"
    arguments = tiny_train_arguments(data, resumed_dir, *common)
    process = subprocess.Popen(
        [*fsdp_launcher(), str(TRAIN_SCRIPT), *arguments, "--debug_sleep_after_checkpoint", "600"],
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
    resumed = subprocess.run(
        [*fsdp_launcher(), str(TRAIN_SCRIPT), *arguments, "--resume_from_checkpoint", "latest"],
        cwd=REPO_ROOT,
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    straight_weights = load_file(straight_dir / "model.safetensors")
    resumed_weights = load_file(resumed_dir / "model.safetensors")
    assert straight_weights.keys() == resumed_weights.keys()
    assert all(torch.equal(straight_weights[key], resumed_weights[key]) for key in straight_weights)
