"""The training loop behind `scripts/train.py`: Accelerate (DDP, mixed precision, accumulation), logging,
checkpoints with exact resume, evaluation, and the final `save_pretrained` + model card.

    accelerate launch [--multi_gpu --num_processes N] scripts/train.py --synthetic --output_dir out ...

Distribution is Accelerate's: the same code runs on one CPU, many GPUs or many nodes (`accelerate config`).
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from ..evaluation.youtube_vis_eval import format_metrics_table
from ..file_utils import write_json_atomic
from ..image_processing_tevit import TeViTImageProcessor
from .arguments import TrainingArgumentError
from .checkpointing import (
    CHECKPOINTS_DIRNAME,
    TrainingProgress,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from .data_setup import (
    DataPaths,
    build_train_dataloader,
    build_train_dataset,
    build_validation_set,
    check_data_paths,
    prepare_synthetic_data,
    resolve_frames_dir,
    synthetic_configs,
)
from .evaluation_hook import evaluate_on_validation_set
from .model_card import render_model_card, write_model_card
from .model_setup import build_config, build_model, default_weights_source, parse_config_overrides
from .optimization import (
    OFFICIAL_MAX_STEPS,
    LearningRateSchedule,
    build_lr_scheduler,
    build_optimizer,
    default_schedule_steps,
)


logger = logging.getLogger(__name__)

SYNTHETIC_DIRNAME = "synthetic_data"
EVAL_RESULTS_FILENAME = "eval_results.json"
TRAIN_RESULTS_FILENAME = "train_results.json"
_FINAL_TMP_DIRNAME = ".final_model.tmp"
_RANK_REPORT_GLOB = "rank_*.json"


def weights_checksum(model: torch.nn.Module, include_buffers: bool = True) -> str:
    """SHA-256 of every parameter (and buffer), sorted by name, raw bytes: equal iff they are bit-identical."""
    tensors = model.state_dict() if include_buffers else dict(model.named_parameters())
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _setup_logging(accelerator: Accelerator) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
    else:
        logging.getLogger().setLevel(logging.WARNING)
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()


def check_trackers(report_to: str) -> list[str]:
    """The trackers of `--report_to` (comma-separated names or "all"); a named one that is not installed is an
    error, "all" is whatever is installed (possibly nothing: then only the console log remains)."""
    available = [str(getattr(tracker, "value", tracker)) for tracker in get_available_trackers()]
    if report_to == "all":
        if not available:
            logger.warning("--with_tracking: no tracker (tensorboard, trackio, wandb, ...) is installed")
        return available
    requested = [name.strip() for name in report_to.split(",") if name.strip()]
    missing = [name for name in requested if name not in available]
    if missing:
        raise TrainingArgumentError(
            f"--report_to {report_to}: {missing} not installed (installed trackers: {available or 'none'}); "
            f"e.g. `pip install {missing[0]}`"
        )
    return requested


def _build_accelerator(args: argparse.Namespace) -> Accelerator:
    trackers = check_trackers(args.report_to) if args.with_tracking else None
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=args.output_dir, automatic_checkpoint_naming=False),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=args.ddp_find_unused_parameters)],
    )


def _data_paths(args: argparse.Namespace, accelerator: Accelerator) -> DataPaths:
    if args.synthetic:
        train_config, val_config = synthetic_configs(
            num_train_videos=args.synthetic_num_train_videos,
            num_val_videos=args.synthetic_num_val_videos,
            num_frames=args.synthetic_num_frames,
            height=args.synthetic_height,
            width=args.synthetic_width,
            num_classes=args.synthetic_num_classes,
            max_instances=args.synthetic_max_instances,
            seed=args.synthetic_seed,
            class_colours=args.synthetic_class_colours,
        )
        root = args.synthetic_dir or os.path.join(args.output_dir, SYNTHETIC_DIRNAME)
        paths = prepare_synthetic_data(root, train_config, val_config, accelerator.is_main_process)
        accelerator.wait_for_everyone()
        return paths
    return DataPaths(
        train_annotations=args.train_annotations,
        train_frames_dir=resolve_frames_dir(args.train_annotations, args.train_frames_dir),
        val_annotations=args.val_annotations,
        val_frames_dir=resolve_frames_dir(args.val_annotations, args.val_frames_dir) if args.val_annotations else None,
    )


def _base_image_processor(model_name_or_path: str) -> TeViTImageProcessor:
    """The model folder's processor (its normalisation) when it has one, else the default."""
    if os.path.isfile(os.path.join(model_name_or_path, "preprocessor_config.json")):
        return TeViTImageProcessor.from_pretrained(model_name_or_path)
    return TeViTImageProcessor()


