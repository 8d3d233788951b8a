"""Export the TeViT forward to ONNX or a `torch.export` program, and verify an export against PyTorch.

Only the model forward is exported: pre-processing (`TeViTImageProcessor`), post-processing (mask pasting, RLE) and
tracking stay in Python, and `onnx_model.ONNXTeViTModel` plugs an exported ONNX file into the same clip runner.

The exported graph takes `pixel_values` `(1, T, 3, H, W)` float32 and `pixel_mask` `(1, H, W)` int64 and returns
`EXPORT_OUTPUT_NAMES`, the fields of `TeViTVideoInstanceSegmentationOutput` that post-processing reads plus the
last-stage logits and boxes. Shapes:
- dynamic: the frame count `T` (1 to `MAX_FRAMES`) and the padded frame size `H`, `W` (multiples of 32 from 64 to
  `MAX_SIDE`; the image processor pads to multiples of 32);
- static: the batch (1 clip: the clip runner and the tracker run one clip at a time), the channels, the number of
  queries and of selected instances (the config's `num_selected_instances`), the mask size.

The ONNX file carries the model's config and the image processor's config as metadata (`tevit_config`,
`tevit_preprocessor_config`), so it is all `tevit-hf predict --onnx` needs. ONNX uses opset `DEFAULT_OPSET`
(onnxruntime's CPU provider runs every operator) and the dynamo exporter of `torch.onnx` (it needs `onnxscript`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import TeViTError
from .file_utils import staged_file


logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torch-export")
FORMAT_SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}
INPUT_NAMES = ("pixel_values", "pixel_mask")
EXPORT_OUTPUT_NAMES = (
    "class_logits",
    "pred_boxes",
    "selected_scores",
    "selected_labels",
    "selected_query_indices",
    "selected_boxes",
    "selected_mask_logits",
    "image_sizes",
)
# Outputs compared with a tolerance by `verify_export`; the integer ones must be equal.
COMPARED_FLOAT_OUTPUTS = ("class_logits", "pred_boxes", "selected_scores", "selected_boxes", "selected_mask_logits")
EXACT_OUTPUTS = ("selected_labels", "selected_query_indices", "image_sizes")
DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
MAX_FRAMES = 4096
MAX_SIDE = 4096
SIDE_MULTIPLE = 32
CONFIG_METADATA_KEY = "tevit_config"
PREPROCESSOR_METADATA_KEY = "tevit_preprocessor_config"
# The example clip export traces with: 2 frames (a size of 1 would be specialised) of 64 x 96 pixels.
EXAMPLE_FRAMES, EXAMPLE_HEIGHT, EXAMPLE_WIDTH = 2, 64, 96


class ExportError(TeViTError, RuntimeError):
    """An export that failed, or an exported model that does not match PyTorch."""


class TeViTExportableForward(nn.Module):
    """`TeViTForVideoInstanceSegmentation` as a graph export can trace: two tensors in, `EXPORT_OUTPUT_NAMES` out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        return tuple(getattr(outputs, name) for name in EXPORT_OUTPUT_NAMES)


