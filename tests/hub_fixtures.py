"""Helpers for the pipeline / Hub / demo tests: a tiny TeViT, its Hub folder, and small generated videos."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from conftest import tiny_config
from PIL import Image

from tevit_hf import TeViTForVideoInstanceSegmentation, TeViTImageProcessor
from tevit_hf.commands.push_to_hub import save_hub_folder
from tevit_hf.video_io import write_video


# The processor of the tiny model resizes to at most this (small, so every test runs in a second or two).
TINY_PROCESSOR_SIZE = {"longest_edge": 96, "shortest_edge": 64}
CLASS_NAMES = {0: "circle", 1: "square", 2: "triangle"}


def tiny_model(seed: int = 0) -> TeViTForVideoInstanceSegmentation:
    torch.manual_seed(seed)
    config = tiny_config(id2label=dict(CLASS_NAMES), label2id={name: i for i, name in CLASS_NAMES.items()})
    return TeViTForVideoInstanceSegmentation(config).eval()


def tiny_processor() -> TeViTImageProcessor:
    return TeViTImageProcessor(size=dict(TINY_PROCESSOR_SIZE))


def save_tiny_hub_folder(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A Hub-loadable folder (weights, config with auto_map / custom_pipelines, processor, code) of a tiny model."""
    return save_hub_folder(tiny_model(seed), tiny_processor(), folder)


def moving_shapes(num_frames: int = 6, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """`(T, H, W, 3)` uint8: a bright square and a disc moving over a noisy background."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, size=(num_frames, height, width, 3), dtype=np.uint8)
    rows, cols = np.mgrid[:height, :width]
    for t in range(num_frames):
        left = 4 + 3 * t
        frames[t, 8:24, left : left + 16] = (230, 40, 40)
        disc = (rows - 32) ** 2 + (cols - (width - 12 - 2 * t)) ** 2 < 64
        frames[t][disc] = (40, 200, 60)
    return frames


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 6.0) -> Path:
    return write_video(list(frames), path, fps=fps)


def write_frame_folder(folder: str | os.PathLike, frames: np.ndarray) -> list[Path]:
    """PNG frames (lossless) named 0.png, 1.png, ...; returns their paths in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        path = folder / f"{index}.png"
        Image.fromarray(frame).save(path)
        paths.append(path)
    return paths


def run_python_without_tevit_hf(code: str, *args: str, cwd: str | os.PathLike, timeout: float = 300) -> str:
    """Run `code` in a fresh interpreter in which `import tevit_hf` raises ImportError; returns its stdout.

    The blocker (`sys.modules["tevit_hf"] = None`) is installed before `code` runs, and `code` starts by asserting
    that the import fails, so a passing run proves that nothing it did used the installed package.
    """
    prelude = textwrap.dedent(
        """
        import sys
        sys.modules["tevit_hf"] = None
        try:
            import tevit_hf  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("tevit_hf is importable in the fresh process")
        """
    )
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(Path(cwd) / "hf_modules"),
        "PYTHONPATH": "",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    completed = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=timeout,
    )
    assert completed.returncode == 0, f"fresh process failed:\n{completed.stderr[-3000:]}"
    return completed.stdout
