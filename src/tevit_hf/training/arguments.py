"""Command-line arguments of `scripts/train.py` (style of the Transformers `*_no_trainer` examples) and their checks.

Defaults are the official TeViT recipe (spec 5.1-5.3): clips of 5 frames, 2 clips per device, AdamW lr 2.5e-4 with
the backbone at x0.1, weight decay 1e-4, gradient clipping at 0.1, 9200 steps with a linear warm-up and x0.1 drops
(scaled to `--max_train_steps` when it differs), multi-scale training (long edge 640-960, short edge 360-480).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..argparse_help import DefaultsHelpFormatter
from ..data.clip_sampling import SAMPLING_MODES
from ..data.synthetic import SyntheticSplits
from ..data.transforms import DEFAULT_TRAIN_SCALES, SCALE_MODES
from ..errors import TeViTError
from .optimization import OFFICIAL_MAX_STEPS, OFFICIAL_WARMUP_START_FACTOR, SCHEDULER_TYPES


DEFAULT_MODEL = "pvt_v2_b1"
DEFAULT_TEST_SIZE = (640, 360)
# The data and optimizer recipe of each official config (hustvl/TeViT `configs/tevit/*.py`) that differs from the
# MsgShifT one (scales 640x360-960x480 drawn in a range, test 640x360, weight decay on every parameter). A preset
# given as --model_name_or_path supplies these defaults; an explicit option always wins.
TRAINING_RECIPES: dict[str, dict] = {
    "r50_mstrain": {"scale_mode": "value"},
    "swin_l_mstrain": {
        "train_scales": [(1333, short) for short in range(320, 801, 32)],
        "scale_mode": "value",
        "test_size": (1333, 480),
        "no_weight_decay_keys": ["absolute_pos_embed", "relative_position_bias_table", "norm"],
    },
}
_RECIPE_DEFAULTS = {
    "train_scales": list(DEFAULT_TRAIN_SCALES),
    "scale_mode": "range",
    "test_size": DEFAULT_TEST_SIZE,
    "no_weight_decay_keys": [],
}
MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")


# Files whose presence in --output_dir means an earlier run finished there (or started saving its results).
EARLIER_RUN_MARKERS = ("model.safetensors", "train_results.json", "eval_results.json")


class TrainingArgumentError(TeViTError, ValueError):
    """Arguments that cannot work together; raised before anything is loaded."""


def parse_size(text: str) -> tuple[int, int]:
    """`"640x360"` -> `(640, 360)`: (long edge, short edge) bound of a keep-ratio resize."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected LONGxSHORT such as 640x360, got {text!r}")
    long_edge, short_edge = int(match.group(1)), int(match.group(2))
    if min(long_edge, short_edge) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return long_edge, short_edge


