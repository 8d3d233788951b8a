"""Validation during training: YouTube-VIS AP of the current model on the validation videos.

Each process runs offline inference (the whole video as one clip, as `tevit-hf evaluate` does) on its share of the
videos; the per-video result lists are gathered with `accelerator.gather_for_metrics` (which drops the duplicates
Accelerate adds to even out the last batch) and the main process scores them. Every process returns the metrics.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import broadcast_object_list
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..evaluation.inference import dataset_label_mapping, make_video_predictor, predict_dataset_video
from ..evaluation.youtube_vis_eval import evaluate_youtube_vis
from ..image_processing_tevit import TeViTImageProcessor
from .data_setup import ValidationSet


logger = logging.getLogger(__name__)


def _collate_indices(indices: list[int]) -> list[int]:
    return list(indices)


def predict_video(
    model: torch.nn.Module,
    image_processor: TeViTImageProcessor,
    video: dict,
    label_to_category: dict[int, int],
    mask_threshold: float,
) -> list[dict[str, Any]]:
    """YouTube-VIS result entries of one dataset row (the whole video as one clip)."""
    predictor = make_video_predictor(model, image_processor, mask_threshold=mask_threshold)
    return predict_dataset_video(predictor, video, label_to_category)


def evaluate_on_validation_set(
    accelerator: Accelerator,
    model: torch.nn.Module,
    image_processor: TeViTImageProcessor,
    validation_set: ValidationSet,
    mask_threshold: float = 0.5,
) -> dict[str, Any]:
    """YouTube-VIS metrics (AP, AP50, AP75, AR1, AR10, per_category_AP, ...) of `model` on `validation_set`.

    `model` is the unwrapped model; it is put in eval mode and restored to its previous mode afterwards. Every
    process must call this.
    """
    # Evaluation must not consume the training's random numbers (the data loader draws a seed from the global
    # generator): with forked generators, a run with evaluation trains exactly as one without, and resuming from a
    # checkpoint taken at an evaluation step gives the uninterrupted run's weights.
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        was_training = model.training
        model.eval()
        label_to_category = dataset_label_mapping(model.config.id2label, validation_set.info)
        # The module-level `prepare_data_loader` shards the videos without registering the loader with the
        # accelerator (whose checkpoints would then depend on how often we evaluated).
        loader = prepare_data_loader(
            DataLoader(range(len(validation_set.videos)), batch_size=1, collate_fn=_collate_indices),
            num_processes=accelerator.num_processes,
            process_index=accelerator.process_index,
            put_on_device=False,
        )
        per_video_results: list[list[dict[str, Any]]] = []
        progress = tqdm(loader, desc="evaluation", unit="video", disable=not accelerator.is_local_main_process)
        for indices in progress:
            batch_results = [
                predict_video(model, image_processor, validation_set.videos[index], label_to_category, mask_threshold)
                for index in indices
            ]
            per_video_results.extend(accelerator.gather_for_metrics(batch_results, use_gather_object=True))
        model.train(was_training)

    metrics: list[Any] = [None]
    if accelerator.is_main_process:
        results = [entry for video_results in per_video_results for entry in video_results]
        video_ids = [int(video_id) for video_id in validation_set.videos["video_id"]]
        metrics[0] = evaluate_youtube_vis(validation_set.annotation_file, results, video_ids=video_ids)
    if accelerator.num_processes > 1:
        broadcast_object_list(metrics, from_process=0)
    return metrics[0]


__all__ = ["evaluate_on_validation_set", "predict_video"]
