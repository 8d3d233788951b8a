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


def _yaml_list(values: list[str]) -> str:
    return "".join(f"\n- {value}" for value in values)


def render_model_card(
    config: TeViTConfig,
    training_summary: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
) -> str:
    """Markdown model card with Hub metadata (YAML front matter).

    Args:
        config: the trained model's config (classes, sizes).
        training_summary: hyper-parameters and run facts to list (e.g. steps, batch, lr, wall time, command).
        metrics: validation metrics as returned by `evaluate_youtube_vis` (fractions), if any.
        model_name: title; defaults to "TeViT".
        dataset_name: training data description.
    """
    model_name = model_name or "TeViT"
    num_parameters = training_summary.get("num_parameters")
    front_matter = (
        "---\nlibrary_name: transformers\nlicense: apache-2.0\npipeline_tag: video-instance-segmentation\ntags:"
        + _yaml_list(["tevit", "video-instance-segmentation", "vision"])
        + "\n---\n"
    )
    lines = [
        front_matter,
        f"# {model_name}",
        "",
        "TeViT (Temporally Efficient Vision Transformer, Yang et al., CVPR 2022) for video instance segmentation: a "
        "MsgShifT (PVTv2 with temporally shifted messenger tokens) backbone, an FPN and a QueryInst cascade with "
        "spatio-temporal query interaction, trained with `tevit-hf`'s `scripts/train.py`.",
        "",
        "## Model",
        "",
        f"- classes ({config.num_labels}): {', '.join(config.id2label[index] for index in sorted(config.id2label))}",
        f"- backbone widths {list(config.backbone_hidden_sizes)}, depths {list(config.backbone_depths)}, "
        f"{config.num_messenger_tokens} messenger tokens",
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
        "import tevit_hf  # registers TeViT with the Auto classes",
        "from transformers import AutoImageProcessor, AutoModel",
        "",
        'model = AutoModel.from_pretrained("path/to/this/folder").eval()',
        'processor = AutoImageProcessor.from_pretrained("path/to/this/folder")',
        "inputs = processor(videos=[frames], return_tensors='pt')  # frames: list of HxWx3 uint8 arrays",
        "outputs = model(**inputs)",
        "instances = processor.post_process_video_instance_segmentation(outputs, target_sizes=inputs['original_sizes'])",
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
