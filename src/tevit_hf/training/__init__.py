"""Training TeViT with Accelerate: arguments, optimizer and schedules, checkpoints, evaluation hook, model card, loop.

`scripts/train.py` is the entry point (`accelerate launch scripts/train.py ...`); this package holds the logic so
that tests reach it. Library-only: it may import the Hub modules, `data` and `evaluation`, never the other way round.
"""

from .arguments import TrainingArgumentError, build_parser, parse_arguments, validate_arguments
from .checkpointing import TrainingProgress, list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint
from .data_setup import EpochShuffleSampler, TrainingDataError
from .model_setup import MODEL_PRESETS, WeightLoadReport, build_config, build_model, load_weights_non_strict
from .optimization import (
    LearningRateSchedule,
    build_lr_scheduler,
    build_optimizer,
    build_parameter_groups,
    default_schedule_steps,
)


def train(args):
    """Run training (see `trainer.train`); imported lazily to keep `import tevit_hf.training` light."""
    from .trainer import train as _train

    return _train(args)


__all__ = [
    "MODEL_PRESETS",
    "EpochShuffleSampler",
    "LearningRateSchedule",
    "TrainingArgumentError",
    "TrainingDataError",
    "TrainingProgress",
    "WeightLoadReport",
    "build_config",
    "build_lr_scheduler",
    "build_model",
    "build_optimizer",
    "build_parameter_groups",
    "build_parser",
    "default_schedule_steps",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights_non_strict",
    "parse_arguments",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
    "validate_arguments",
]