def _checkpointing_steps(text: str) -> str | int:
    if text == "epoch":
        return text
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number of steps or 'epoch', got {text!r}") from error
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of `scripts/train.py`, one `--help` section per argument group."""
    parser = argparse.ArgumentParser(
        description="Train or fine-tune TeViT for video instance segmentation with Accelerate "
        "(`accelerate launch scripts/train.py ...`).",
        formatter_class=DefaultsHelpFormatter,
    )
    _add_model_arguments(parser)
    _add_dataset_arguments(parser)
    _add_synthetic_data_arguments(parser)
    _add_clip_arguments(parser)
    _add_optimization_arguments(parser)
    _add_schedule_arguments(parser)
    _add_precision_and_distribution_arguments(parser)
    _add_checkpoint_arguments(parser)
    _add_evaluation_arguments(parser)
    _add_logging_arguments(parser)
    _add_hub_arguments(parser)
    _add_debug_arguments(parser)
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model to train: preset, config or folder, config changes, initial weights."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model_name_or_path",
        default=DEFAULT_MODEL,
        help="a preset (tiny, pvt_v2_b0 ... pvt_v2_b5; the official MsgShifT model is pvt_v2_b1; the official "
        "STQI-only models r50, r50_mstrain, swin_l_mstrain, whose recipes set the data/optimizer defaults), a config "
        ".json, or a model folder (saved or converted; its weights are loaded non-strictly)",
    )
    group.add_argument(
        "--config_overrides",
        default=None,
        help="config fields to change, e.g. 'hidden_size=64,num_queries=20,backbone_depths=[1,1,1,1]' or a json object",
    )
    group.add_argument(
        "--init_from",
        default=None,
        help="start from these weights (model folder or .safetensors/.bin file) instead of the model folder's own: "
        "tensors of another name or shape (e.g. a 40-class head for a 25-class dataset) are skipped and reported",
    )
    group.add_argument(
        "--backbone_init_from",
        default=None,
        help="ImageNet weights for the backbone, loaded before --init_from (file or folder): a Transformers PvtV2 "
        "checkpoint or whai362/PVT's pvt_v2_b*.pth for the MsgShifT backbone; a checkpoint of the backbone's "
        "Transformers model type, or torchvision's resnet50 for r50; every key must be accounted for",
    )


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """YouTube-VIS annotation files and frame folders of the training and validation videos."""
    group = parser.add_argument_group("data")
    group.add_argument("--train_annotations", help="YouTube-VIS-format annotation json of the training videos")
    group.add_argument(
        "--train_frames_dir",
        help="folder the training file_names are relative to (default: <annotation folder>/JPEGImages)",
    )
    group.add_argument("--val_annotations", help="annotation json of the validation videos (enables evaluation)")
    group.add_argument("--val_frames_dir", help="frames folder of the validation videos")
    group.add_argument("--max_eval_videos", type=int, default=None, help="evaluate on the first N validation videos")


def _add_synthetic_data_arguments(parser: argparse.ArgumentParser) -> None:
    """`--synthetic`: a generated dataset instead of annotation files, and its size."""
    group = parser.add_argument_group("synthetic data")
    group.add_argument("--synthetic", action="store_true", help="generate (or reuse) a synthetic train/val dataset")
    group.add_argument(
        "--synthetic_dir", default=None, help="where the synthetic data goes (<output_dir>/synthetic_data)"
    )
    defaults = SyntheticSplits()
    for name, help_text in (
        ("num_train_videos", "videos in the train split"),
        ("num_val_videos", "videos in the val split (unseen: another seed)"),
        ("num_frames", "frames per video"),
        ("height", "frame height"),
        ("width", "frame width"),
        ("num_classes", "shape classes (at most 8)"),
        ("max_instances", "most instances per video"),
        ("seed", "seed of the train split (val: seed + 1,000,003)"),
    ):
        group.add_argument(f"--synthetic_{name}", type=int, default=getattr(defaults, name), help=help_text)
    group.add_argument(
        "--synthetic_class_colours",
        action="store_true",
        help="each synthetic class also gets its own main colour (an easier dataset)",
    )


def _add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """How training clips are sampled, augmented and loaded, and the inference resize."""
    group = parser.add_argument_group("clips, augmentation and loading")
    group.add_argument("--clip_length", type=int, default=5, help="frames per training clip")
    group.add_argument(
        "--sampling_mode",
        choices=SAMPLING_MODES,
        default="random",
        help="'random': annotated frames of the video in random order (official); 'window': consecutive",
    )
    group.add_argument(
        "--train_scales",
        type=parse_size,
        nargs="+",
        default=None,
        help="training resize bounds LONGxSHORT (default: the preset's official recipe, 640x360 960x480; "
        "swin_l_mstrain: 1333x320 ... 1333x800)",
    )
    group.add_argument(
        "--scale_mode",
        choices=SCALE_MODES,
        default=None,
        help="'range': long/short edges drawn between the two scales; 'value': one of them (default: the preset's "
        "official recipe: 'range', 'value' for r50_mstrain and swin_l_mstrain)",
    )
    group.add_argument("--flip_probability", type=float, default=0.5, help="probability of a horizontal clip flip")
    group.add_argument(
        "--test_size",
        type=parse_size,
        default=None,
        help="inference resize bound LONGxSHORT, saved in the image processor (default: the preset's official "
        "recipe, 640x360; swin_l_mstrain: 1333x480)",
    )
    group.add_argument("--num_workers", type=int, default=2, help="DataLoader worker processes per device")
    group.add_argument(
        "--skip_bad_clips", action="store_true", help="replace clips that fail to load instead of failing"
    )


def _add_optimization_arguments(parser: argparse.ArgumentParser) -> None:
    """Batch, AdamW (with the backbone's lr multiplier) and gradient clipping."""
    group = parser.add_argument_group("optimization")
    group.add_argument("--per_device_train_batch_size", type=int, default=2, help="clips per device and step")
    group.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    group.add_argument("--learning_rate", type=float, default=2.5e-4, help="AdamW peak learning rate (official)")
    group.add_argument(
        "--backbone_lr_multiplier",
        type=float,
        default=0.1,
        help="lr multiplier of every model.backbone.* parameter (messenger tokens included)",
    )
    group.add_argument("--weight_decay", type=float, default=1e-4, help="AdamW weight decay, on every parameter")
    group.add_argument(
        "--no_weight_decay_keys",
        nargs="*",
        default=None,
        help="parameters whose official name contains one of these get no weight decay, resolved as mmcv's "
        "custom_keys (default: the preset's official recipe: none; swin_l_mstrain: absolute_pos_embed "
        "relative_position_bias_table norm)",
    )
    group.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1")
    group.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW beta2")
    group.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon")
    group.add_argument("--max_grad_norm", type=float, default=0.1, help="L2 gradient clipping (0 = none)")


def _add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """Training length (steps or epochs) and the learning-rate schedule."""
    group = parser.add_argument_group("schedule")
    group.add_argument(
        "--max_train_steps",
        type=int,
        default=None,
        help=f"optimizer steps (default {OFFICIAL_MAX_STEPS} unless --num_train_epochs is given)",
    )
    group.add_argument("--num_train_epochs", type=int, default=None, help="epochs, if --max_train_steps is not set")
    group.add_argument(
        "--lr_scheduler_type",
        choices=SCHEDULER_TYPES,
        default="step",
        help="learning-rate schedule after warm-up (step: the official drops)",
    )
    group.add_argument(
        "--lr_drop_steps",
        type=int,
        nargs="*",
        default=None,
        help="steps where the 'step' schedule multiplies the lr by --lr_drop_gamma (default: the "
        "official 6100 8500 scaled to --max_train_steps)",
    )
    group.add_argument("--lr_drop_gamma", type=float, default=0.1, help="factor of each --lr_drop_steps drop")
    group.add_argument(
        "--warmup_steps",
        type=int,
        default=None,
        help="linear warm-up steps (default: the official 770 scaled to --max_train_steps)",
    )
    group.add_argument(
        "--warmup_start_factor",
        type=float,
        default=OFFICIAL_WARMUP_START_FACTOR,
        help="lr multiplier at the first warm-up step (mmcv warmup_ratio)",
    )
    group.add_argument("--min_lr_ratio", type=float, default=0.0, help="final lr multiplier of 'cosine'")


def _add_precision_and_distribution_arguments(parser: argparse.ArgumentParser) -> None:
    """Mixed precision, seed, multi-process (DDP) options and CPU threads."""
    group = parser.add_argument_group("precision, seed and distribution")
    group.add_argument(
        "--mixed_precision",
        choices=MIXED_PRECISION_CHOICES,
        default=None,
        help="Accelerate mixed precision (default: the accelerate config / launcher setting)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the model init, data order and augmentation")
    group.add_argument(
        "--sync_bn", action="store_true", help="convert the mask heads' BatchNorm to SyncBatchNorm (multi-GPU only)"
    )
    group.add_argument(
        "--ddp_find_unused_parameters",
        action="store_true",
        help="DDP find_unused_parameters (needed only for custom models with unused branches)",
    )
    group.add_argument("--num_threads", type=int, default=None, help="torch CPU threads per process")


def _add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """Output folder, checkpoints and resuming."""
    group = parser.add_argument_group("output and checkpoints")
    group.add_argument("--output_dir", required=True, help="final model, model card, checkpoints and logs")
    group.add_argument(
        "--overwrite_output_dir",
        action="store_true",
        help="start over in an --output_dir that holds an earlier run: its final model files and checkpoints are "
        "removed first (default: refuse; --resume_from_checkpoint continues it instead)",
    )
    group.add_argument(
        "--checkpointing_steps",
        type=_checkpointing_steps,
        default=None,
        help="save the training state every N steps, or 'epoch' (0 / unset = never)",
    )
    group.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    group.add_argument(
        "--checkpoint_dir", default=None, help="where checkpoints go (default <output_dir>/checkpoints)"
    )
    group.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="a checkpoint folder, or 'latest' (the newest one in the checkpoint folder, if any)",
    )
    group.add_argument(
        "--resume_without_rng_state",
        action="store_true",
        help="resume even if the checkpoint's random states cannot be loaded (the run then differs from an "
        "uninterrupted one; default: refuse)",
    )


