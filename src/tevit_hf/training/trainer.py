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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, ProjectConfiguration, set_seed
from torch.distributed.tensor import DTensor
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..configuration_tevit import TeViTConfig
from ..data.clip_dataset import YouTubeVISClipDataset
from ..data.youtube_vis import VisDatasetInfo
from ..evaluation.youtube_vis_eval import format_metrics_table
from ..file_utils import write_json_atomic
from ..image_processing_tevit import TeViTImageProcessor
from .arguments import TrainingArgumentError, earlier_run_files
from .backbone_init import load_backbone_weights
from .checkpointing import (
    CHECKPOINTS_DIRNAME,
    TrainingProgress,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from .data_setup import (
    DataPaths,
    EpochShuffleSampler,
    ValidationSet,
    build_train_dataloader,
    build_train_dataset,
    build_validation_set,
    check_data_paths,
    resolve_data_paths,
)
from .evaluation_hook import evaluate_on_validation_set
from .model_card import SYNTHETIC_DATASET_ID, render_model_card, write_model_card
from .model_setup import (
    build_config,
    build_model,
    check_weight_sources,
    default_weights_source,
    load_weights_non_strict,
    parse_config_overrides,
)
from .optimization import (
    OFFICIAL_MAX_STEPS,
    LearningRateSchedule,
    build_lr_scheduler,
    build_optimizer,
    default_schedule_steps,
)


logger = logging.getLogger(__name__)

EVAL_RESULTS_FILENAME = "eval_results.json"
TRAIN_RESULTS_FILENAME = "train_results.json"
_FINAL_TMP_DIRNAME = ".final_model.tmp"
_RANK_REPORT_GLOB = "rank_*.json"


def weights_checksum(model: torch.nn.Module, include_buffers: bool = True) -> str:
    """SHA-256 of every parameter (and buffer), sorted by name, raw bytes: equal iff they are bit-identical."""
    tensors = model.state_dict() if include_buffers else dict(model.named_parameters())
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        if isinstance(tensor, DTensor):  # an FSDP shard: every process gathers the whole tensor (same order)
            tensor = tensor.full_tensor()
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
    paths = resolve_data_paths(args, accelerator.is_main_process)
    accelerator.wait_for_everyone()  # the main process may have just generated the synthetic data
    return paths


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
    state_dict: dict[str, torch.Tensor],
    image_processor: TeViTImageProcessor,
    output_dir: Path,
    model_card: str,
) -> None:
    """`save_pretrained` of model (with the weights `state_dict`) and processor into a temporary folder, then each
    file moved into `output_dir`."""
    temporary = output_dir / _FINAL_TMP_DIRNAME
    if temporary.exists():
        shutil.rmtree(temporary)
    model.save_pretrained(temporary, state_dict=state_dict, safe_serialization=True)
    image_processor.save_pretrained(temporary)
    for path in sorted(temporary.iterdir()):
        os.replace(path, output_dir / path.name)
    temporary.rmdir()
    write_model_card(output_dir, model_card)


def _push_to_hub(args: argparse.Namespace, output_dir: Path) -> None:
    """Upload the final model folder (top-level files only: no checkpoints, data or logs) in one commit."""
    import tempfile

    from ..commands.push_to_hub import upload_folder

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


@dataclass
class _TrainingData:
    """What `_build_training_data` makes: the training and (optional) validation sets, the evaluation processor
    (saved with the final model) and the number of clips per micro-step over all processes."""

    paths: DataPaths
    train_dataset: YouTubeVISClipDataset
    train_info: VisDatasetInfo
    validation_set: ValidationSet | None
    eval_processor: TeViTImageProcessor
    global_batch_size: int


@dataclass
class _StepPlan:
    """How long training runs (in optimizer steps) and the learning-rate schedule over those steps."""

    steps_per_epoch: int
    max_train_steps: int
    num_epochs: int
    schedule: LearningRateSchedule