def example_inputs(
    num_frames: int = EXAMPLE_FRAMES, height: int = EXAMPLE_HEIGHT, width: int = EXAMPLE_WIDTH, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random normalised clip `(1, T, 3, H, W)` and a pixel mask whose last 32 rows are padding (when `H > 64`)."""
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(1, num_frames, 3, height, width, generator=generator)
    pixel_mask = torch.ones(1, height, width, dtype=torch.long)
    if height > 2 * SIDE_MULTIPLE:
        pixel_mask[:, height - SIDE_MULTIPLE :] = 0
    return pixel_values, pixel_mask


def dynamic_shapes() -> dict[str, dict[int, Any]]:
    """`torch.export` dynamic dimensions: frames, and padded height and width as multiples of 32 (module docstring)."""
    frames = torch.export.Dim("num_frames", min=1, max=MAX_FRAMES)
    height = torch.export.Dim("height_blocks", min=2, max=MAX_SIDE // SIDE_MULTIPLE)
    width = torch.export.Dim("width_blocks", min=2, max=MAX_SIDE // SIDE_MULTIPLE)
    return {
        "pixel_values": {1: frames, 3: SIDE_MULTIPLE * height, 4: SIDE_MULTIPLE * width},
        "pixel_mask": {1: SIDE_MULTIPLE * height, 2: SIDE_MULTIPLE * width},
    }


def export_program(model: nn.Module) -> torch.export.ExportedProgram:
    """`torch.export` of the model forward (float32, CPU, eval mode) with dynamic frames and frame size."""
    model = model.to(device="cpu", dtype=torch.float32).eval()
    started = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(TeViTExportableForward(model), example_inputs(), dynamic_shapes=dynamic_shapes())
    logger.info("torch.export traced the model in %.1f s", time.perf_counter() - started)
    return program


def export_onnx(
    model: nn.Module,
    output: str | os.PathLike,
    image_processor: Any | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    program: torch.export.ExportedProgram | None = None,
) -> Path:
    """Export the model forward to an ONNX file (written as one unit) with the configs as metadata.

    Args:
        program: the `export_program(model)` result when already computed (the ONNX exporter starts from it).
    """
    _require("onnxscript", "ONNX export")
    program = export_program(model) if program is None else program
    started = time.perf_counter()
    onnx_program = torch.onnx.export(
        program,
        input_names=list(INPUT_NAMES),
        output_names=list(EXPORT_OUTPUT_NAMES),
        opset_version=opset,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    metadata = {CONFIG_METADATA_KEY: model.config.to_json_string()}
    if image_processor is not None:
        metadata[PREPROCESSOR_METADATA_KEY] = image_processor.to_json_string()
    # On the IR model: `model_proto` is serialised afresh from it on every access.
    onnx_program.model.metadata_props.update(metadata)
    with staged_file(output, overwrite=overwrite) as staging:
        onnx_program.save(os.fspath(staging))
    logger.info("ONNX export (opset %d) in %.1f s: %s", opset, time.perf_counter() - started, output)
    return Path(output)


def save_program(program: torch.export.ExportedProgram, output: str | os.PathLike, overwrite: bool = False) -> Path:
    """`torch.export.save` the program to a `.pt2` file, written as one unit (load with `torch.export.load`)."""
    with staged_file(output, overwrite=overwrite) as staging:
        torch.export.save(program, os.fspath(staging))
    return Path(output)


@dataclass
class VerificationReport:
    """How an exported model compares with PyTorch on one clip: max absolute difference per float output, and
    whether the integer outputs (selected instances, sizes) are equal."""

    clip_shape: tuple[int, ...]
    max_abs_differences: dict[str, float]
    exact_outputs_equal: dict[str, bool]
    tolerance: float

    @property
    def passed(self) -> bool:
        return all(self.exact_outputs_equal.values()) and all(
            difference <= self.tolerance for difference in self.max_abs_differences.values()
        )

    def describe(self) -> str:
        differences = ", ".join(f"{name} {value:.2e}" for name, value in self.max_abs_differences.items())
        unequal = [name for name, equal in self.exact_outputs_equal.items() if not equal]
        return f"clip {tuple(self.clip_shape)}: max |difference| {differences} (tolerance {self.tolerance:g}); " + (
            f"different {', '.join(unequal)}" if unequal else "same selected instances"
        )


def compare_outputs(
    reference: dict[str, torch.Tensor],
    exported: dict[str, torch.Tensor],
    clip_shape: tuple[int, ...],
    tolerance: float = DEFAULT_TOLERANCE,
) -> VerificationReport:
    """Compare the `EXPORT_OUTPUT_NAMES` tensors of PyTorch (`reference`) and of an exported model."""
    differences = {
        name: float((torch.as_tensor(exported[name]).double() - reference[name].double()).abs().max())
        for name in COMPARED_FLOAT_OUTPUTS
    }
    exact = {
        name: bool(torch.equal(torch.as_tensor(exported[name]).long(), reference[name].long()))
        for name in EXACT_OUTPUTS
    }
    return VerificationReport(tuple(clip_shape), differences, exact, tolerance)


def reference_outputs(
    model: nn.Module, pixel_values: torch.Tensor, pixel_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The PyTorch eager outputs an export is compared with."""
    with torch.inference_mode():
        values = TeViTExportableForward(model.eval())(pixel_values, pixel_mask)
    return dict(zip(EXPORT_OUTPUT_NAMES, values))


def verify_export(
    model: nn.Module,
    exported_path: str | os.PathLike,
    export_format: str,
    clips: list[tuple[int, int, int]] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[VerificationReport]:
    """Run the exported file (onnxruntime, or the loaded `torch.export` program) and PyTorch on random clips.

    Args:
        clips: `(frames, height, width)` of the random clips; the default uses other sizes than the traced example,
            so the dynamic dimensions are exercised.

    Raises:
        ExportError: an output differs by more than `tolerance`, or the selected instances differ.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {export_format!r}.")
    clips = clips or [(3, 96, 128), (1, 64, 64)]
    if export_format == "onnx":
        from .onnx_model import ONNXTeViTModel

        runner = ONNXTeViTModel(exported_path).run_outputs
    else:
        program = torch.export.load(os.fspath(exported_path)).module()

        def runner(pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                return dict(zip(EXPORT_OUTPUT_NAMES, program(pixel_values, pixel_mask)))

    reports = []
    model = model.to(device="cpu", dtype=torch.float32).eval()
    for seed, (num_frames, height, width) in enumerate(clips, start=1):
        pixel_values, pixel_mask = example_inputs(num_frames, height, width, seed=seed)
        report = compare_outputs(
            reference_outputs(model, pixel_values, pixel_mask),
            runner(pixel_values, pixel_mask),
            tuple(pixel_values.shape),
            tolerance,
        )
        logger.info("verify %s: %s", export_format, report.describe())
        if not report.passed:
            raise ExportError(f"{exported_path} does not match PyTorch: {report.describe()}")
        reports.append(report)
    return reports


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The TeViT config (and the image processor config, when stored) of an ONNX file written by `export_onnx`.

    Raises:
        ExportError: the file has no TeViT config metadata (it was not written by `tevit-hf export`).
    """
    _require("onnx", "reading ONNX files")
    import onnx

    proto = onnx.load(os.fspath(path), load_external_data=False)
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    if CONFIG_METADATA_KEY not in metadata:
        raise ExportError(f"{path} has no `{CONFIG_METADATA_KEY}` metadata: export it with `tevit-hf export`.")
    return {
        key: json.loads(value)
        for key, value in metadata.items()
        if key in (CONFIG_METADATA_KEY, PREPROCESSOR_METADATA_KEY)
    }


def _require(module: str, purpose: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ExportError(f"{purpose} needs the `{module}` package: pip install 'tevit-hf[export]'.")


__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_OUTPUT_NAMES",
    "ExportError",
    "TeViTExportableForward",
    "VerificationReport",
    "compare_outputs",
    "dynamic_shapes",
    "example_inputs",
    "export_onnx",
    "export_program",
    "read_onnx_metadata",
    "reference_outputs",
    "save_program",
    "verify_export",
]