def _add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """Validation AP during and at the end of training."""
    group = parser.add_argument_group("evaluation")
    group.add_argument(
        "--eval_steps",
        type=int,
        default=None,
        help="evaluate YouTube-VIS AP on the validation set every N steps (it is always run at the end)",
    )
    group.add_argument("--skip_final_evaluation", action="store_true", help="do not evaluate at the end of training")


def _add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """Log lines and experiment trackers."""
    group = parser.add_argument_group("logging")
    group.add_argument("--logging_steps", type=int, default=10, help="log losses, lr and speed every N steps")
    group.add_argument("--with_tracking", action="store_true", help="log to the trackers of --report_to")
    group.add_argument(
        "--report_to",
        default="all",
        help="tracker(s) for --with_tracking: tensorboard, trackio, wandb, ... or 'all' (those installed)",
    )


def _add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """Uploading the final model folder to the Hugging Face Hub."""
    group = parser.add_argument_group("Hub upload")
    group.add_argument("--push_to_hub", action="store_true", help="upload the final model folder to the Hub")
    group.add_argument("--hub_model_id", default=None, help="Hub repository (default: the output folder name)")
    group.add_argument("--hub_private_repo", action="store_true", help="create the Hub repository as private")


def _add_debug_arguments(parser: argparse.ArgumentParser) -> None:
    """Options the tests use to inspect and interrupt runs."""
    group = parser.add_argument_group("debugging (used by the tests)")
    group.add_argument("--debug", action="store_true", help="show the traceback of an error (also: TEVIT_HF_DEBUG=1)")
    group.add_argument(
        "--debug_rank_report",
        action="store_true",
        help="each process writes <output_dir>/rank_<i>.json with its rank and a weights checksum",
    )
    group.add_argument(
        "--debug_sleep_after_checkpoint",
        type=float,
        default=0.0,
        help="sleep this many seconds after each checkpoint (to kill a run at a known point)",
    )


