"""TeViT training criterion: sequence-level Hungarian matching and the QueryInst losses (focal, L1, GIoU, dice).

Follows the official `TeViTHungarianAssigner` and `DIIHead`/`DynamicMaskHead` losses (spec section 3): one query per
instance for the whole clip, matched on costs averaged over the frames where the instance is visible; the matched
query is background in the frames where its instance is absent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import is_scipy_available, logging, requires_backends

from .configuration_tevit import TeViTConfig
from .ops_tevit import (
    box_cxcywh_to_xyxy,
    elementwise_generalized_box_iou,
    pairwise_generalized_box_iou,
    roi_align,
)


# scipy is a dependency of the package; as in Transformers' own Hungarian matchers, the file still imports without it
# (remote code, inference only: the model builds its criterion eagerly) and matching says clearly that it needs scipy.
if is_scipy_available():
    from scipy.optimize import linear_sum_assignment


logger = logging.get_logger(__name__)

# Stand-in for an infinite cost so `linear_sum_assignment` never sees NaN/inf.
_LARGE_COST = 1e8

MaskPredictor = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Elementwise sigmoid focal loss (mmdet `py_sigmoid_focal_loss`, no reduction): same shape as `logits`."""
    probs = logits.sigmoid()
    pt = (1 - probs) * targets + probs * (1 - targets)
    focal_weight = (alpha * targets + (1 - alpha) * (1 - targets)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * focal_weight


def dice_loss(mask_probs: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    """mmdet `DiceLoss(naive_dice=False)` per sample: `(n, M, M)` probs and binary targets -> `(n,)`."""
    probs, targets = mask_probs.flatten(1), targets.flatten(1).to(mask_probs.dtype)
    intersection = (probs * targets).sum(1)
    denominator = (probs * probs).sum(1) + eps + (targets * targets).sum(1) + eps
    return 1 - 2 * intersection / denominator


def _reduce_mean_across_processes(value: torch.Tensor) -> torch.Tensor:
    """mmdet `reduce_mean`: average over processes when `torch.distributed` is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = value.clone()
        torch.distributed.all_reduce(value)
        value = value / torch.distributed.get_world_size()
    return value


class TeViTSequenceHungarianMatcher(nn.Module):
    """Clip-level Hungarian matching of queries to instances (official `TeViTHungarianAssigner`)."""

    def __init__(self, config: TeViTConfig):
        super().__init__()
        self.class_cost_weight = config.class_cost_weight
        self.bbox_cost_weight = config.bbox_cost_weight
        self.giou_cost_weight = config.giou_cost_weight
        self.alpha = config.focal_alpha
        self.gamma = config.focal_gamma
        self.eps = config.focal_cost_eps
        self.giou_eps = config.giou_eps

    @torch.no_grad()
    def forward(
        self,
        class_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        image_size: torch.Tensor,
        class_labels: torch.Tensor,
        target_boxes: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            class_logits: `(T, Q, C)` logits of one clip.
            pred_boxes: `(T, Q, 4)` xyxy in input pixels.
            image_size: `(2,)` unpadded `(height, width)` (normalises the L1 cost).
            class_labels: `(K,)` instance classes.
            target_boxes: `(T, K, 4)` xyxy in input pixels.
            valid: `(T, K)` bool, instance visible in frame.
        Returns:
            `(query_indices, instance_indices)`, each `(K',)` with K' = number of instances visible in some frame.
        """
        num_frames, num_queries, _ = class_logits.shape
        visible_frames = valid.sum(0)
        matchable = torch.nonzero(visible_frames > 0).squeeze(1)
        if matchable.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=class_logits.device)
            return empty, empty
        class_labels, target_boxes, valid = class_labels[matchable], target_boxes[:, matchable], valid[:, matchable]
        visible_frames = visible_frames[matchable]

        probs = class_logits.float().sigmoid()
        negative = -(1 - probs + self.eps).log() * (1 - self.alpha) * probs.pow(self.gamma)
        positive = -(probs + self.eps).log() * self.alpha * (1 - probs).pow(self.gamma)
        class_cost = (positive - negative)[:, :, class_labels]  # (T, Q, K)

        height, width = image_size.to(pred_boxes.dtype).unbind()
        normalizer = torch.stack([width, height, width, height])
        l1_cost = torch.cdist(pred_boxes.float() / normalizer, target_boxes.float() / normalizer, p=1)
        # All frames at once: (T, Q, 4) x (T, K, 4) -> (T, Q, K).
        giou_cost = -pairwise_generalized_box_iou(pred_boxes.float(), target_boxes.float(), self.giou_eps)
        cost = (
            self.class_cost_weight * class_cost + self.bbox_cost_weight * l1_cost + self.giou_cost_weight * giou_cost
        )
        # Mean over the frames where each instance is visible; absent frames contribute nothing.
        frame_weights = valid.to(cost.dtype)[:, None, :]
        cost = (cost * frame_weights).sum(0) / visible_frames.to(cost.dtype)
        cost = torch.nan_to_num(cost, nan=_LARGE_COST, posinf=_LARGE_COST, neginf=-_LARGE_COST)
        requires_backends(self, ["scipy"])
        query_indices, instance_indices = linear_sum_assignment(cost.cpu().numpy())
        device = class_logits.device
        return (
            torch.as_tensor(query_indices, dtype=torch.long, device=device),
            matchable[torch.as_tensor(instance_indices, dtype=torch.long, device=device)],
        )


def _gather_positives(
    targets: list[dict], key: str, frames_per_clip: list[torch.Tensor], instances_per_clip: list[torch.Tensor]
) -> torch.Tensor:
    """`targets[c][key][frame, instance]` of every positive, clip after clip: one indexing per clip (no loop over
    positives). `key` is "boxes" `(T, K, 4)` -> `(P, 4)` or "masks" `(T, K, H, W)` -> `(P, H, W)`."""
    return torch.cat(
        [
            target[key][frames, instances]
            for target, frames, instances in zip(targets, frames_per_clip, instances_per_clip)
        ]
    )


def _check_clip_labels(
    boxes: torch.Tensor, valid: torch.Tensor, masks: torch.Tensor, image_size: torch.Tensor, where: str
) -> None:
    """Training labels are checked at the model's boundary, so a bad annotation is named instead of turning the loss
    into NaN. Boxes `(T, K, 4)` are normalised `(cx, cy, w, h)`: those of visible instances must be finite and inside
    [0, 1] (the data code clips boxes to the frame before normalising; a tolerance of 1e-3 absorbs rounding). Masks
    are `(T, K, H, W)` with the clip's frame and instance counts and at least the unpadded frame size."""
    visible_boxes = boxes[valid]
    if visible_boxes.numel() and not bool(torch.isfinite(visible_boxes).all()):
        raise ValueError(f"{where}: `boxes` of visible instances contain NaN or infinite values.")
    if visible_boxes.numel() and not bool(((visible_boxes >= -1e-3) & (visible_boxes <= 1 + 1e-3)).all()):
        low, high = float(visible_boxes.min()), float(visible_boxes.max())
        raise ValueError(
            f"{where}: `boxes` must be normalised (cx, cy, w, h) in [0, 1], got values in [{low:.3g}, {high:.3g}]."
        )
    num_frames, num_instances = boxes.shape[:2]
    if masks.ndim != 4 or tuple(masks.shape[:2]) != (num_frames, num_instances):
        raise ValueError(
            f"{where}: `masks` must be (T, K, H, W) = ({num_frames}, {num_instances}, H, W) like `boxes`, got "
            f"{tuple(masks.shape)}."
        )
    height, width = (int(value) for value in image_size)
    if masks.shape[-2] < height or masks.shape[-1] < width:
        raise ValueError(
            f"{where}: `masks` are {masks.shape[-2]}x{masks.shape[-1]} (HxW), smaller than the clip's frames "
            f"({height}x{width})."
        )


class TeViTLoss(nn.Module):
    """Per-stage sequence matching plus focal / L1 / GIoU / dice losses, summed over stages with their weights."""

    def __init__(self, config: TeViTConfig):
        super().__init__()
        self.config = config
        self.matcher = TeViTSequenceHungarianMatcher(config)

    def forward(
        self,
        stage_class_logits: Sequence[torch.Tensor],
        stage_boxes: Sequence[torch.Tensor],
        labels: list[dict[str, torch.Tensor]],
        image_sizes: torch.Tensor,
        predict_masks: MaskPredictor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """
        Args:
            stage_class_logits: per stage `(B, T, Q, C)`.
            stage_boxes: per stage `(B, T, Q, 4)` xyxy input pixels (with gradient to the stage's deltas).
            labels: one dict per clip (see `TeViTForVideoInstanceSegmentation.forward`).
            image_sizes: `(B, 2)` unpadded `(height, width)`.
            predict_masks: `(stage, flat_frame_index (P,), query_index (P,), boxes (P, 4) detached xyxy,
                class_labels (P,)) -> (P, M, M)` mask logits for the given class.
        Returns:
            Total loss and the dict of every term per stage (`stage{s}_loss_{cls,bbox,iou,mask}`).
        """
        targets = [
            self._prepare_targets(clip_labels, size, f"labels[{index}]")
            for index, (clip_labels, size) in enumerate(zip(labels, image_sizes))
        ]
        loss_dict: dict[str, torch.Tensor] = {}
        total = stage_class_logits[0].new_zeros(())
        for stage, (class_logits, boxes) in enumerate(zip(stage_class_logits, stage_boxes)):
            stage_losses = self._stage_losses(stage, class_logits, boxes, targets, image_sizes, predict_masks)
            for name, value in stage_losses.items():
                loss_dict[f"stage{stage}_{name}"] = value
                total = total + self.config.stage_loss_weights[stage] * value
        return total, loss_dict

    def _prepare_targets(self, clip_labels: dict[str, torch.Tensor], image_size: torch.Tensor, where: str) -> dict:
        for key in ("class_labels", "boxes", "masks", "valid"):
            if key not in clip_labels:
                raise ValueError(f"{where}: each `labels` dict needs `{key}`; got keys {sorted(clip_labels)}.")
        class_labels = clip_labels["class_labels"].long()
        boxes, valid, masks = clip_labels["boxes"], clip_labels["valid"].bool(), clip_labels["masks"]
        num_instances = class_labels.shape[0]
        if boxes.shape[1:] != (num_instances, 4) or valid.shape != boxes.shape[:2]:
            raise ValueError(
                f"`labels` shapes disagree: class_labels {tuple(class_labels.shape)}, boxes {tuple(boxes.shape)} "
                f"(expected (T, {num_instances}, 4)), valid {tuple(valid.shape)} (expected (T, {num_instances}))."
            )
        if num_instances and (class_labels.min() < 0 or class_labels.max() >= self.config.num_labels):
            raise ValueError(f"`class_labels` must lie in [0, {self.config.num_labels}), got {class_labels.tolist()}.")
        _check_clip_labels(boxes, valid, masks, image_size, where)
        height, width = image_size.to(boxes.dtype).unbind()
        scale = torch.stack([width, height, width, height])
        return {
            "class_labels": class_labels,
            "boxes": box_cxcywh_to_xyxy(boxes) * scale,
            "masks": masks,
            "valid": valid,
        }

    def _stage_losses(
        self,
        stage: int,
        class_logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: list[dict],
        image_sizes: torch.Tensor,
        predict_masks: MaskPredictor,
    ) -> dict[str, torch.Tensor]:
        config = self.config
        batch_size, num_frames, num_queries, num_labels = class_logits.shape
        if targets and targets[0]["boxes"].shape[0] != num_frames:
            raise ValueError(
                f"`labels` boxes have {targets[0]['boxes'].shape[0]} frames but the clip has {num_frames}."
            )
        class_targets = torch.full(
            (batch_size, num_frames, num_queries), num_labels, dtype=torch.long, device=class_logits.device
        )
        positive_frames, positive_queries, positive_instances, positive_clips = [], [], [], []
        for clip, target in enumerate(targets):
            query_index, instance_index = self.matcher(
                class_logits[clip].detach(),
                boxes[clip].detach(),
                image_sizes[clip],
                target["class_labels"],
                target["boxes"],
                target["valid"],
            )
            # A matched query is positive only in the frames where its instance is visible.
            visible = target["valid"][:, instance_index]  # (T, K')
            frame_index, pair_index = torch.nonzero(visible, as_tuple=True)
            positive_frames.append(frame_index)
            positive_queries.append(query_index[pair_index])
            positive_instances.append(instance_index[pair_index])
            positive_clips.append(torch.full_like(frame_index, clip))
        clips = torch.cat(positive_clips)
        frames = torch.cat(positive_frames)
        queries = torch.cat(positive_queries)
        instance_classes = torch.cat(
            [target["class_labels"][index] for target, index in zip(targets, positive_instances)]
        )
        class_targets[clips, frames, queries] = instance_classes

        num_positives = torch.tensor(float(clips.numel()), device=class_logits.device)
        average_positives = _reduce_mean_across_processes(num_positives)
        float_eps = torch.finfo(torch.float32).eps
        # Official normaliser (avg + eps); a batch without a single positive would divide by eps, so use 1 there.
        normalizer = torch.where(average_positives > 0, average_positives + float_eps, torch.ones_like(num_positives))

        one_hot = F.one_hot(class_targets, num_labels + 1)[..., :num_labels].to(class_logits.dtype)
        focal = sigmoid_focal_loss(class_logits.float(), one_hot.float(), config.focal_alpha, config.focal_gamma)
        losses = {"loss_cls": config.class_loss_weight * focal.sum() / normalizer}

        predicted = boxes[clips, frames, queries].float()
        target_boxes = _gather_positives(targets, "boxes", positive_frames, positive_instances).float()
        sizes = image_sizes[clips].to(predicted.dtype)
        scale = torch.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], dim=1)
        l1 = (predicted / scale - target_boxes / scale).abs().sum()
        losses["loss_bbox"] = config.bbox_loss_weight * l1 / normalizer
        giou = elementwise_generalized_box_iou(predicted, target_boxes, config.giou_eps)
        losses["loss_iou"] = config.giou_loss_weight * (1 - giou).sum() / normalizer

        mask_normalizer = average_positives.clamp(min=1.0)
        if clips.numel() == 0:
            # Keep the mask head in the graph so every parameter gets a (zero) gradient under DDP.
            dummy = predict_masks(
                stage,
                torch.zeros(1, dtype=torch.long, device=boxes.device),
                torch.zeros(1, dtype=torch.long, device=boxes.device),
                boxes[0, 0, :1].detach(),
                torch.zeros(1, dtype=torch.long, device=boxes.device),
            )
            losses["loss_mask"] = dummy.sum() * 0.0
            return losses
        flat_frames = clips * num_frames + frames
        detached_boxes = predicted.detach()
        mask_logits = predict_masks(stage, flat_frames, queries, detached_boxes, instance_classes)
        gt_masks = _gather_positives(targets, "masks", positive_frames, positive_instances)
        mask_targets = self._mask_targets(gt_masks, detached_boxes, mask_logits.shape[-1])
        dice = dice_loss(mask_logits.float().sigmoid(), mask_targets, config.dice_eps)
        losses["loss_mask"] = config.dice_loss_weight * dice.sum() / mask_normalizer
        return losses

    @staticmethod
    def _mask_targets(gt_masks: torch.Tensor, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
        """GT masks `(P, H, W)` cropped by the predicted boxes `(P, 4)` (clipped to the mask) and RoIAligned to
        `mask_size`, >= 0.5: `(P, mask_size, mask_size)`."""
        gt_masks = gt_masks.to(boxes.dtype)
        height, width = gt_masks.shape[-2:]
        clipped = torch.stack(
            [boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height), boxes[:, 2].clamp(0, width),
             boxes[:, 3].clamp(0, height)], dim=1,
        )  # fmt: skip
        rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], clipped], dim=1)
        crops = roi_align(gt_masks[:, None], rois, mask_size, spatial_scale=1.0, sampling_ratio=0, aligned=True)
        return (crops[:, 0] >= 0.5).to(boxes.dtype)


__all__ = ["TeViTLoss", "TeViTSequenceHungarianMatcher", "sigmoid_focal_loss", "dice_loss"]
