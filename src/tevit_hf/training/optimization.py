"""Optimizer and learning-rate schedules of the official TeViT recipe (spec 5.1).

- AdamW on every parameter with one weight decay (norms and biases included, as mmcv's default paramwise config);
- the backbone (every `*.backbone.*` parameter, messenger tokens included) at `backbone_lr_multiplier` x the base lr;
- optional `no_weight_decay_keys` (the Swin-L recipe: `absolute_pos_embed`, `relative_position_bias_table`, `norm`
  with `decay_mult=0`), resolved as mmcv's `custom_keys`: on the official parameter name, the longest matching key
  wins, so the backbone's norms keep their decay (`backbone` is longer than `norm`) while its relative position
  tables lose it and, like the head's norms, train at the full lr;
- mmcv's `IterBasedRunner` schedule: linear warm-up from `warmup_start_factor` (mmcv `warmup_ratio`, 0.001) over
  `warmup_steps`, then x`gamma` at each of `drop_steps` ("step"), or cosine annealing over all steps ("cosine").

Schedules are `LambdaLR`s counted in optimizer steps: the lr of the update at step `s` (0-based) is
`base_lr * lr_factor(s)`. Step them once per optimizer update (not through `accelerator.prepare`, which would step
them once per process).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..convert_tevit_original_to_hf import original_key_name


SCHEDULER_TYPES = ("step", "cosine")

# The official schedule (spec 5.1): 9200 iterations, warm-up 770, drops at 6100 and 8500, gamma 0.1.
OFFICIAL_MAX_STEPS = 9200
OFFICIAL_WARMUP_STEPS = 770
OFFICIAL_DROP_STEPS = (6100, 8500)
OFFICIAL_GAMMA = 0.1
OFFICIAL_WARMUP_START_FACTOR = 0.001


def backbone_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters of the MsgShifT backbone: every name with a `backbone` component.

    For `TeViTForVideoInstanceSegmentation` these are `model.backbone.*` (messenger tokens included), also when the
    model is wrapped (DDP's `module.` prefix keeps the `backbone` component).
    """
    return {name for name, _ in model.named_parameters() if "backbone" in name.split(".")}


def _official_name(name: str) -> str:
    """The mmdet name the official `custom_keys` were matched against: head and neck names through the converter's
    key table (e.g. `class_fcs.0.layer_norm` was `cls_fcs.1`, without "norm"); backbone names as they are (they all
    contain `backbone`, and Swin's `relative_position_bias_table` keeps its name)."""
    unwrapped = name.removeprefix("module.")
    return original_key_name(unwrapped) or unwrapped