def validate_arguments(args: argparse.Namespace) -> None:
    """Checks that need no files: positive sizes, consistent schedule, data source. Raises TrainingArgumentError."""
    positive = ["clip_length", "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps"]
    positive += [name for name in ("max_train_steps", "num_train_epochs", "eval_steps", "max_eval_videos")
                 if getattr(args, name) is not None]  # fmt: skip
    if args.synthetic:
        positive += ["synthetic_num_train_videos", "synthetic_num_val_videos", "synthetic_num_frames"]
    for name in positive:
        if getattr(args, name) <= 0:
            raise TrainingArgumentError(f"--{name} must be positive, got {getattr(args, name)}")
    for name in ("learning_rate",):
        if getattr(args, name) <= 0:
            raise TrainingArgumentError(f"--{name} must be positive, got {getattr(args, name)}")
    for name in ("backbone_lr_multiplier", "weight_decay", "max_grad_norm", "num_workers", "warmup_steps"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise TrainingArgumentError(f"--{name} must be >= 0, got {value}")
    if not 0.0 <= args.flip_probability <= 1.0:
        raise TrainingArgumentError(f"--flip_probability must be in [0, 1], got {args.flip_probability}")
    if not 0.0 < args.warmup_start_factor <= 1.0:
        raise TrainingArgumentError(f"--warmup_start_factor must be in (0, 1], got {args.warmup_start_factor}")
    if args.synthetic and args.train_annotations:
        raise TrainingArgumentError("give either --synthetic or --train_annotations, not both")
    if not args.synthetic and not args.train_annotations:
        raise TrainingArgumentError(
            "no training data: give --train_annotations (and --train_frames_dir) or --synthetic"
        )
    if args.val_frames_dir and not args.val_annotations:
        raise TrainingArgumentError("--val_frames_dir needs --val_annotations")
    if args.lr_drop_steps:
        if list(args.lr_drop_steps) != sorted(set(args.lr_drop_steps)) or min(args.lr_drop_steps) < 1:
            raise TrainingArgumentError(f"--lr_drop_steps must be increasing positive steps, got {args.lr_drop_steps}")
        if args.max_train_steps is not None and args.lr_drop_steps[-1] >= args.max_train_steps:
            raise TrainingArgumentError(
                f"--lr_drop_steps {args.lr_drop_steps} must be below --max_train_steps {args.max_train_steps}"
            )
    if args.lr_drop_steps and args.lr_scheduler_type != "step":
        raise TrainingArgumentError("--lr_drop_steps applies only to --lr_scheduler_type step")
    if args.push_to_hub and not (args.hub_model_id or os.path.basename(os.path.normpath(args.output_dir))):
        raise TrainingArgumentError("--push_to_hub needs --hub_model_id")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise TrainingArgumentError(f"--checkpoints_total_limit must be >= 1, got {args.checkpoints_total_limit}")
    if args.debug_sleep_after_checkpoint < 0:
        raise TrainingArgumentError("--debug_sleep_after_checkpoint must be >= 0")


def earlier_run_files(args: argparse.Namespace) -> list[str]:
    """What an earlier run left in `--output_dir`: its final model, results and (non-empty) checkpoint folder."""
    output_dir = Path(args.output_dir)
    found = [name for name in EARLIER_RUN_MARKERS if (output_dir / name).is_file()]
    checkpoint_dir = Path(args.checkpoint_dir or output_dir / "checkpoints")
    if checkpoint_dir.is_dir() and any(checkpoint_dir.iterdir()):
        found.append(f"{checkpoint_dir.name}/")
    return found


def check_output_dir(args: argparse.Namespace) -> None:
    """Refuse to train into a folder that holds an earlier run unless resuming it or starting over on purpose: the
    new run would replace its final model and some checkpoints and leave the others beside them."""
    earlier = earlier_run_files(args)
    if earlier and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        raise TrainingArgumentError(
            f"--output_dir {args.output_dir} holds an earlier run ({', '.join(earlier)}): continue it with "
            "--resume_from_checkpoint latest, or start over with --overwrite_output_dir (removes its final model and "
            "checkpoints), or choose another folder."
        )


def apply_recipe_defaults(args: argparse.Namespace) -> None:
    """Fill the recipe options left unset (`None`) from the official recipe of `--model_name_or_path`."""
    recipe = {**_RECIPE_DEFAULTS, **TRAINING_RECIPES.get(str(args.model_name_or_path).lower(), {})}
    for name, value in recipe.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate; argparse exits with status 2 on malformed values, our checks raise TrainingArgumentError."""
    args = build_parser().parse_args(argv)
    apply_recipe_defaults(args)
    check_output_dir(args)
    validate_arguments(args)
    return args


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TEST_SIZE",
    "TRAINING_RECIPES",
    "TrainingArgumentError",
    "apply_recipe_defaults",
    "build_parser",
    "parse_arguments",
    "parse_size",
    "validate_arguments",
]
