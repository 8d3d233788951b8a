"""An exported ONNX TeViT run by onnxruntime, in place of the PyTorch model in the one inference path.

`ONNXTeViTModel` is called like the PyTorch model (`model(pixel_values=..., pixel_mask=...)`) and returns a
`TeViTVideoInstanceSegmentationOutput` with the fields post-processing reads, so `TeViTClipRunner`, the near-online
tracker, the pipeline and `tevit-hf predict --onnx` run it unchanged: pre-processing, post-processing and tracking
stay the Python code of the PyTorch path. The config and the image processor come from the file's metadata
(`export.export_onnx` writes them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .configuration_tevit import TeViTConfig
from .export import (
    CONFIG_METADATA_KEY,
    EXPORT_OUTPUT_NAMES,
    INPUT_NAMES,
    PREPROCESSOR_METADATA_KEY,
    ExportError,
    _require,
    read_onnx_metadata,
)
from .image_processing_tevit import TeViTImageProcessor
from .modeling_tevit import TeViTVideoInstanceSegmentationOutput


class ONNXTeViTModel:
    """onnxruntime session of a `tevit-hf export --format onnx` file, with the model's interface.

    Args:
        path: the `.onnx` file.
        providers: onnxruntime execution providers (default: the CPU provider).
        num_threads: intra-op threads of the session (default: onnxruntime's choice).

    Attributes:
        config: the `TeViTConfig` stored in the file; `device` (CPU) and `dtype` (float32) of the inputs it takes.
    """

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(
        self, path: str | os.PathLike, providers: list[str] | None = None, num_threads: int | None = None
    ) -> None:
        _require("onnxruntime", "running ONNX models")
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {str(self.path)!r} does not exist.")
        self.metadata = read_onnx_metadata(self.path)
        self.config = TeViTConfig.from_dict(self.metadata[CONFIG_METADATA_KEY])
        options = onnxruntime.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(
            os.fspath(self.path), options, providers=providers or ["CPUExecutionProvider"]
        )
        names = tuple(output.name for output in self.session.get_outputs())
        if names != EXPORT_OUTPUT_NAMES:
            raise ExportError(
                f"{self.path}: outputs {names} are not those of `tevit-hf export` {EXPORT_OUTPUT_NAMES}."
            )

    def image_processor(self) -> TeViTImageProcessor:
        """The image processor stored in the file (the default `TeViTImageProcessor` when none is)."""
        settings = self.metadata.get(PREPROCESSOR_METADATA_KEY)
        return TeViTImageProcessor.from_dict(settings) if settings else TeViTImageProcessor()

    def run_outputs(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """`EXPORT_OUTPUT_NAMES` -> tensors for one clip `(1, T, 3, H, W)` (the exported batch is static: 1)."""
        if pixel_values.ndim != 5 or pixel_values.shape[0] != 1:
            raise ValueError(f"The ONNX model takes one clip (1, T, 3, H, W), got {tuple(pixel_values.shape)}.")
        if pixel_mask is None:
            pixel_mask = torch.ones(1, *pixel_values.shape[-2:], dtype=torch.long)
        feeds = {
            INPUT_NAMES[0]: pixel_values.detach().cpu().to(torch.float32).numpy(),
            INPUT_NAMES[1]: pixel_mask.detach().cpu().to(torch.long).numpy(),
        }
        values = self.session.run(list(EXPORT_OUTPUT_NAMES), feeds)
        return {name: torch.from_numpy(np.asarray(value)) for name, value in zip(EXPORT_OUTPUT_NAMES, values)}

    def __call__(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None, **unused: Any
    ) -> TeViTVideoInstanceSegmentationOutput:
        return TeViTVideoInstanceSegmentationOutput(**self.run_outputs(pixel_values, pixel_mask))

    def eval(self) -> ONNXTeViTModel:
        return self

    def to(self, device: Any = None, *args: Any, **kwargs: Any) -> ONNXTeViTModel:
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(
                f"The ONNX model runs with onnxruntime's CPU provider; device {device!r} is not supported."
            )
        return self


def load_onnx_pipeline(path: str | os.PathLike, num_threads: int | None = None) -> Any:
    """`VideoInstanceSegmentationPipeline` on an ONNX file: the PyTorch path with onnxruntime for the forward."""
    from .pipeline_tevit import VideoInstanceSegmentationPipeline

    model = ONNXTeViTModel(path, num_threads=num_threads)
    return VideoInstanceSegmentationPipeline(
        model=model, image_processor=model.image_processor(), device=torch.device("cpu")
    )


__all__ = ["ONNXTeViTModel", "load_onnx_pipeline"]