def build_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    backbone_lr_multiplier: float,
    weight_decay: float,
    no_weight_decay_keys: Sequence[str] = (),
) -> list[dict]:
    """AdamW groups: backbone at `learning_rate * backbone_lr_multiplier`, the rest at `learning_rate`, and the
    parameters whose official name matches one of `no_weight_decay_keys` (mmcv `custom_keys` order, see the module
    docstring) without weight decay at the full lr.

    Weight decay applies to every other parameter (official: `decay_mult=1.0`, no norm/bias exception). Frozen
    parameters (`requires_grad=False`) are left out. Each group carries a `name` for logging.
    """
    backbone_names = backbone_parameter_names(model)
    # mmcv: keys sorted alphabetically, then by decreasing length; the first substring match decides.
    keys = sorted(sorted({"backbone", *no_weight_decay_keys}), key=len, reverse=True)
    backbone, other, no_decay = [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        official = _official_name(name)
        key = next((key for key in keys if key in official), None)
        if key is not None and key != "backbone":
            no_decay.append(parameter)
        else:
            (backbone if name in backbone_names else other).append(parameter)
    groups = [
        {"name": "backbone", "params": backbone, "lr": learning_rate * backbone_lr_multiplier},
        {"name": "head", "params": other, "lr": learning_rate},
    ]
    for group in groups:
        group["weight_decay"] = weight_decay
    groups.append({"name": "no_decay", "params": no_decay, "lr": learning_rate, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


def build_optimizer(
    model: nn.Module,
    learning_rate: float,
    backbone_lr_multiplier: float = 0.1,
    weight_decay: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    no_weight_decay_keys: Sequence[str] = (),
) -> torch.optim.AdamW:
    """AdamW over `build_parameter_groups` (official: lr 2.5e-4, backbone x0.1, weight decay 1e-4)."""
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    groups = build_parameter_groups(model, learning_rate, backbone_lr_multiplier, weight_decay, no_weight_decay_keys)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    # `foreach`: one batched update over all tensors; PyTorch's default picks it only for GPU tensors.
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True)


@dataclass(frozen=True)
class LearningRateSchedule:
    """The lr multiplier of optimizer step `step` (0-based); a picklable callable for `LambdaLR`.

    Args:
        scheduler_type: "step" (x`gamma` at each of `drop_steps`) or "cosine" (half cosine from 1 to
            `min_lr_ratio` over `max_steps`, as mmcv `CosineAnnealing` with `by_epoch=False`).
        max_steps: total optimizer steps.
        warmup_steps: linear warm-up length (0 = none).
        warmup_start_factor: multiplier at step 0 of the warm-up (mmcv `warmup_ratio`).
        drop_steps: steps at which the "step" schedule multiplies by `gamma` (the lr of step `d` is already dropped).
        gamma: drop factor.
        min_lr_ratio: final multiplier of the cosine schedule.
    """

    scheduler_type: str
    max_steps: int
    warmup_steps: int = 0
    warmup_start_factor: float = OFFICIAL_WARMUP_START_FACTOR
    drop_steps: tuple[int, ...] = ()
    gamma: float = OFFICIAL_GAMMA
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.scheduler_type not in SCHEDULER_TYPES:
            raise ValueError(f"lr scheduler type must be one of {SCHEDULER_TYPES}, got {self.scheduler_type!r}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 < self.warmup_start_factor <= 1.0:
            raise ValueError(f"warmup_start_factor must be in (0, 1], got {self.warmup_start_factor}")
        if list(self.drop_steps) != sorted(set(self.drop_steps)) or any(step < 1 for step in self.drop_steps):
            raise ValueError(f"drop steps must be strictly increasing positive integers, got {list(self.drop_steps)}")

    def regular_factor(self, step: int) -> float:
        """The multiplier without warm-up (mmcv `get_regular_lr`)."""
        if self.scheduler_type == "step":
            num_drops = sum(step >= drop_step for drop_step in self.drop_steps)
            return self.gamma**num_drops
        progress = min(step, self.max_steps) / self.max_steps
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def warmup_factor(self, step: int) -> float:
        """mmcv linear warm-up: `1 - (1 - step / warmup_steps) * (1 - warmup_start_factor)` before `warmup_steps`."""
        if step >= self.warmup_steps:
            return 1.0
        return 1.0 - (1.0 - step / self.warmup_steps) * (1.0 - self.warmup_start_factor)

    def __call__(self, step: int) -> float:
        return self.regular_factor(step) * self.warmup_factor(step)


def default_schedule_steps(
    max_steps: int, warmup_steps: int | None = None, drop_steps: Sequence[int] | None = None
) -> tuple[int, tuple[int, ...]]:
    """Warm-up length and drop steps, defaulting to the official ones scaled to `max_steps`.

    With `max_steps = 9200` the defaults are exactly the official 770 and (6100, 8500).
    """
    if warmup_steps is None:
        warmup_steps = round(OFFICIAL_WARMUP_STEPS * max_steps / OFFICIAL_MAX_STEPS)
    if drop_steps is None:
        scaled = (round(step * max_steps / OFFICIAL_MAX_STEPS) for step in OFFICIAL_DROP_STEPS)
        drop_steps = tuple(sorted({step for step in scaled if 0 < step < max_steps}))
    return int(warmup_steps), tuple(int(step) for step in drop_steps)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: LearningRateSchedule) -> LambdaLR:
    """`LambdaLR` applying `schedule` to every parameter group (each keeps its own base lr)."""
    return LambdaLR(optimizer, lr_lambda=schedule)


__all__ = [
    "OFFICIAL_DROP_STEPS",
    "OFFICIAL_GAMMA",
    "OFFICIAL_MAX_STEPS",
    "OFFICIAL_WARMUP_START_FACTOR",
    "OFFICIAL_WARMUP_STEPS",
    "SCHEDULER_TYPES",
    "LearningRateSchedule",
    "backbone_parameter_names",
    "build_lr_scheduler",
    "build_optimizer",
    "build_parameter_groups",
    "default_schedule_steps",
]