@dataclass
class _PreparedTraining:
    """Everything the step loop works on, after `accelerator.prepare` (model, optimizer and loader are wrapped)."""

    model: torch.nn.Module
    config: TeViTConfig
    num_parameters: int
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    train_loader: DataLoader
    train_sampler: EpochShuffleSampler
    plan: _StepPlan


def _start_accelerator(args: argparse.Namespace) -> Accelerator:
    """The Accelerator (trackers, accumulation, mixed precision, DDP), logging per rank, CPU threads."""
    accelerator = _build_accelerator(args)
    _setup_logging(accelerator)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    logger.info("%s", accelerator.state)
    return accelerator


def _prepare_output_dirs(args: argparse.Namespace, accelerator: Accelerator) -> tuple[Path, Path]:
    """(output folder, checkpoint folder); the main process creates the output folder, the others wait for it."""
    output_dir = Path(args.output_dir)
    checkpoint_dir = Path(args.checkpoint_dir or output_dir / CHECKPOINTS_DIRNAME)
    if accelerator.is_main_process:
        if args.overwrite_output_dir and args.resume_from_checkpoint is None and earlier_run_files(args):
            # Start over: no final model, result or checkpoint of the earlier run may survive beside the new ones.
            logger.warning(
                "--overwrite_output_dir: removing the earlier run's files and checkpoints in %s", output_dir
            )
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
            for path in output_dir.iterdir():
                if path.is_file():
                    path.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return output_dir, checkpoint_dir


def _build_training_data(args: argparse.Namespace, accelerator: Accelerator) -> _TrainingData:
    """Data paths (synthetic data generated first if asked), their checks, the training and validation sets, and
    the evaluation processor (the model's processor at `--test_size`). Every data problem fails here, before the
    model is built."""
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
    return _TrainingData(paths, train_dataset, train_info, validation_set, eval_processor, global_batch)


def _build_training_model(
    args: argparse.Namespace, accelerator: Accelerator, train_info: VisDatasetInfo
) -> tuple[torch.nn.Module, TeViTConfig, int]:
    """(model, config, number of parameters): the config with the dataset's labels, weights loaded non-strictly
    (the load report printed by the main process), BatchNorm made synchronous if `--sync_bn`."""
    config = build_config(args.model_name_or_path, train_info.id2label, parse_config_overrides(args.config_overrides))
    weights_source = args.init_from or default_weights_source(args.model_name_or_path)
    model, _ = build_model(config)
    # The official order: ImageNet backbone weights first, then the (COCO / TeViT) model weights over them.
    if args.backbone_init_from:
        backbone_report = load_backbone_weights(model, args.backbone_init_from)
        if accelerator.is_main_process:
            print(backbone_report.format(), flush=True)
    if weights_source is not None:
        load_report = load_weights_non_strict(model, weights_source)
        if accelerator.is_main_process:
            print(load_report.format(), flush=True)
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    logger.info("model: %s parameters, %d classes", f"{num_parameters:,}", config.num_labels)
    model = _maybe_sync_batch_norm(model, args, accelerator)
    return model, config, num_parameters


def _plan_steps(args: argparse.Namespace, batches_per_epoch: int) -> _StepPlan:
    """Number of steps and epochs, and the lr schedule (warm-up and drops defaulted or checked against them)."""
    steps_per_epoch, max_train_steps, num_epochs = _resolve_steps(args, batches_per_epoch)
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
    return _StepPlan(steps_per_epoch, max_train_steps, num_epochs, schedule)


def _broadcast_buffers_from_main(model: torch.nn.Module) -> None:
    """Every process takes the main process's buffers (BatchNorm running statistics). FSDP leaves buffers
    unsynchronised, and its sharded checkpoint keeps one process's copy of each (not necessarily the main one's), so
    under FSDP this runs before each training forward (as DDP's `broadcast_buffers` does), before each checkpoint
    and before the final save: a resumed run then continues exactly."""
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)


def _broadcast_buffers_before_training_forward(module: torch.nn.Module, inputs: Any) -> None:
    if module.training:
        _broadcast_buffers_from_main(module)