def _resolve_steps(args: argparse.Namespace, batches_per_epoch: int) -> tuple[int, int, int]:
    """(optimizer steps per epoch, max train steps, epochs)."""
    steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    if args.max_train_steps is not None:
        max_steps = args.max_train_steps
    elif args.num_train_epochs is not None:
        max_steps = args.num_train_epochs * steps_per_epoch
    else:
        max_steps = OFFICIAL_MAX_STEPS
    return steps_per_epoch, max_steps, math.ceil(max_steps / steps_per_epoch)


def _maybe_sync_batch_norm(model: torch.nn.Module, args: argparse.Namespace, accelerator: Accelerator):
    if not args.sync_bn:
        return model
    if accelerator.num_processes == 1:
        logger.warning("--sync_bn has no effect with a single process")
        return model
    if accelerator.device.type == "cpu":
        raise TrainingArgumentError("--sync_bn needs GPUs: PyTorch's SyncBatchNorm does not run on CPU processes")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


class LossWindow:
    """Sums of the loss terms, grad norms and clip counts since the last log line (this process only)."""

    def __init__(self, stage_loss_weights: list[float]) -> None:
        self.stage_loss_weights = stage_loss_weights
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.micro_batches = 0
        self.grad_norms: list[float] = []
        self.clips = 0
        self.frames = 0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, loss_dict: dict[str, torch.Tensor], num_clips: int, num_frames: int) -> None:
        self.sums["loss"] += float(loss.detach())
        for name, value in loss_dict.items():
            value = float(value.detach())
            self.sums[name] += value
            stage, term = name.split("_", 1)  # "stage0", "loss_cls"
            self.sums[term] += self.stage_loss_weights[int(stage.removeprefix("stage"))] * value
        self.micro_batches += 1
        self.clips += num_clips
        self.frames += num_clips * num_frames

    def summarize(self, accelerator: Accelerator) -> dict[str, float]:
        """Means over the window and over processes; throughput of all processes together."""
        names = sorted(self.sums)
        local = [self.sums[name] / max(self.micro_batches, 1) for name in names]
        grad_norm = sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else float("nan")
        values = torch.tensor(local + [grad_norm], dtype=torch.float64, device=accelerator.device)
        counts = torch.tensor([self.clips, self.frames], dtype=torch.float64, device=accelerator.device)
        if accelerator.num_processes > 1:
            values = accelerator.reduce(values, reduction="mean")
            counts = accelerator.reduce(counts, reduction="sum")
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        summary = {f"train/{name}": float(value) for name, value in zip(names, values[:-1].tolist())}
        summary["train/grad_norm"] = float(values[-1])
        summary["train/clips_per_second"] = float(counts[0]) / elapsed
        summary["train/frames_per_second"] = float(counts[1]) / elapsed
        return summary


def _flat_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    flat = {f"{prefix}{name}": float(value) for name, value in metrics.items() if isinstance(value, (int, float))}
    for name, value in (metrics.get("per_category_AP") or {}).items():
        flat[f"{prefix}AP_{name}"] = float(value)
    return flat


