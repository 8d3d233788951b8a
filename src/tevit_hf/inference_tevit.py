"""The clip runner: the one place where TeViT runs on frames, `TeViTImageProcessor` → model → post-processing.

Every inference path goes through `TeViTClipRunner`:

    source ─► video_io ─► TeViTClipRunner (one clip → instances with per-frame RLEs) ─► ClipLinker (tracking_tevit,
    only links clips) ─► tracks

- `TeViTNearOnlineTracker` (tracking_tevit) runs each overlapping clip through its runner and links them; the
  pipeline (and so `tevit-hf predict` / `demo`) runs the tracker;
- offline evaluation (`tevit-hf evaluate`, the training evaluation hook) runs the whole video as one clip;
- the benchmark times the runner's three stages (`preprocess`, `forward`, `postprocess`) separately.

Inputs go to the model's device and floating dtype (read from its first parameter); post-processing pastes masks
into the original frame size and encodes them as RLE (`return_rle=True`, the default) so that dense masks of a
whole video are never held; callers decode (`masks_tevit.decode_masks_rle`) only when they ask for dense masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)


def model_input_placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's inputs: its first parameter's, else its `device`/`dtype` attributes
    (a model without torch parameters, such as an onnxruntime session)."""
    parameter = next(model.parameters(), None) if hasattr(model, "parameters") else None
    if parameter is not None:
        return parameter.device, parameter.dtype
    return torch.device(model.device), model.dtype


class TeViTClipRunner:
    """Run TeViT on clips: pre-process, forward on the model's device/dtype, post-process to instances.

    Args:
        model: a `TeViTForVideoInstanceSegmentation` (or a compiled wrapper of one); the caller sets eval mode. Any
            callable `model(pixel_values=, pixel_mask=)` that returns the `selected_*` outputs and has `device` and
            `dtype` attributes (for its inputs) plugs in too: `onnx_model.ONNXTeViTModel` runs an exported ONNX file.
        image_processor: a `TeViTImageProcessor`.
        threshold: keep instances with video-level score `>= threshold` (the official model uses none: 0.0).
        mask_threshold: pixel probability threshold of the pasted masks.
        return_rle: per-frame RLEs under `segmentations` (default) instead of dense `masks`.

    Returns (of `__call__`): the instances of the clip as
    `TeViTImageProcessor.post_process_video_instance_segmentation` gives them (sorted by descending score).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_processor: Any,
        threshold: float = 0.0,
        mask_threshold: float = 0.5,
        return_rle: bool = True,
    ) -> None:
        if not 0.0 <= float(mask_threshold) <= 1.0:
            raise ValueError(f"`mask_threshold` must be in [0, 1], got {mask_threshold}.")
        self.model = model
        self.image_processor = image_processor
        self.threshold = float(threshold)
        self.mask_threshold = float(mask_threshold)
        self.return_rle = return_rle

    def preprocess(self, clips: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """A batch of clips (each a sequence of frames, all of one length) → model inputs on the model's device.

        Returns a dict with `pixel_values` (model dtype), `pixel_mask` and the processor's `original_sizes`.
        """
        batch = self.image_processor(videos=[list(clip) for clip in clips], return_tensors="pt")
        device, dtype = model_input_placement(self.model)
        return {
            "pixel_values": batch["pixel_values"].to(device=device, dtype=dtype),
            "pixel_mask": batch["pixel_mask"].to(device),
            "original_sizes": batch["original_sizes"],
        }

    def forward(self, inputs: dict[str, Any]) -> Any:
        """The model's outputs for `preprocess`'s inputs (no gradients)."""
        with torch.inference_mode():
            return self.model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])

    def postprocess(self, outputs: Any, inputs: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Per clip, the instances with boxes and masks (RLE by default) in original pixels."""
        with torch.inference_mode():
            return self.image_processor.post_process_video_instance_segmentation(
                outputs,
                target_sizes=inputs["original_sizes"],
                threshold=self.threshold,
                mask_threshold=self.mask_threshold,
                return_rle=self.return_rle,
            )

    def run(self, clips: Sequence[Sequence[Any]]) -> list[list[dict[str, Any]]]:
        """`postprocess(forward(preprocess(clips)))`: per clip of the batch, its instances."""
        with torch.inference_mode():
            inputs = self.preprocess(clips)
            return self.postprocess(self.forward(inputs), inputs)

    def __call__(self, clip_frames: Sequence[Any]) -> list[dict[str, Any]]:
        """The instances of one clip (its frames in time order; the whole video for offline inference)."""
        return self.run([clip_frames])[0]


__all__ = ["TeViTClipRunner", "model_input_placement"]
