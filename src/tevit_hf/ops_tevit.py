"""Box and RoI operations shared by the model, the loss, post-processing and tracking.

Pure PyTorch (no torchvision), written to reproduce the mmcv/mmdet operators the official TeViT uses:
RoIAlign (`aligned=True`, average pooling), multi-level RoI mapping, `DeltaXYWHBBoxCoder` decoding and the
`_do_paste_mask` mask paste. Every box here is absolute `(x1, y1, x2, y2)` unless a name says otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# Upper bound on gathered elements per RoIAlign chunk: keeps peak memory bounded for thousands of RoIs.
_ROI_ALIGN_CHUNK_ELEMENTS = 1 << 25


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` (cx, cy, w, h) -> `(..., 4)` (x1, y1, x2, y2)."""
    center_x, center_y, width, height = boxes.unbind(-1)
    return torch.stack(
        [center_x - 0.5 * width, center_y - 0.5 * height, center_x + 0.5 * width, center_y + 0.5 * height], dim=-1
    )


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` (x1, y1, x2, y2) -> `(..., 4)` (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` xyxy -> `(...)` area (negative extents count as zero)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def pairwise_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of every pair: `(N, 4)`, `(M, 4)` xyxy -> `(N, M)`."""
    iou, _ = _pairwise_iou_and_union(boxes1, boxes2, eps)
    return iou


def _pairwise_iou_and_union(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float):
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = (area1[:, None] + area2[None, :] - overlap).clamp(min=eps)
    return overlap / union, union


def pairwise_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GIoU of every pair (mmdet `bbox_overlaps(mode="giou")`): `(N, 4)`, `(M, 4)` xyxy -> `(N, M)`."""
    iou, union = _pairwise_iou_and_union(boxes1, boxes2, eps)
    enclose_top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    enclose_bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    enclose_area = (enclose_bottom_right - enclose_top_left).clamp(min=0).prod(-1).clamp(min=eps)
    return iou - (enclose_area - union) / enclose_area


def elementwise_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GIoU of aligned pairs (mmdet `bbox_overlaps(is_aligned=True, mode="giou")`): `(N, 4)` x2 -> `(N,)`."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = (area1 + area2 - overlap).clamp(min=eps)
    enclose_top_left = torch.min(boxes1[:, :2], boxes2[:, :2])
    enclose_bottom_right = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    enclose_area = (enclose_bottom_right - enclose_top_left).clamp(min=0).prod(-1).clamp(min=eps)
    return overlap / union - (enclose_area - union) / enclose_area


def decode_box_deltas(
    boxes: torch.Tensor,
    deltas: torch.Tensor,
    means: tuple[float, ...] | list[float],
    stds: tuple[float, ...] | list[float],
    wh_ratio_clip: float,
) -> torch.Tensor:
    """mmdet `DeltaXYWHBBoxCoder.decode` with `clip_border=False`.

    Args:
        boxes: `(..., 4)` reference boxes, xyxy.
        deltas: `(..., 4)` predicted (dx, dy, dw, dh).
    Returns:
        `(..., 4)` decoded xyxy boxes (not clipped to the image).
    """
    means_tensor = deltas.new_tensor(means)
    stds_tensor = deltas.new_tensor(stds)
    deltas = deltas * stds_tensor + means_tensor
    max_log_ratio = abs(math.log(wh_ratio_clip))
    centers = (boxes[..., :2] + boxes[..., 2:]) * 0.5
    sizes = boxes[..., 2:] - boxes[..., :2]
    new_centers = centers + sizes * deltas[..., :2]
    new_sizes = sizes * deltas[..., 2:].clamp(min=-max_log_ratio, max=max_log_ratio).exp()
    return torch.cat([new_centers - new_sizes * 0.5, new_centers + new_sizes * 0.5], dim=-1)