def _prepare_training(args: argparse.Namespace, accelerator: Accelerator, data: _TrainingData) -> _PreparedTraining:
    """Model, optimizer and loader built and passed through `accelerator.prepare`, then the step plan and the lr
    scheduler (registered for checkpointing, so that `load_checkpoint` restores it)."""
    model, config, num_parameters = _build_training_model(args, accelerator, data.train_info)
    optimizer = build_optimizer(
        model,
        args.learning_rate,
        backbone_lr_multiplier=args.backbone_lr_multiplier,
        weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        no_weight_decay_keys=args.no_weight_decay_keys,
    )
    train_loader, train_sampler = build_train_dataloader(
        data.train_dataset, args.per_device_train_batch_size, args.seed, args.num_workers
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if accelerator.distributed_type == DistributedType.FSDP:
        model.register_forward_pre_hook(_broadcast_buffers_before_training_forward)
    plan = _plan_steps(args, len(train_loader))
    # Stepped once per optimizer update by us (a prepared scheduler would step once per process), checkpointed.
    scheduler = build_lr_scheduler(optimizer, plan.schedule)
    accelerator.register_for_checkpointing(scheduler)
    return _PreparedTraining(model, config, num_parameters, optimizer, scheduler, train_loader, train_sampler, plan)


# The arguments that shape the steps and the learning-rate schedule: a resume must not change them.
SCHEDULE_ARGUMENTS = (
    "max_train_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "backbone_lr_multiplier",
    "lr_scheduler_type",
    "lr_drop_steps",
    "warmup_steps",
    "warmup_start_factor",
)


def schedule_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule arguments of this run, JSON-like (recorded in checkpoints, compared on resume)."""
    values = {name: getattr(args, name, None) for name in SCHEDULE_ARGUMENTS}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def _resume_progress(
    args: argparse.Namespace, accelerator: Accelerator, checkpoint_dir: Path, batches_per_epoch: int
) -> TrainingProgress:
    """Where training starts: step 0, or the checkpoint of `--resume_from_checkpoint` (its model, optimizer,
    scheduler, sampler and RNG states restored); a checkpoint that closed its epoch resumes at the next one."""
    progress = TrainingProgress()
    if args.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, checkpoint_dir)
        if checkpoint is None:
            logger.info("no checkpoint in %s yet: starting from scratch", checkpoint_dir)
        else:
            progress = load_checkpoint(
                accelerator,
                checkpoint,
                without_rng_state=args.resume_without_rng_state,
                schedule=schedule_arguments(args),
            )
    if progress.batches_in_epoch >= batches_per_epoch:  # the checkpoint closed its epoch
        progress = TrainingProgress(progress.global_step, progress.epoch + 1, 0)
    return progress


def _log_training_plan(
    args: argparse.Namespace, accelerator: Accelerator, data: _TrainingData, plan: _StepPlan
) -> None:
    """One log line with the data size, the batch arithmetic, the step plan and the lr schedule."""
    logger.info(
        "training: %d items (clips of %d frames) per epoch, %d processes x %d clips x %d accumulation = %d clips per "
        "step; %d steps (%d per epoch, %d epochs); schedule %s",
        len(data.train_dataset),
        args.clip_length,
        accelerator.num_processes,
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        data.global_batch_size * args.gradient_accumulation_steps,
        plan.max_train_steps,
        plan.steps_per_epoch,
        plan.num_epochs,
        asdict(plan.schedule),
    )


class _TrainingLoop:
    """The step loop: epochs of micro-batches (forward, backward, clipping and an optimizer step when the
    accumulation closes), then after each optimizer step the lr schedule, the log line, checkpoints and periodic
    evaluation. `progress` is what a checkpoint saves; `metrics` are the latest validation results."""

    def __init__(
        self,
        args: argparse.Namespace,
        accelerator: Accelerator,
        training: _PreparedTraining,
        data: _TrainingData,
        checkpoint_dir: Path,
        progress: TrainingProgress,
    ) -> None:
        self.args = args
        self.accelerator = accelerator
        self.training = training
        self.data = data
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.metrics: dict[str, Any] = {}
        self.last_evaluated_step = -1
        self.window = LossWindow(list(training.config.stage_loss_weights))
        self.progress_bar: tqdm | None = None

    def evaluate(self) -> dict[str, Any]:
        """YouTube-VIS AP on the validation set at the current step (every process takes part), logged."""
        accelerator = self.accelerator
        results = evaluate_on_validation_set(
            accelerator,
            accelerator.unwrap_model(self.training.model),
            self.data.eval_processor,
            self.data.validation_set,
        )
        if accelerator.is_main_process:
            logger.info(
                "step %d: validation AP %.4f (AP50 %.4f)", self.progress.global_step, results["AP"], results["AP50"]
            )
        if accelerator.log_with:
            accelerator.log(_flat_metrics(results, "eval/"), step=self.progress.global_step)
        return results

    def run(self) -> None:
        """Train until `max_train_steps` (or the last epoch), from `progress` on; every process ends here together."""
        plan = self.training.plan
        self.progress_bar = tqdm(
            total=plan.max_train_steps,
            initial=self.progress.global_step,
            desc="training",
            disable=not self.accelerator.is_local_main_process,
        )
        self.training.model.train()
        while self.progress.global_step < plan.max_train_steps and self.progress.epoch < plan.num_epochs:
            if self._run_epoch():
                self.progress = TrainingProgress(self.progress.global_step, self.progress.epoch + 1, 0)
                if self.args.checkpointing_steps == "epoch":
                    self._save_checkpoint()
        self.progress_bar.close()
        self.accelerator.wait_for_everyone()

    def _epoch_batches(self) -> DataLoader:
        """The loader of the current epoch (samplers and augmentation seeded by it), past the batches that a resumed
        checkpoint already trained on."""
        training, epoch = self.training, self.progress.epoch
        training.train_sampler.set_epoch(epoch)
        self.data.train_dataset.set_epoch(epoch)
        training.train_loader.set_epoch(epoch)
        epoch_loader = training.train_loader
        if self.progress.batches_in_epoch > 0:
            epoch_loader = self.accelerator.skip_first_batches(training.train_loader, self.progress.batches_in_epoch)
            epoch_loader.set_epoch(epoch)
        return epoch_loader

    def _run_epoch(self) -> bool:
        """One (rest of an) epoch; True when it ran to its end, False when the last step was reached inside it."""
        for batch in self._epoch_batches():
            self._train_micro_batch(batch)
            if not self.accelerator.sync_gradients:
                continue
            self._after_optimizer_step()
            if self.progress.global_step >= self.training.plan.max_train_steps:
                return False
        return True

    def _train_micro_batch(self, batch: dict[str, Any]) -> None:
        """Forward and backward of one batch; when the accumulation closes, gradient clipping and the optimizer
        step (Accelerate makes `optimizer.step` a no-op otherwise)."""
        accelerator, training = self.accelerator, self.training
        with accelerator.accumulate(training.model):
            outputs = training.model(**batch)
            accelerator.backward(outputs.loss)
            if accelerator.sync_gradients:
                max_norm = self.args.max_grad_norm if self.args.max_grad_norm > 0 else float("inf")
                self.window.grad_norms.append(
                    float(accelerator.clip_grad_norm_(training.model.parameters(), max_norm))
                )
            training.optimizer.step()
            training.optimizer.zero_grad()
        self.progress.batches_in_epoch += 1
        num_clips, num_frames = batch["pixel_values"].shape[:2]
        self.window.add(outputs.loss, outputs.loss_dict, int(num_clips), int(num_frames))

    def _after_optimizer_step(self) -> None:
        """Advance the lr schedule and the step count, then log, checkpoint and evaluate when they are due."""
        args, training, progress = self.args, self.training, self.progress
        # The lrs this update used (logged below), before the schedule moves to the next step.
        step_lrs = {f"train/lr_{group.get('name', 'group')}": group["lr"] for group in training.optimizer.param_groups}
        if not self.accelerator.optimizer_step_was_skipped:
            training.scheduler.step()
        progress.global_step += 1
        self.progress_bar.update(1)
        if progress.global_step % args.logging_steps == 0 or progress.global_step == training.plan.max_train_steps:
            self._log_window(step_lrs)
        checkpoint_now = isinstance(args.checkpointing_steps, int) and args.checkpointing_steps > 0
        if checkpoint_now and progress.global_step % args.checkpointing_steps == 0:
            self._save_checkpoint()
            if args.debug_sleep_after_checkpoint:
                time.sleep(args.debug_sleep_after_checkpoint)
        if self.data.validation_set is not None and args.eval_steps and progress.global_step % args.eval_steps == 0:
            self.metrics, self.last_evaluated_step = self.evaluate(), progress.global_step

    def _log_window(self, step_lrs: dict[str, float]) -> None:
        """The log line (console, progress bar, trackers) of the losses since the last one, and this step's lrs."""
        accelerator, progress = self.accelerator, self.progress
        logs = {**self.window.summarize(accelerator), **step_lrs}
        logs["train/epoch"] = progress.epoch + progress.batches_in_epoch / len(self.training.train_loader)
        self.window.reset()
        self.progress_bar.set_postfix(loss=f"{logs['train/loss']:.3f}", lr=f"{max(step_lrs.values()):.2e}")
        if accelerator.is_main_process:
            logger.info("step %d: %s", progress.global_step, ", ".join(f"{k}={v:.4g}" for k, v in logs.items()))
        if accelerator.log_with:
            accelerator.log(logs, step=progress.global_step)

    def _save_checkpoint(self) -> None:
        """The full training state (model, optimizer, scheduler, sampler, RNGs, progress), pruned to the limit."""
        if self.accelerator.distributed_type == DistributedType.FSDP:
            _broadcast_buffers_from_main(self.training.model)
        save_checkpoint(
            self.accelerator,
            self.checkpoint_dir,
            self.progress,
            self.args.checkpoints_total_limit,
            schedule=schedule_arguments(self.args),
        )


def _train_summary(
    args: argparse.Namespace,
    accelerator: Accelerator,
    data: _TrainingData,
    training: _PreparedTraining,
    global_step: int,
    train_seconds: float,
) -> dict[str, Any]:
    """The run's recipe and cost, as written to train_results.json and the model card."""
    schedule = training.plan.schedule
    return {
        "command": " ".join(sys.argv),
        "steps": global_step,
        "clip_length": args.clip_length,
        "clips_per_step": data.global_batch_size * args.gradient_accumulation_steps,
        "processes": accelerator.num_processes,
        "learning_rate": args.learning_rate,
        "backbone_lr_multiplier": args.backbone_lr_multiplier,
        "weight_decay": args.weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "lr_schedule": f"{schedule.scheduler_type}, warm-up {schedule.warmup_steps}, drops {list(schedule.drop_steps)}",
        "train_scales": [f"{long}x{short}" for long, short in args.train_scales],
        "scale_mode": args.scale_mode,
        "no_weight_decay_keys": list(args.no_weight_decay_keys),
        "test_size": f"{args.test_size[0]}x{args.test_size[1]}",
        "seed": args.seed,
        "wall_time_seconds": round(train_seconds, 1),
        "num_parameters": training.num_parameters,
    }


def _save_results_and_model(
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    data: _TrainingData,
    output_dir: Path,
    summary: dict[str, Any],
    metrics: dict[str, Any],
    train_seconds: float,
    dataset_id: str | None = None,
) -> None:
    """Main process only: the metrics table, eval_results.json, train_results.json, and the final model folder
    (model, image processor and model card)."""
    if metrics:
        print(format_metrics_table(metrics), flush=True)
        print(f"validation AP: {metrics['AP']:.4f}", flush=True)
        write_json_atomic(output_dir / EVAL_RESULTS_FILENAME, _flat_metrics(metrics, "eval_"))
    write_json_atomic(output_dir / TRAIN_RESULTS_FILENAME, {**summary, "train_seconds": train_seconds})
    card = render_model_card(
        model.config,
        summary,
        metrics or None,
        model_name=f"TeViT ({output_dir.name})",
        dataset_name=f"`{data.paths.train_annotations}` ({len(data.train_dataset)} annotated frames)",
        dataset_id=dataset_id,
    )
    _save_final_model(model, state_dict, data.eval_processor, output_dir, card)
    logger.info("saved the model, image processor and model card to %s (%.0f s)", output_dir, train_seconds)


def _write_rank_report(accelerator: Accelerator, model: torch.nn.Module, output_dir: Path, global_step: int) -> None:
    """`--debug_rank_report`: this process's rank, step and weights checksums in <output_dir>/rank_<i>.json."""
    report = {
        "rank": accelerator.process_index,
        "world_size": accelerator.num_processes,
        "global_step": global_step,
        "weights_sha256": weights_checksum(model),
        # DDP syncs gradients, so parameters agree on every rank; BatchNorm running statistics are only
        # broadcast from rank 0 at the start of each forward, so after the last step they are per-rank.
        "parameters_sha256": weights_checksum(model, include_buffers=False),
    }
    write_json_atomic(output_dir / _RANK_REPORT_GLOB.replace("*", str(accelerator.process_index)), report)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run training as configured by `args` (see `arguments.build_parser`). Returns the final validation metrics
    (empty without a validation set). Every process runs this function."""
    threads = torch.get_num_threads()
    try:
        return _run_training(args)
    finally:
        # `--num_threads` belongs to this run: an in-process caller (`tevit-hf ablate`) gets its own setting back.
        torch.set_num_threads(threads)


def _run_training(args: argparse.Namespace) -> dict[str, Any]:
    start_time = time.perf_counter()
    check_weight_sources(args.init_from, args.backbone_init_from)
    accelerator = _start_accelerator(args)
    output_dir, checkpoint_dir = _prepare_output_dirs(args, accelerator)
    set_seed(args.seed)
    # Data first: every data problem fails here, before the model is built.
    data = _build_training_data(args, accelerator)
    training = _prepare_training(args, accelerator, data)
    if accelerator.log_with:
        accelerator.init_trackers("tevit_training", config=_tracker_config(args))
    progress = _resume_progress(args, accelerator, checkpoint_dir, len(training.train_loader))
    _log_training_plan(args, accelerator, data, training.plan)

    loop = _TrainingLoop(args, accelerator, training, data, checkpoint_dir, progress)
    loop.run()

    unwrapped = accelerator.unwrap_model(training.model)
    final_evaluation_due = loop.last_evaluated_step != loop.progress.global_step
    if data.validation_set is not None and not args.skip_final_evaluation and final_evaluation_due:
        loop.metrics = loop.evaluate()
    train_seconds = time.perf_counter() - start_time
    # Every process takes part: under FSDP this gathers the shards into whole weights on the main process.
    if accelerator.distributed_type == DistributedType.FSDP:
        _broadcast_buffers_from_main(training.model)
    state_dict = accelerator.get_state_dict(training.model)
    if accelerator.is_main_process:
        summary = _train_summary(args, accelerator, data, training, loop.progress.global_step, train_seconds)
        dataset_id = SYNTHETIC_DATASET_ID if args.synthetic else None
        _save_results_and_model(
            unwrapped, state_dict, data, output_dir, summary, loop.metrics, train_seconds, dataset_id
        )
    if args.debug_rank_report:
        _write_rank_report(accelerator, unwrapped, output_dir, loop.progress.global_step)
    accelerator.wait_for_everyone()
    if args.push_to_hub and accelerator.is_main_process:
        _push_to_hub(args, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return loop.metrics


__all__ = ["LossWindow", "train", "weights_checksum"]
