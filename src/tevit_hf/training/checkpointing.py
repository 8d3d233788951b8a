"""Resumable training checkpoints: Accelerate's `save_state` in `step_N` folders, published atomically.

Layout under the checkpoint folder (default `<output_dir>/checkpoints`):

    step_200/                 Accelerate state (model, optimizer, scheduler, RNG of every process, grad scaler)
        training_state.json   our progress record (step, epoch, batches of the epoch done), written last
    step_400/
    latest                    text file naming the newest complete checkpoint ("step_400")

A checkpoint is written to `.step_N.tmp` and renamed to `step_N` only once complete, and `latest` is replaced
atomically after that rename, so a crash at any moment leaves `latest` pointing to a complete checkpoint. Checkpoints
are named by the optimizer step, so Accelerate's automatic naming (and its `iteration` counter, which a resumed run
would otherwise have to restore) is not used.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import RNG_STATE_NAME
from accelerate.utils import load as load_state_file

from ..errors import TeViTError, is_disk_full
from ..file_utils import write_text_atomic


logger = logging.getLogger(__name__)

CHECKPOINTS_DIRNAME = "checkpoints"
LATEST_FILENAME = "latest"
TRAINING_STATE_FILENAME = "training_state.json"
CHECKPOINT_PREFIX = "step_"
# The key of training_state.json under which the schedule arguments are recorded.
SCHEDULE_KEY = "schedule"
_CHECKPOINT_PATTERN = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


@dataclass
class TrainingProgress:
    """Where training stands, enough to continue exactly.

    global_step: optimizer steps done. epoch: current epoch (0-based). batches_in_epoch: micro-batches of that epoch
    already consumed by each process (the data order of an epoch depends only on the seed and the epoch).
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> TrainingProgress:
        try:
            return cls(**{name: int(values[name]) for name in ("global_step", "epoch", "batches_in_epoch")})
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed training state {values!r}: {error}") from error


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step}"


def list_checkpoints(checkpoint_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints `(step, path)` under `checkpoint_dir`, oldest first."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for child in checkpoint_dir.iterdir():
        match = _CHECKPOINT_PATTERN.match(child.name)
        if match and (child / TRAINING_STATE_FILENAME).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def save_checkpoint(
    accelerator: Accelerator,
    checkpoint_dir: str | os.PathLike,
    progress: TrainingProgress,
    total_limit: int | None = None,
    schedule: Mapping[str, Any] | None = None,
) -> Path:
    """Save the full training state as `checkpoint_dir/step_<global_step>` and point `latest` to it.

    Every process must call this (each saves its own RNG state). `schedule`: the arguments that shape the step and
    learning-rate schedule, recorded so a resume with other values is refused. Returns the checkpoint path.
    """
    checkpoint_dir = Path(checkpoint_dir)
    name = checkpoint_name(progress.global_step)
    final_path = checkpoint_dir / name
    # Same temporary name on every process: they all write into it.
    temporary_path = checkpoint_dir / f".{name}.tmp"
    if accelerator.is_main_process:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if temporary_path.exists():
            shutil.rmtree(temporary_path)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(temporary_path))
    except Exception as error:  # OSError, torch's RuntimeError, safetensors' SafetensorError
        if not is_disk_full(error):
            raise
        # Named as what it is (torch's own message does not say), and no half-written checkpoint is left behind.
        shutil.rmtree(temporary_path, ignore_errors=True)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final_path)) from error
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {**asdict(progress), SCHEDULE_KEY: dict(schedule or {})}
        write_text_atomic(temporary_path / TRAINING_STATE_FILENAME, json.dumps(state, indent=2))
        if final_path.exists():
            shutil.rmtree(final_path)
        os.replace(temporary_path, final_path)
        write_text_atomic(checkpoint_dir / LATEST_FILENAME, name + "\n")
        if total_limit is not None and total_limit > 0:
            _prune(checkpoint_dir, total_limit, keep=final_path)
        logger.info("saved checkpoint %s", final_path)
    accelerator.wait_for_everyone()
    return final_path