def _bilinear_gather(
    features_flat: torch.Tensor, batch_offsets: torch.Tensor, y: torch.Tensor, x: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """mmcv `bilinear_interpolate` at points `y`, `x` of shape `(R, P)` -> `(R, P, C)`.

    `features_flat` is `(N * height * width, C)`; `batch_offsets` is `(R, 1)` = batch index * height * width.
    """
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y = y.clamp(min=0)
    x = x.clamp(min=0)
    y_low = y.floor().long().clamp(max=height - 1)
    x_low = x.floor().long().clamp(max=width - 1)
    y_high = (y_low + 1).clamp(max=height - 1)
    x_high = (x_low + 1).clamp(max=width - 1)
    # On the last row/column mmcv snaps the point onto it, so the interpolation weight there is 0.
    y = torch.where(y_low >= height - 1, y_low.to(y.dtype), y)
    x = torch.where(x_low >= width - 1, x_low.to(x.dtype), x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=-1)
    weights = weights.masked_fill(outside[..., None], 0.0).to(features_flat.dtype)
    result = 0
    for corner, (row, col) in enumerate(((y_low, x_low), (y_low, x_high), (y_high, x_low), (y_high, x_high))):
        index = batch_offsets + row * width + col
        result = result + features_flat[index] * weights[..., corner, None]
    return result


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    aligned: bool = True,
) -> torch.Tensor:
    """Exact pure-PyTorch mmcv/torchvision RoIAlign (average pooling).

    Args:
        features: `(N, C, H, W)` feature maps.
        rois: `(R, 5)` rows of `(batch_index, x1, y1, x2, y2)` in input-image coordinates.
        output_size: side of the pooled output.
        spatial_scale: factor from image coordinates to feature coordinates (1 / stride).
        sampling_ratio: sample points per bin side; `0` = adaptive `ceil(roi_size / output_size)` per RoI.
        aligned: shift the box by -0.5 pixel (pixel-centre model), as mmcv's default.
    Returns:
        `(R, C, output_size, output_size)`.
    """
    num_rois = rois.shape[0]
    num_images, channels, height, width = features.shape
    if num_rois == 0:
        return features.new_zeros(0, channels, output_size, output_size)
    offset = 0.5 if aligned else 0.0
    rois = rois.to(torch.float32)
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_width = rois[:, 3] * spatial_scale - offset - start_x
    roi_height = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_width, roi_height = roi_width.clamp(min=1.0), roi_height.clamp(min=1.0)
    bin_width, bin_height = roi_width / output_size, roi_height / output_size
    if sampling_ratio > 0:
        grid_w = torch.full_like(roi_width, sampling_ratio, dtype=torch.long)
        grid_h = grid_w
    else:
        grid_w = torch.ceil(roi_width / output_size).long().clamp(min=1)
        grid_h = torch.ceil(roi_height / output_size).long().clamp(min=1)
    max_grid = int(torch.max(torch.maximum(grid_w, grid_h)).item()) if sampling_ratio <= 0 else sampling_ratio

    features_flat = features.permute(0, 2, 3, 1).reshape(-1, channels)
    samples_per_roi = (output_size * max_grid) ** 2
    chunk = max(1, _ROI_ALIGN_CHUNK_ELEMENTS // max(1, samples_per_roi * channels))
    sample_index = torch.arange(max_grid, device=rois.device, dtype=torch.float32)
    bin_index = torch.arange(output_size, device=rois.device, dtype=torch.float32)
    outputs = []
    for begin in range(0, num_rois, chunk):
        part = slice(begin, begin + chunk)
        gh, gw = grid_h[part].float()[:, None, None], grid_w[part].float()[:, None, None]
        # (R, output_size, max_grid) sample coordinates along each axis.
        ys = start_y[part, None, None] + bin_index[None, :, None] * bin_height[part, None, None]
        ys = ys + (sample_index[None, None, :] + 0.5) * bin_height[part, None, None] / gh
        xs = start_x[part, None, None] + bin_index[None, :, None] * bin_width[part, None, None]
        xs = xs + (sample_index[None, None, :] + 0.5) * bin_width[part, None, None] / gw
        valid_y = sample_index[None, None, :] < gh  # (R, 1, G)
        valid_x = sample_index[None, None, :] < gw
        num_part = ys.shape[0]
        grid_y = ys[:, :, :, None, None].expand(-1, -1, -1, output_size, max_grid)
        grid_x = xs[:, None, None, :, :].expand(-1, output_size, max_grid, -1, -1)
        points_y = grid_y.reshape(num_part, -1)
        points_x = grid_x.reshape(num_part, -1)
        offsets = (rois[part, 0].long() * height * width)[:, None]
        sampled = _bilinear_gather(features_flat, offsets, points_y, points_x, height, width)
        sampled = sampled.view(num_part, output_size, max_grid, output_size, max_grid, channels)
        if sampling_ratio <= 0:
            validity = valid_y[:, :, :, None, None] & valid_x[:, :, None, None, :]  # (R, 1, G, 1, G)
            sampled = sampled * validity.to(sampled.dtype)[..., None]
        pooled = sampled.sum(dim=(2, 4)) / (gh * gw).clamp(min=1)[..., None]
        outputs.append(pooled.permute(0, 3, 1, 2))
    return torch.cat(outputs).to(features.dtype)


def map_rois_to_levels(rois: torch.Tensor, num_levels: int, finest_scale: int) -> torch.Tensor:
    """mmdet `SingleLevelRoIExtractor.map_roi_levels`: `(R, 5)` -> `(R,)` pyramid level per RoI."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def multi_level_roi_align(
    feature_maps: list[torch.Tensor] | tuple[torch.Tensor, ...],
    rois: torch.Tensor,
    output_size: int,
    strides: list[int] | tuple[int, ...],
    sampling_ratio: int,
    finest_scale: int,
) -> torch.Tensor:
    """RoIAlign each RoI on the pyramid level chosen by its scale (mmdet `SingleLevelRoIExtractor`).

    Args:
        feature_maps: `L` maps `(N, C, H_l, W_l)`, finest first.
        rois: `(R, 5)` `(batch_index, x1, y1, x2, y2)` in input pixels.
    Returns:
        `(R, C, output_size, output_size)`.
    """
    channels = feature_maps[0].shape[1]
    output = feature_maps[0].new_zeros(rois.shape[0], channels, output_size, output_size)
    if rois.shape[0] == 0:
        return output
    levels = map_rois_to_levels(rois, len(feature_maps), finest_scale)
    for level, (feature_map, stride) in enumerate(zip(feature_maps, strides)):
        index = torch.nonzero(levels == level).squeeze(1)
        if index.numel() == 0:
            continue
        output[index] = roi_align(feature_map, rois[index], output_size, 1.0 / stride, sampling_ratio, aligned=True)
    return output


def boxes_to_rois(boxes: torch.Tensor) -> torch.Tensor:
    """`(N, Q, 4)` per-image boxes -> `(N * Q, 5)` RoIs, image-major (mmdet `bbox2roi`)."""
    num_images, num_boxes = boxes.shape[:2]
    batch_index = torch.arange(num_images, device=boxes.device, dtype=boxes.dtype).repeat_interleave(num_boxes)
    return torch.cat([batch_index[:, None], boxes.reshape(-1, 4)], dim=1)


def paste_masks_in_image(
    mask_probs: torch.Tensor, boxes: torch.Tensor, image_height: int, image_width: int
) -> torch.Tensor:
    """mmdet `_do_paste_mask` (no skip-empty): RoI masks into the full image with bilinear `grid_sample`.

    Args:
        mask_probs: `(n, M, M)` mask probabilities in box coordinates.
        boxes: `(n, 4)` xyxy in the target image's pixels.
    Returns:
        `(n, image_height, image_width)` float probabilities (threshold them with `>=`).
    """
    num_masks = mask_probs.shape[0]
    device = mask_probs.device
    x0, y0, x1, y1 = torch.split(boxes.to(torch.float32), 1, dim=1)
    img_y = torch.arange(0, image_height, device=device, dtype=torch.float32) + 0.5
    img_x = torch.arange(0, image_width, device=device, dtype=torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    img_x = torch.where(torch.isinf(img_x), torch.zeros_like(img_x), img_x)
    img_y = torch.where(torch.isinf(img_y), torch.zeros_like(img_y), img_y)
    grid_x = img_x[:, None, :].expand(num_masks, image_height, image_width)
    grid_y = img_y[:, :, None].expand(num_masks, image_height, image_width)
    grid = torch.stack([grid_x, grid_y], dim=3)
    pasted = F.grid_sample(mask_probs[:, None].to(torch.float32), grid, align_corners=False)
    return pasted[:, 0]
