"""Shared fixtures: a tiny TeViT config and synthetic clip labels."""

from __future__ import annotations

import re

import pytest
import torch

from tevit_hf import TeViTConfig
from tevit_hf.configuration_tevit import TINY_CONFIG_KWARGS


def tiny_config(**overrides) -> TeViTConfig:
    """A TeViT small enough for CPU tests (every structural feature of the full model kept)."""
    values = {**TINY_CONFIG_KWARGS, "num_labels": 3}
    values.update(overrides)
    return TeViTConfig(**values)


def tiny_train_arguments(dataset, output_dir, *extra: str) -> list[str]:
    """`scripts/train.py` arguments for a tiny model on a small synthetic dataset (96x64 frames, clips of 3)."""
    return [
        "--model_name_or_path", "tiny",
        "--train_annotations", str(dataset / "annotations.json"),
        "--output_dir", str(output_dir),
        "--clip_length", "3",
        "--train_scales", "96x64",
        "--test_size", "96x64",
        "--per_device_train_batch_size", "2",
        "--num_workers", "0",
        "--num_threads", "1",
        "--learning_rate", "1e-3",
        *extra,
    ]  # fmt: skip


def make_clip_labels(num_frames: int, height: int, width: int, absent: list[tuple[int, int]] = ()) -> dict:
    """Two rectangles (classes 0 and 2) in every frame; `absent` lists (frame, instance) pairs to hide."""
    boxes_xyxy = torch.tensor([[10.0, 8.0, 40.0, 40.0], [44.0, 20.0, 90.0, 60.0]])
    masks = torch.zeros(num_frames, 2, height, width, dtype=torch.bool)
    valid = torch.ones(num_frames, 2, dtype=torch.bool)
    for instance, (x1, y1, x2, y2) in enumerate(boxes_xyxy.long().tolist()):
        masks[:, instance, y1:y2, x1:x2] = True
    for frame, instance in absent:
        valid[frame, instance] = False
        masks[frame, instance] = False
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    x1, y1, x2, y2 = (boxes_xyxy / scale).unbind(-1)
    cxcywh = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
    boxes = cxcywh[None].repeat(num_frames, 1, 1)
    boxes[~valid] = 0.0
    return {"class_labels": torch.tensor([0, 2]), "boxes": boxes, "masks": masks, "valid": valid}


def assert_cli_error(capsys, argv: list[str], pattern: str) -> str:
    """Run `tevit-hf argv`: exit status 1 and one `tevit-hf <command>: error: ...` line matching `pattern`, no
    traceback. Returns the error line."""
    from tevit_hf.commands.cli import main

    capsys.readouterr()
    assert main(argv) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"tevit-hf {argv[0]}: error: "), errors[0]
    assert re.search(pattern, errors[0]), (pattern, errors[0])
    return errors[0]


@pytest.fixture
def config() -> TeViTConfig:
    return tiny_config()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def demo_onnx_path(tmp_path_factory):
    """The bundled demo model exported once per session by `tevit-hf export --format onnx --verify` (an export takes
    about two minutes here), shared by the export and benchmark tests."""
    pytest.importorskip("onnxruntime", reason="the [export] extra (onnxruntime) is not installed")
    pytest.importorskip(
        "onnxscript", reason="the [export] extra (onnxscript, the ONNX exporter's translator) is missing"
    )
    from tevit_hf.commands.cli import main

    path = tmp_path_factory.mktemp("onnx") / "demo.onnx"
    assert main(["export", "--model", "demo", "--format", "onnx", "--output", str(path), "--verify"]) == 0
    return path
