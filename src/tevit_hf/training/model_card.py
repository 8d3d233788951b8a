"""The README.md (model card) saved with a trained model: what it is, how it was trained, how well it does."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..configuration_tevit import TeViTConfig
from ..file_utils import write_text_atomic


MODEL_CARD_FILENAME = "README.md"
_METRIC_ORDER = ("AP", "AP50", "AP75", "AR1", "AR10")


# The Hub has no video segmentation task: TeViT cards use the closest one, and tag the real task.
HUB_PIPELINE_TAG = "image-segmentation"
CARD_TAGS = ("tevit", "video-instance-segmentation", "vision")
DEFAULT_DATASET_ID = "custom-youtube-vis-format"
SYNTHETIC_DATASET_ID = "tevit-hf-synthetic-vis"  # as the bundled demo card names it


def _front_matter(
    model_name: str, dataset_id: str, dataset_name: str | None, metrics: Mapping[str, Any] | None
) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    results = [
        EvalResult(
            task_type="video-instance-segmentation",
            task_name="Video Instance Segmentation",
            dataset_type=dataset_id,
            dataset_name=(dataset_name or dataset_id).strip("`"),
            dataset_split="validation",
            metric_type="mean_average_precision" if name.startswith("AP") else "mean_average_recall",
            metric_name=name,
            metric_value=round(100 * float(metrics[name]), 2),
        )
        for name in _METRIC_ORDER
        if metrics and name in metrics
    ]
    data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        pipeline_tag=HUB_PIPELINE_TAG,
        tags=list(CARD_TAGS),
        datasets=[dataset_id],
        model_name=model_name,
        eval_results=results or None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def render_model_card(
    config: TeViTConfig,
    training_summary: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
    dataset_id: str | None = None,
) -> str:
    """Markdown model card with Hub metadata (YAML front matter).

    Args:
        config: the trained model's config (classes, sizes).
        training_summary: hyper-parameters and run facts to list (e.g. steps, batch, lr, wall time, command).
        metrics: validation metrics as returned by `evaluate_youtube_vis` (fractions), if any.
        model_name: title; defaults to "TeViT".
        dataset_name: training data description.
        dataset_id: the dataset's id for the Hub metadata (`datasets`, the model-index results).

    The metadata is written with `huggingface_hub.ModelCardData` and passes `scripts/push_to_hub.py`'s validation
    when the run has validation metrics (the model-index needs results to publish).
    """
    model_name = model_name or "TeViT"
    num_parameters = training_summary.get("num_parameters")
    front_matter = _front_matter(model_name, dataset_id or DEFAULT_DATASET_ID, dataset_name, metrics)
    lines = [
        front_matter,
        f"# {model_name}",
        "",
        "TeViT (Temporally Efficient Vision Transformer, Yang et al., CVPR 2022) for video instance segmentation: a "
        + (
            "MsgShifT (PVTv2 with temporally shifted messenger tokens) backbone"
            if config.uses_msgshift_backbone
            else f'Transformers {config.backbone_config.model_type} backbone (no messenger tokens: "STQI only")'
        )
        + ", an FPN and a QueryInst cascade with spatio-temporal query interaction, trained with `tevit-hf`'s "
        "`scripts/train.py`.",
        "",
        "## Model",
        "",
        f"- classes ({config.num_labels}): {', '.join(config.id2label[index] for index in sorted(config.id2label))}",
        (
            f"- backbone widths {list(config.backbone_hidden_sizes)}, depths {list(config.backbone_depths)}, "
            f"{config.num_messenger_tokens} messenger tokens"
            if config.uses_msgshift_backbone
            else f"- backbone: {config.backbone_config.model_type}, "
            f"{config.backbone_frozen_stages} frozen stage(s), BatchNorm eval: {config.backbone_norm_eval}"
        ),
        f"- hidden size {config.hidden_size}, {config.num_queries} queries, {config.num_head_stages} head stages",
    ]
    if num_parameters is not None:
        lines.append(f"- parameters: {int(num_parameters):,}")
    if dataset_name:
        lines += ["", "## Training data", "", dataset_name]
    lines += ["", "## Training", "", "| setting | value |", "|---|---|"]
    for key, value in training_summary.items():
        if key != "num_parameters":
            lines.append(f"| {key} | {_format_value(value)} |")
    if metrics:
        lines += [
            "",
            "## Evaluation (YouTube-VIS metrics on the validation split)",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        for name in _METRIC_ORDER:
            if name in metrics:
                lines.append(f"| {name} | {100 * float(metrics[name]):.1f} |")
        per_category = metrics.get("per_category_AP") or {}
        if per_category:
            lines += ["", "| category | AP |", "|---|---|"]
            lines += [f"| {name} | {100 * float(value):.1f} |" for name, value in per_category.items()]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        "# The folder carries its code: no tevit_hf install needed (with tevit_hf installed, see its README).",
        'segmenter = pipeline("video-instance-segmentation", model="path/to/this/folder", trust_remote_code=True)',
        'instances = segmenter("video.mp4", threshold=0.3)  # per instance: id, label, score, boxes, masks, visible',
        "```",
        "",
    ]
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value).replace("|", "\\|")


def write_model_card(folder: str | os.PathLike, text: str) -> Path:
    """Write `text` as `folder/README.md` atomically."""
    path = Path(folder) / MODEL_CARD_FILENAME
    write_text_atomic(path, text)
    return path


__all__ = ["MODEL_CARD_FILENAME", "render_model_card", "write_model_card"]
