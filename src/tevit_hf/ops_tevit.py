"""Box and RoI operations shared by the model, the loss, post-processing and tracking.

Pure PyTorch (no torchvision), written to reproduce the mmcv/mmdet operators the official TeViT uses:
RoIAlign (`aligned=True`, average pooling), multi-level RoI mapping, `DeltaXYWHBBoxCoder` decoding and the
`_do_paste_mask` mask paste. Every box here is absolute `(x1, y1, x2, y2)` unless a name says otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _is_exporting() -> bool:
    """Whether `torch.export` (or the ONNX exporter built on it) is tracing (`torch.compiler.is_exporting`, torch>=2.6)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting and is_exporting())


# Upper bound on sampled values (sample points x channels) per RoIAlign chunk: keeps peak memory bounded for
# thousands of RoIs and for the large adaptive grids of the mask targets.
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


def box_xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` COCO (x, y, w, h) -> `(..., 4)` (x1, y1, x2, y2)."""
    x, y, width, height = boxes.unbind(-1)
    return torch.stack([x, y, x + width, y + height], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` xyxy -> `(...)` area (negative extents count as zero)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def pairwise_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of every pair: `(..., N, 4)`, `(..., M, 4)` xyxy -> `(..., N, M)` (leading dims broadcast)."""
    iou, _ = _pairwise_iou_and_union(boxes1, boxes2, eps)
    return iou


def _pairwise_iou_and_union(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float):
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = (area1[..., :, None] + area2[..., None, :] - overlap).clamp(min=eps)
    return overlap / union, union


def pairwise_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GIoU of every pair (mmdet `bbox_overlaps(mode="giou")`): `(..., N, 4)`, `(..., M, 4)` xyxy -> `(..., N, M)`.

    Leading dims broadcast, so one call covers every frame of a clip.
    """
    iou, union = _pairwise_iou_and_union(boxes1, boxes2, eps)
    enclose_top_left = torch.min(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    enclose_bottom_right = torch.max(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
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
        `(..., 4)` decoded xyxy boxes (not clipped to the image), float32 (or float64 for float64 inputs).
    """
    # Decoded in (at least) float32 whatever the autocast / model dtype: the exp and pixel-scale sums need it.
    compute_dtype = torch.promote_types(torch.promote_types(boxes.dtype, deltas.dtype), torch.float32)
    boxes, deltas = boxes.to(compute_dtype), deltas.to(compute_dtype)
    # Python-scalar arithmetic per component: a `new_tensor(stds)` here would be a blocking host-to-device copy (a
    # stream sync on CUDA) in every head stage.
    deltas = torch.stack([deltas[..., index] * stds[index] + means[index] for index in range(4)], dim=-1)
    max_log_ratio = abs(math.log(wh_ratio_clip))
    centers = (boxes[..., :2] + boxes[..., 2:]) * 0.5
    sizes = boxes[..., 2:] - boxes[..., :2]
    new_centers = centers + sizes * deltas[..., :2]
    new_sizes = sizes * deltas[..., 2:].clamp(min=-max_log_ratio, max=max_log_ratio).exp()
    return torch.cat([new_centers - new_sizes * 0.5, new_centers + new_sizes * 0.5], dim=-1)


def _axis_interpolation_terms(
    start: torch.Tensor,
    bin_size: torch.Tensor,
    grid: torch.Tensor,
    size: torch.Tensor,
    output_size: int,
    max_grid: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mmcv `bilinear_interpolate` along one axis for every sample point of every RoI bin.

    RoIAlign samples a tensor-product grid, and mmcv's bilinear weight (zero outside `[-1, size]`, snapped onto the
    last row/column) factorises into one term per axis, so each axis is handled on its own.

    Args:
        start: `(R,)` RoI start in feature coordinates; bin_size: `(R,)` bin extent; grid: `(R,)` samples per bin
            (samples `>= grid` of the `max_grid` computed get weight 0); size: `(R,)` feature extent (long).
    Returns:
        index `(R, output_size, max_grid, 2)` long (low and high neighbour) and weight of the same shape (float32).
    """
    device = start.device
    sample_index = torch.arange(max_grid, device=device, dtype=torch.float32)
    bin_index = torch.arange(output_size, device=device, dtype=torch.float32)
    grid = grid.to(torch.float32)[:, None, None]
    bin_size = bin_size[:, None, None]
    # (R, output_size, max_grid) sample coordinates (same operation order as mmcv).
    points = start[:, None, None] + bin_index[None, :, None] * bin_size
    points = points + (sample_index[None, None, :] + 0.5) * bin_size / grid
    size = size[:, None, None]
    last = size - 1
    outside = (points < -1.0) | (points > size) | (sample_index[None, None, :] >= grid)
    points = points.clamp(min=0)
    low = torch.minimum(points.floor().long(), last)
    high = torch.minimum(low + 1, last)
    # On the last row/column mmcv snaps the point onto it, so the interpolation weight there is 0.
    points = torch.where(low >= last, low.to(points.dtype), points)
    high_weight = points - low
    weight = torch.stack([1.0 - high_weight, high_weight], dim=-1).masked_fill(outside[..., None], 0.0)
    return torch.stack([low, high], dim=-1), weight


def _weighted_row_sum(flat_features: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`sum_k weight[:, k] * flat_features[index[:, k]]`: `(V, C)` rows, `(n, K)` indices and weights -> `(n, C)`.

    `F.embedding_bag` fuses the gather and the sum; exported graphs take K gathers instead, because the ONNX
    translation of `embedding_bag` is a `Loop` over the bags (thousands of iterations per RoIAlign).
    """
    weight = weight.to(flat_features.dtype)
    if not _is_exporting():
        return F.embedding_bag(index, flat_features, per_sample_weights=weight, mode="sum")
    total = flat_features[index[:, 0]] * weight[:, 0, None]
    for column in range(1, index.shape[1]):
        total = total + flat_features[index[:, column]] * weight[:, column, None]
    return total


def _roi_align_flat(
    flat_features: torch.Tensor,
    rois: torch.Tensor,
    row_offsets: torch.Tensor,
    heights: torch.Tensor,
    widths: torch.Tensor,
    spatial_scales: torch.Tensor | float,
    output_size: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """RoIAlign on channels-last rows `flat_features` `(V, C)`; `(R, C, S, S)` out (a channels-last view).

    Each output bin is a weighted sum of at most `4 * grid**2` feature rows (its samples' bilinear neighbours), which
    `F.embedding_bag(mode="sum", per_sample_weights=...)` computes in one fused gather-reduce: no `(R, S*S*4*G*G, C)`
    tensor is materialised and there is no Python loop over levels or RoIs. Per RoI: `row_offsets` `(R,)` is the
    flat row of its image's `(0, 0)` pixel, `heights`/`widths` `(R,)` its map size, `spatial_scales` image -> map.
    """
    num_rois, channels = rois.shape[0], flat_features.shape[1]
    offset = 0.5 if aligned else 0.0
    # mmcv RoIAlign has no gradient with respect to the boxes: only the features are trained through it.
    rois = rois.detach().to(torch.float32)
    start_x = rois[:, 1] * spatial_scales - offset
    start_y = rois[:, 2] * spatial_scales - offset
    roi_width = rois[:, 3] * spatial_scales - offset - start_x
    roi_height = rois[:, 4] * spatial_scales - offset - start_y
    if not aligned:
        roi_width, roi_height = roi_width.clamp(min=1.0), roi_height.clamp(min=1.0)
    bin_width, bin_height = roi_width / output_size, roi_height / output_size
    if sampling_ratio > 0:
        grid_w = torch.full_like(roi_width, sampling_ratio, dtype=torch.long)
        grid_h = grid_w
        max_grid = sampling_ratio
    else:
        grid_w = torch.ceil(roi_width / output_size).long().clamp(min=1)
        grid_h = torch.ceil(roi_height / output_size).long().clamp(min=1)
        # Host sync, only on the adaptive path (mask targets in the loss): the grid size sets the tensor shapes.
        max_grid = int(torch.max(torch.maximum(grid_w, grid_h)).item())
    index_y, weight_y = _axis_interpolation_terms(start_y, bin_height, grid_h, heights, output_size, max_grid)
    index_x, weight_x = _axis_interpolation_terms(start_x, bin_width, grid_w, widths, output_size, max_grid)
    count = (grid_h * grid_w).clamp(min=1).to(torch.float32)

    samples_per_roi = (output_size * max_grid) ** 2
    chunk = max(1, _ROI_ALIGN_CHUNK_ELEMENTS // (samples_per_roi * channels))
    # An exported graph (torch.export / ONNX) has no Python loop over the RoI count, which grows with the frame count:
    # one chunk keeps that count dynamic (peak memory then grows with frames x RoIs, see docs/benchmarks.md).
    parts = [slice(None)] if _is_exporting() else [slice(begin, begin + chunk) for begin in range(0, num_rois, chunk)]
    outputs = []
    for part in parts:
        # (R, S_y, S_x, G_y, G_x, 2, 2): flat row and weight of the four neighbours of every sample, in mmcv's order.
        rows = index_y[part][:, :, None, :, None, :, None] * widths[part][:, None, None, None, None, None, None]
        index = row_offsets[part][:, None, None, None, None, None, None] + rows
        index = index + index_x[part][:, None, :, None, :, None, :]
        weight = weight_y[part][:, :, None, :, None, :, None] * weight_x[part][:, None, :, None, :, None, :]
        # One bag per sample point (its bilinear value), then the mean over the bin's samples: the same grouping
        # of the sums as mmcv, so a constant map pools to exactly its value.
        samples = _weighted_row_sum(flat_features, index.reshape(-1, 4), weight.reshape(-1, 4))
        samples = samples.view(-1, output_size, output_size, max_grid * max_grid, channels)
        pooled = samples.sum(dim=3) / count[part][:, None, None, None].to(samples.dtype)
        outputs.append(pooled)
    pooled = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return pooled.permute(0, 3, 1, 2)


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
        `(R, C, output_size, output_size)` (channels-last memory layout).
    """
    num_images, channels, height, width = features.shape
    if rois.shape[0] == 0:
        return features.new_zeros(0, channels, output_size, output_size)
    flat_features = features.permute(0, 2, 3, 1).reshape(-1, channels)  # a view for channels-last maps
    sizes = torch.full_like(rois[:, 0], 1, dtype=torch.long)
    return _roi_align_flat(
        flat_features,
        rois,
        rois[:, 0].long() * (height * width),
        sizes * height,
        sizes * width,
        spatial_scale,
        output_size,
        sampling_ratio,
        aligned,
    )


def map_rois_to_levels(rois: torch.Tensor, num_levels: int, finest_scale: int) -> torch.Tensor:
    """mmdet `SingleLevelRoIExtractor.map_roi_levels`: `(R, 5)` -> `(R,)` pyramid level per RoI."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def flatten_feature_pyramid(feature_maps: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """`L` maps `(N, C, H_l, W_l)` -> `(sum_l N * H_l * W_l, C)`: channels-last rows, level-major, then image.

    `multi_level_roi_align` gathers from this; build it once per forward and pass it to every call.
    """
    channels = feature_maps[0].shape[1]
    return torch.cat([feature_map.permute(0, 2, 3, 1).reshape(-1, channels) for feature_map in feature_maps])


def _per_level(levels: torch.Tensor, values: list[int] | list[float], dtype: torch.dtype) -> torch.Tensor:
    """`values[levels]` without a host-to-device copy (a `torch.where` per level)."""
    result = torch.full(levels.shape, values[0], dtype=dtype, device=levels.device)
    for level, value in enumerate(values[1:], start=1):
        result = torch.where(levels == level, torch.tensor(value, dtype=dtype), result)
    return result


def multi_level_roi_align(
    feature_maps: list[torch.Tensor] | tuple[torch.Tensor, ...],
    rois: torch.Tensor,
    output_size: int,
    strides: list[int] | tuple[int, ...],
    sampling_ratio: int,
    finest_scale: int,
    flat_features: torch.Tensor | None = None,
) -> torch.Tensor:
    """RoIAlign each RoI on the pyramid level chosen by its scale (mmdet `SingleLevelRoIExtractor`).

    Every RoI is pooled in one fused call on the flattened pyramid (no loop over levels, no `nonzero`, no host
    sync), which also makes this function free of graph breaks under `torch.compile`.

    Args:
        feature_maps: `L` maps `(N, C, H_l, W_l)`, finest first.
        rois: `(R, 5)` `(batch_index, x1, y1, x2, y2)` in input pixels.
        flat_features: `flatten_feature_pyramid(feature_maps)` when already computed (saves a copy per call).
    Returns:
        `(R, C, output_size, output_size)` (channels-last memory layout).
    """
    channels = feature_maps[0].shape[1]
    if rois.shape[0] == 0:
        return feature_maps[0].new_zeros(0, channels, output_size, output_size)
    if flat_features is None:
        flat_features = flatten_feature_pyramid(feature_maps)
    levels = map_rois_to_levels(rois, len(feature_maps), finest_scale)
    heights = [feature_map.shape[2] for feature_map in feature_maps]
    widths = [feature_map.shape[3] for feature_map in feature_maps]
    level_starts = [0]
    for feature_map, height, width in zip(feature_maps[:-1], heights, widths):
        level_starts.append(level_starts[-1] + feature_map.shape[0] * height * width)
    level_heights = _per_level(levels, heights, torch.long)
    level_widths = _per_level(levels, widths, torch.long)
    row_offsets = _per_level(levels, level_starts, torch.long) + rois[:, 0].long() * level_heights * level_widths
    spatial_scales = _per_level(levels, [1.0 / stride for stride in strides], torch.float32)
    return _roi_align_flat(
        flat_features,
        rois,
        row_offsets,
        level_heights,
        level_widths,
        spatial_scales,
        output_size,
        sampling_ratio,
        aligned=True,
    )


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