def _prune(checkpoint_dir: Path, total_limit: int, keep: Path) -> None:
    checkpoints = [path for _, path in list_checkpoints(checkpoint_dir)]
    for path in checkpoints[: max(len(checkpoints) - total_limit, 0)]:
        if path != keep:
            shutil.rmtree(path)
            logger.info("removed old checkpoint %s (checkpoints_total_limit=%d)", path, total_limit)


def resolve_checkpoint(resume_from: str, checkpoint_dir: str | os.PathLike) -> Path | None:
    """The checkpoint folder to resume from.

    `resume_from` is a checkpoint folder, or "latest": the one named by `checkpoint_dir/latest` (falling back to the
    highest complete `step_N` if the pointer is missing or stale). Returns None for "latest" when there is no
    checkpoint yet (a fresh start). Raises FileNotFoundError for a path that is not a complete checkpoint.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if resume_from != "latest":
        path = Path(resume_from)
        if not (path / TRAINING_STATE_FILENAME).is_file():
            raise FileNotFoundError(
                f"--resume_from_checkpoint {resume_from}: not a complete checkpoint folder (no {TRAINING_STATE_FILENAME})"
            )
        return path
    pointer = checkpoint_dir / LATEST_FILENAME
    if pointer.is_file():
        path = checkpoint_dir / pointer.read_text(encoding="utf-8").strip()
        if (path / TRAINING_STATE_FILENAME).is_file():
            return path
        logger.warning("%s names %s, which is not a complete checkpoint; using the newest one instead", pointer, path)
    checkpoints = list_checkpoints(checkpoint_dir)
    return checkpoints[-1][1] if checkpoints else None


class CheckpointError(TeViTError, ValueError):
    """A checkpoint that cannot be restored exactly (a missing or corrupted file, named)."""


def load_checkpoint(
    accelerator: Accelerator,
    path: str | os.PathLike,
    without_rng_state: bool = False,
    schedule: Mapping[str, Any] | None = None,
) -> TrainingProgress:
    """Restore the Accelerate state saved in `path` (on every process) and return its training progress.

    The random states are part of exact resume: Accelerate only logs when it cannot load them (and the run then
    quietly diverges), so they are checked here first and a corrupted or missing file is an error, unless
    `without_rng_state` (`--resume_without_rng_state`) accepts a resumed run that differs from an uninterrupted one.
    The schedule arguments of this run (`schedule`) must equal those the checkpoint was saved with: the restored
    learning-rate scheduler would silently keep the old schedule otherwise.
    """
    path = Path(path)
    state_file = path / TRAINING_STATE_FILENAME
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        progress = TrainingProgress.from_dict(state)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{state_file}: cannot read the training progress ({error}).") from error
    saved_schedule = state.get(SCHEDULE_KEY) or {}
    changed = [
        f"--{name} {saved_schedule[name]!r} (checkpoint) vs {value!r} (now)"
        for name, value in (schedule or {}).items()
        if name in saved_schedule and saved_schedule[name] != value
    ]
    if changed:
        raise CheckpointError(
            f"{path} was saved with another schedule: {'; '.join(changed)}. A resume continues the saved learning-rate "
            "schedule, so these must not change: resume with the same values, or start a new run from its weights."
        )
    rng_file = path / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    try:
        states = load_state_file(rng_file)
        if not {"random_state", "numpy_random_seed", "torch_manual_seed"} <= set(states):
            raise ValueError(f"it lacks random states (keys {sorted(states)})")
    except Exception as error:  # unpickling garbage raises many types
        if not without_rng_state:
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(
                f"{rng_file} cannot be loaded, so the resumed run would not match an uninterrupted one: resume from "
                f"another checkpoint, or pass --resume_without_rng_state ({type(error).__name__}: {reason})."
            ) from error
        logger.warning("%s cannot be loaded (%s): resuming without the random states, as asked.", rng_file, error)
    try:
        accelerator.load_state(str(path))
    except Exception as error:
        raise CheckpointError(
            f"{path}: cannot restore the training state ({type(error).__name__}: {error})."
        ) from error
    logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, *asdict(progress).values())
    return progress


__all__ = [
    "CHECKPOINTS_DIRNAME",
    "CheckpointError",
    "LATEST_FILENAME",
    "TRAINING_STATE_FILENAME",
    "TrainingProgress",
    "checkpoint_name",
    "list_checkpoints",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]