def _tracker_config(args: argparse.Namespace) -> dict[str, Any]:
    """Arguments as scalars/strings (what TensorBoard's hparams accept)."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else json.dumps(value, default=str)
        for key, value in vars(args).items()
    }


def _save_final_model(
    model: torch.nn.Module,
    image_processor: TeViTImageProcessor,
    output_dir: Path,
    model_card: str,
) -> None:
    """`save_pretrained` of model and processor into a temporary folder, then each file moved into `output_dir`."""
    temporary = output_dir / _FINAL_TMP_DIRNAME
    if temporary.exists():
        shutil.rmtree(temporary)
    model.save_pretrained(temporary, safe_serialization=True)
    image_processor.save_pretrained(temporary)
    for path in sorted(temporary.iterdir()):
        os.replace(path, output_dir / path.name)
    temporary.rmdir()
    write_model_card(output_dir, model_card)


def _push_to_hub(args: argparse.Namespace, output_dir: Path) -> None:
    """Upload the final model folder (top-level files only: no checkpoints, data or logs) in one commit."""
    import tempfile

    from ..hub_upload import upload_folder

    repo_id = args.hub_model_id or output_dir.name
    with tempfile.TemporaryDirectory(prefix="tevit_push_") as staging:
        for path in output_dir.iterdir():
            if path.is_file() and not path.name.startswith(".") and not fnmatch.fnmatch(path.name, _RANK_REPORT_GLOB):
                shutil.copy2(path, Path(staging) / path.name)
        upload_folder(
            staging,
            repo_id,
            private=args.hub_private_repo,
            commit_message="Upload TeViT trained with scripts/train.py",
        )
    logger.info("pushed %s to https://huggingface.co/%s", output_dir, repo_id)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run training as configured by `args` (see `arguments.build_parser`). Returns the final validation metrics
    (empty without a validation set). Every process runs this function."""
    start_time = time.perf_counter()
    accelerator = _build_accelerator(args)
    _setup_logging(accelerator)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    logger.info("%s", accelerator.state)
    output_dir = Path(args.output_dir)
    checkpoint_dir = Path(args.checkpoint_dir or output_dir / CHECKPOINTS_DIRNAME)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    set_seed(args.seed)

    # Data first: every data problem fails here, before the model is built.
    paths = _data_paths(args, accelerator)
    check_data_paths(paths)
    train_processor = _base_image_processor(args.model_name_or_path)
    eval_processor = copy.deepcopy(train_processor)
    eval_processor.size = {"longest_edge": args.test_size[0], "shortest_edge": args.test_size[1]}
    global_batch = args.per_device_train_batch_size * accelerator.num_processes
    train_dataset, train_info = build_train_dataset(
        paths,
        train_processor,
        clip_length=args.clip_length,
        sampling_mode=args.sampling_mode,
        scales=args.train_scales,
        scale_mode=args.scale_mode,
        flip_probability=args.flip_probability,
        seed=args.seed,
        global_batch_size=global_batch,
        skip_bad_clips=args.skip_bad_clips,
    )
    validation_set = build_validation_set(paths, train_info, args.max_eval_videos) if paths.val_annotations else None

    config = build_config(args.model_name_or_path, train_info.id2label, parse_config_overrides(args.config_overrides))
    weights_source = args.init_from or default_weights_source(args.model_name_or_path)
    model, load_report = build_model(config, weights_source)
    if load_report is not None and accelerator.is_main_process:
        print(load_report.format(), flush=True)
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    logger.info("model: %s parameters, %d classes", f"{num_parameters:,}", config.num_labels)
    model = _maybe_sync_batch_norm(model, args, accelerator)

    optimizer = build_optimizer(
        model,
        args.learning_rate,
        backbone_lr_multiplier=args.backbone_lr_multiplier,
        weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    train_loader, train_sampler = build_train_dataloader(
        train_dataset, args.per_device_train_batch_size, args.seed, args.num_workers
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)

    steps_per_epoch, max_train_steps, num_epochs = _resolve_steps(args, len(train_loader))
    warmup_steps, drop_steps = default_schedule_steps(max_train_steps, args.warmup_steps, args.lr_drop_steps)
    if args.lr_drop_steps and args.lr_drop_steps[-1] >= max_train_steps:
        raise TrainingArgumentError(f"--lr_drop_steps {args.lr_drop_steps} must be below the {max_train_steps} steps")
    schedule = LearningRateSchedule(
        scheduler_type=args.lr_scheduler_type,
        max_steps=max_train_steps,
        warmup_steps=warmup_steps,
        warmup_start_factor=args.warmup_start_factor,
        drop_steps=drop_steps if args.lr_scheduler_type == "step" else (),
        gamma=args.lr_drop_gamma,
        min_lr_ratio=args.min_lr_ratio,
    )
    # Stepped once per optimizer update by us (a prepared scheduler would step once per process), checkpointed.
    scheduler = build_lr_scheduler(optimizer, schedule)
    accelerator.register_for_checkpointing(scheduler)

    if accelerator.log_with:
        accelerator.init_trackers("tevit_training", config=_tracker_config(args))

    progress = TrainingProgress()
    if args.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, checkpoint_dir)
        if checkpoint is None:
            logger.info("no checkpoint in %s yet: starting from scratch", checkpoint_dir)
        else:
            progress = load_checkpoint(accelerator, checkpoint)
    if progress.batches_in_epoch >= len(train_loader):  # the checkpoint closed its epoch
        progress = TrainingProgress(progress.global_step, progress.epoch + 1, 0)

    logger.info(
        "training: %d items (clips of %d frames) per epoch, %d processes x %d clips x %d accumulation = %d clips per "
        "step; %d steps (%d per epoch, %d epochs); schedule %s",
        len(train_dataset),
        args.clip_length,
        accelerator.num_processes,
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        global_batch * args.gradient_accumulation_steps,
        max_train_steps,
        steps_per_epoch,
        num_epochs,
        asdict(schedule),
    )

    metrics: dict[str, Any] = {}
    last_evaluated_step = -1

    def run_evaluation() -> dict[str, Any]:
        results = evaluate_on_validation_set(
            accelerator, accelerator.unwrap_model(model), eval_processor, validation_set
        )
        if accelerator.is_main_process:
            logger.info(
                "step %d: validation AP %.4f (AP50 %.4f)", progress.global_step, results["AP"], results["AP50"]
            )
        if accelerator.log_with:
            accelerator.log(_flat_metrics(results, "eval/"), step=progress.global_step)
        return results

    window = LossWindow(list(config.stage_loss_weights))
    progress_bar = tqdm(
        total=max_train_steps,
        initial=progress.global_step,
        desc="training",
        disable=not accelerator.is_local_main_process,
    )
    model.train()
    while progress.global_step < max_train_steps and progress.epoch < num_epochs:
        train_sampler.set_epoch(progress.epoch)
        train_dataset.set_epoch(progress.epoch)
        train_loader.set_epoch(progress.epoch)
        epoch_loader = train_loader
        if progress.batches_in_epoch > 0:
            epoch_loader = accelerator.skip_first_batches(train_loader, progress.batches_in_epoch)
            epoch_loader.set_epoch(progress.epoch)
        for batch in epoch_loader:
            with accelerator.accumulate(model):
                outputs = model(**batch)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients:
                    max_norm = args.max_grad_norm if args.max_grad_norm > 0 else float("inf")
                    window.grad_norms.append(float(accelerator.clip_grad_norm_(model.parameters(), max_norm)))
                optimizer.step()
                optimizer.zero_grad()
            progress.batches_in_epoch += 1
            num_clips, num_frames = batch["pixel_values"].shape[:2]
            window.add(outputs.loss, outputs.loss_dict, int(num_clips), int(num_frames))
            if not accelerator.sync_gradients:
                continue

            # The lrs this update used (logged below), before the schedule moves to the next step.
            step_lrs = {f"train/lr_{group.get('name', 'group')}": group["lr"] for group in optimizer.param_groups}
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            progress.global_step += 1
            progress_bar.update(1)
            if progress.global_step % args.logging_steps == 0 or progress.global_step == max_train_steps:
                logs = {**window.summarize(accelerator), **step_lrs}
                logs["train/epoch"] = progress.epoch + progress.batches_in_epoch / len(train_loader)
                window.reset()
                progress_bar.set_postfix(loss=f"{logs['train/loss']:.3f}", lr=f"{max(step_lrs.values()):.2e}")
                if accelerator.is_main_process:
                    logger.info(
                        "step %d: %s", progress.global_step, ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
                    )
                if accelerator.log_with:
                    accelerator.log(logs, step=progress.global_step)
            checkpoint_now = isinstance(args.checkpointing_steps, int) and args.checkpointing_steps > 0
            if checkpoint_now and progress.global_step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, checkpoint_dir, progress, args.checkpoints_total_limit)
                if args.debug_sleep_after_checkpoint:
                    time.sleep(args.debug_sleep_after_checkpoint)
            if validation_set is not None and args.eval_steps and progress.global_step % args.eval_steps == 0:
                metrics, last_evaluated_step = run_evaluation(), progress.global_step
            if progress.global_step >= max_train_steps:
                break
        else:
            progress = TrainingProgress(progress.global_step, progress.epoch + 1, 0)
            if args.checkpointing_steps == "epoch":
                save_checkpoint(accelerator, checkpoint_dir, progress, args.checkpoints_total_limit)
    progress_bar.close()
    accelerator.wait_for_everyone()

    unwrapped = accelerator.unwrap_model(model)
    if validation_set is not None and not args.skip_final_evaluation and last_evaluated_step != progress.global_step:
        metrics = run_evaluation()
    train_seconds = time.perf_counter() - start_time

    if accelerator.is_main_process:
        if metrics:
            print(format_metrics_table(metrics), flush=True)
            print(f"validation AP: {metrics['AP']:.4f}", flush=True)
            write_json_atomic(output_dir / EVAL_RESULTS_FILENAME, _flat_metrics(metrics, "eval_"))
        summary = {
            "command": " ".join(sys.argv),
            "steps": progress.global_step,
            "clip_length": args.clip_length,
            "clips_per_step": global_batch * args.gradient_accumulation_steps,
            "processes": accelerator.num_processes,
            "learning_rate": args.learning_rate,
            "backbone_lr_multiplier": args.backbone_lr_multiplier,
            "weight_decay": args.weight_decay,
            "max_grad_norm": args.max_grad_norm,
            "lr_schedule": f"{schedule.scheduler_type}, warm-up {schedule.warmup_steps}, drops {list(schedule.drop_steps)}",
            "train_scales": [f"{long}x{short}" for long, short in args.train_scales],
            "test_size": f"{args.test_size[0]}x{args.test_size[1]}",
            "seed": args.seed,
            "wall_time_seconds": round(train_seconds, 1),
            "num_parameters": num_parameters,
        }
        write_json_atomic(output_dir / TRAIN_RESULTS_FILENAME, {**summary, "train_seconds": train_seconds})
        card = render_model_card(
            unwrapped.config,
            summary,
            metrics or None,
            model_name=f"TeViT ({output_dir.name})",
            dataset_name=f"`{paths.train_annotations}` ({len(train_dataset)} annotated frames)",
        )
        _save_final_model(unwrapped, eval_processor, output_dir, card)
        logger.info("saved the model, image processor and model card to %s (%.0f s)", output_dir, train_seconds)
    if args.debug_rank_report:
        report = {
            "rank": accelerator.process_index,
            "world_size": accelerator.num_processes,
            "global_step": progress.global_step,
            "weights_sha256": weights_checksum(unwrapped),
            # DDP syncs gradients, so parameters agree on every rank; BatchNorm running statistics are only
            # broadcast from rank 0 at the start of each forward, so after the last step they are per-rank.
            "parameters_sha256": weights_checksum(unwrapped, include_buffers=False),
        }
        write_json_atomic(output_dir / _RANK_REPORT_GLOB.replace("*", str(accelerator.process_index)), report)
    accelerator.wait_for_everyone()
    if args.push_to_hub and accelerator.is_main_process:
        _push_to_hub(args, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


__all__ = ["LossWindow", "train", "weights_checksum"]
