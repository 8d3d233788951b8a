"""The benchmark harness (tiny settings) and the optimised code paths against their reference formulations."""

import json
import math
import os

import numpy as np
import pytest
import torch
from conftest import make_clip_labels, tiny_config

from tevit_hf import TeViTForVideoInstanceSegmentation
from tevit_hf.commands.benchmark import (
    BenchmarkSettings,
    PeakMemory,
    apply_overrides,
    benchmark_near_online,
    benchmark_training,
    compare_inference,
    flops_per_frame,
    generate_frames,
)
from tevit_hf.commands.cli import main
from tevit_hf.loss_tevit import TeViTLoss, TeViTSequenceHungarianMatcher, _gather_positives
from tevit_hf.ops_tevit import (
    boxes_to_rois,
    flatten_feature_pyramid,
    map_rois_to_levels,
    multi_level_roi_align,
    pairwise_generalized_box_iou,
    roi_align,
)


HEIGHT, WIDTH = 64, 96
STRIDES = [4, 8, 16, 32]
TINY = BenchmarkSettings(preset="tiny", height=HEIGHT, width=WIDTH, num_frames=2, repeats=2, threads=1)
# Documented bf16-autocast tolerances (docs/benchmarks.md), against fp32 on the same weights: video scores within
# 0.01 absolute; the 28x28 masks of the (query, class) pairs both select have a mean IoU >= 0.8 (the masks of a random
# tiny model hover around the 0.5 threshold; 8 seeds gave 0.86-1.0 and score errors <= 0.005).
BF16_SCORE_TOLERANCE = 0.01
BF16_MIN_MASK_IOU = 0.8


# ----------------------------------------------------------------------------------------------------------------------
# Reference formulations (the code before the optimisation), kept here to pin the optimised versions.
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _one_thread():
    # These tests are tiny: on a shared 2-core machine one thread avoids waiting on busy OpenMP workers.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def reference_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned=True):
    """Four separate gathers per sample point, summed over the bin (previous ops_tevit.roi_align)."""
    _, channels, height, width = features.shape
    offset = 0.5 if aligned else 0.0
    rois = rois.to(torch.float32)
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_width = rois[:, 3] * spatial_scale - offset - start_x
    roi_height = rois[:, 4] * spatial_scale - offset - start_y
    bin_width, bin_height = roi_width / output_size, roi_height / output_size
    if sampling_ratio > 0:
        grid_w = grid_h = torch.full_like(roi_width, sampling_ratio, dtype=torch.long)
        max_grid = sampling_ratio
    else:
        grid_w = torch.ceil(roi_width / output_size).long().clamp(min=1)
        grid_h = torch.ceil(roi_height / output_size).long().clamp(min=1)
        max_grid = int(torch.maximum(grid_w, grid_h).max())
    flat = features.permute(0, 2, 3, 1).reshape(-1, channels)
    sample = torch.arange(max_grid, dtype=torch.float32)
    bins = torch.arange(output_size, dtype=torch.float32)
    gh, gw = grid_h.float()[:, None, None], grid_w.float()[:, None, None]
    ys = start_y[:, None, None] + bins[None, :, None] * bin_height[:, None, None]
    ys = ys + (sample[None, None, :] + 0.5) * bin_height[:, None, None] / gh
    xs = start_x[:, None, None] + bins[None, :, None] * bin_width[:, None, None]
    xs = xs + (sample[None, None, :] + 0.5) * bin_width[:, None, None] / gw
    num = rois.shape[0]
    y = ys[:, :, :, None, None].expand(-1, -1, -1, output_size, max_grid).reshape(num, -1)
    x = xs[:, None, None, :, :].expand(-1, output_size, max_grid, -1, -1).reshape(num, -1)
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low = y.floor().long().clamp(max=height - 1)
    x_low = x.floor().long().clamp(max=width - 1)
    y_high, x_high = (y_low + 1).clamp(max=height - 1), (x_low + 1).clamp(max=width - 1)
    y = torch.where(y_low >= height - 1, y_low.to(y.dtype), y)
    x = torch.where(x_low >= width - 1, x_low.to(x.dtype), x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=-1).masked_fill(outside[..., None], 0.0)
    weights = weights.to(flat.dtype)
    offsets = (rois[:, 0].long() * height * width)[:, None]
    sampled = 0
    for corner, (row, col) in enumerate(((y_low, x_low), (y_low, x_high), (y_high, x_low), (y_high, x_high))):
        sampled = sampled + flat[offsets + row * width + col] * weights[..., corner, None]
    sampled = sampled.view(num, output_size, max_grid, output_size, max_grid, channels)
    valid = (sample[None, None, :] < gh)[:, :, :, None, None] & (sample[None, None, :] < gw)[:, :, None, None, :]
    sampled = sampled * valid.to(sampled.dtype)[..., None]
    return (sampled.sum(dim=(2, 4)) / (gh * gw)[..., None]).permute(0, 3, 1, 2)


def reference_multi_level_roi_align(feature_maps, rois, output_size, strides, sampling_ratio, finest_scale):
    """A loop over levels with `nonzero` (previous ops_tevit.multi_level_roi_align)."""
    output = feature_maps[0].new_zeros(rois.shape[0], feature_maps[0].shape[1], output_size, output_size)
    levels = map_rois_to_levels(rois, len(feature_maps), finest_scale)
    for level, (feature_map, stride) in enumerate(zip(feature_maps, strides)):
        index = torch.nonzero(levels == level).squeeze(1)
        if index.numel():
            output[index] = reference_roi_align(feature_map, rois[index], output_size, 1.0 / stride, sampling_ratio)
    return output


def random_pyramid(num_images=3, channels=8, dtype=torch.float32):
    return [torch.randn(num_images, channels, 128 // s, 192 // s, dtype=dtype) for s in STRIDES]


def random_rois(num_images=3, per_image=40):
    # Sizes from 1 to 700 px (every pyramid level), some boxes far outside or across the border.
    corner = torch.rand(num_images, per_image, 2) * torch.tensor([260.0, 180.0]) - 40.0
    size = torch.exp(torch.rand(num_images, per_image, 2) * math.log(700.0))
    return boxes_to_rois(torch.cat([corner, corner + size], dim=-1))


def tiny_model(**overrides):
    model = TeViTForVideoInstanceSegmentation(tiny_config(**overrides)).eval()
    with torch.no_grad():
        # Trained models predict moderate box deltas; random ones make the cascade chaotic, so that 1-ulp changes
        # early on would grow past any tolerance.
        for stage in model.model.decoder_stages:
            stage.box_delta_predictor.weight.mul_(0.1)
    return model


def outputs_max_difference(reference, other):
    names = ("class_logits", "pred_boxes", "selected_scores", "selected_boxes", "selected_mask_logits")
    assert torch.equal(reference.selected_query_indices, other.selected_query_indices)
    assert torch.equal(reference.selected_labels, other.selected_labels)
    return {
        name: (getattr(reference, name).float() - getattr(other, name).float()).abs().max().item() for name in names
    }


# ----------------------------------------------------------------------------------------------------------------------
# Optimised paths vs reference formulations
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_matches_reference_formulation(sampling_ratio):
    features = torch.randn(3, 5, 20, 30)
    rois = random_rois()
    rois[:, 1:] /= 8.0
    expected = reference_roi_align(features, rois, 7, 1.0, sampling_ratio)
    torch.testing.assert_close(roi_align(features, rois, 7, 1.0, sampling_ratio), expected, rtol=0, atol=1e-6)
    # In float64 only the summation order differs.
    torch.testing.assert_close(
        roi_align(features.double(), rois, 7, 1.0, sampling_ratio),
        reference_roi_align(features.double(), rois, 7, 1.0, sampling_ratio),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("output_size", [7, 14])
def test_multi_level_roi_align_matches_reference_and_reuses_the_flat_pyramid(output_size):
    maps, rois = random_pyramid(), random_rois()
    assert set(map_rois_to_levels(rois, 4, 56).tolist()) == {0, 1, 2, 3}
    expected = reference_multi_level_roi_align(maps, rois, output_size, STRIDES, 2, 56)
    result = multi_level_roi_align(maps, rois, output_size, STRIDES, 2, 56)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-6)
    shared = multi_level_roi_align(
        maps, rois, output_size, STRIDES, 2, 56, flat_features=flatten_feature_pyramid(maps)
    )
    assert torch.equal(shared, result)


def test_roi_align_gradients_match_reference():
    maps = [m.requires_grad_() for m in random_pyramid(channels=4)]
    rois = random_rois(per_image=10)
    weights = torch.randn(rois.shape[0], 4, 7, 7)
    (multi_level_roi_align(maps, rois, 7, STRIDES, 2, 56) * weights).sum().backward()
    grads = [m.grad.clone() for m in maps]
    for m in maps:
        m.grad = None
    (reference_multi_level_roi_align(maps, rois, 7, STRIDES, 2, 56) * weights).sum().backward()
    for grad, m in zip(grads, maps):
        torch.testing.assert_close(grad, m.grad, rtol=0, atol=1e-5)


def test_roi_align_compiles_without_graph_breaks_and_matches_eager():
    maps, rois = random_pyramid(channels=4), random_rois(per_image=12)
    compiled = torch.compile(multi_level_roi_align, backend="inductor", fullgraph=True)
    torch.testing.assert_close(
        compiled(maps, rois, 7, STRIDES, 2, 56),
        multi_level_roi_align(maps, rois, 7, STRIDES, 2, 56),
        rtol=0,
        atol=1e-6,
    )


def test_batched_giou_cost_equals_the_per_frame_loop():
    predicted = torch.rand(4, 10, 2) * 50
    predicted = torch.cat([predicted, predicted + torch.rand(4, 10, 2) * 40 + 1], dim=-1)
    targets = torch.rand(4, 3, 2) * 50
    targets = torch.cat([targets, targets + torch.rand(4, 3, 2) * 40 + 1], dim=-1)
    batched = pairwise_generalized_box_iou(predicted, targets)
    looped = torch.stack([pairwise_generalized_box_iou(predicted[t], targets[t]) for t in range(4)])
    assert torch.equal(batched, looped)


def test_matcher_and_loss_gathers_equal_the_per_positive_formulation():
    targets = [
        {"boxes": torch.rand(3, 2, 4), "masks": torch.rand(3, 2, 8, 8) > 0.5},
        {"boxes": torch.rand(3, 4, 4), "masks": torch.rand(3, 4, 8, 8) > 0.5},
    ]
    frames = [torch.tensor([0, 2, 1]), torch.tensor([1, 1, 0, 2])]
    instances = [torch.tensor([1, 0, 1]), torch.tensor([3, 0, 2, 1])]
    for key in ("boxes", "masks"):
        expected = torch.stack(
            [targets[clip][key][f, i] for clip in range(2) for f, i in zip(frames[clip], instances[clip])]
        )
        assert torch.equal(_gather_positives(targets, key, frames, instances), expected)


def test_loss_is_unchanged_by_the_vectorised_matcher(monkeypatch):
    """The matcher's batched GIoU gives the same assignment and loss as the per-frame loop."""
    import tevit_hf.loss_tevit as loss_module

    model = tiny_model().train()
    labels = [make_clip_labels(3, HEIGHT, WIDTH, absent=[(1, 1)])]
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    torch.manual_seed(1)
    loss = model(pixel_values=pixel_values, labels=labels).loss

    def per_frame_giou(boxes1, boxes2, eps=1e-6):
        if boxes1.ndim == 2:
            return pairwise_generalized_box_iou(boxes1, boxes2, eps)
        return torch.stack([pairwise_generalized_box_iou(a, b, eps) for a, b in zip(boxes1, boxes2)])

    monkeypatch.setattr(loss_module, "pairwise_generalized_box_iou", per_frame_giou)
    torch.manual_seed(1)
    assert torch.equal(model(pixel_values=pixel_values, labels=labels).loss, loss)
    assert isinstance(model.criterion, TeViTLoss) and isinstance(
        model.criterion.matcher, TeViTSequenceHungarianMatcher
    )


def test_sdpa_and_eager_attention_agree_in_fp32():
    sdpa = tiny_model()
    assert sdpa.config._attn_implementation == "sdpa"  # the default
    eager = tiny_model()
    eager.load_state_dict(sdpa.state_dict())
    eager.set_attn_implementation("eager")  # still selectable
    assert eager.model.backbone.stages[0].layers[0].attention.config._attn_implementation == "eager"
    pixel_values = torch.randn(2, 3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        differences = outputs_max_difference(eager(pixel_values=pixel_values), sdpa(pixel_values=pixel_values))
    assert max(differences.values()) < 1e-4, differences


def test_whole_inference_forward_traces_as_one_graph():
    model = tiny_model()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: any graph break raises
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        differences = outputs_max_difference(model(pixel_values=pixel_values), compiled(pixel_values=pixel_values))
    assert max(differences.values()) < 1e-4, differences


def _mask_iou(logits_a, logits_b):
    a, b = logits_a.float() >= 0, logits_b.float() >= 0
    union = (a | b).flatten(-2).sum(-1)
    return torch.where(union > 0, (a & b).flatten(-2).sum(-1) / union.clamp(min=1), torch.ones_like(union)).float()


def test_bf16_autocast_stays_within_the_documented_tolerance():
    model = tiny_model()
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        reference = model(pixel_values=pixel_values)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(pixel_values=pixel_values)
    # Boxes and video scores are computed in float32 even under autocast.
    assert low.pred_boxes.dtype == torch.float32 and low.selected_scores.dtype == torch.float32
    # Same (query, class) pairs compared: scores from the bf16 per-frame logits, masks of the pairs both selected.
    probs = low.class_logits.float().sigmoid().mean(1)[0]
    queries, labels = reference.selected_query_indices[0], reference.selected_labels[0]
    assert (probs[queries, labels] - reference.selected_scores[0]).abs().max() <= BF16_SCORE_TOLERANCE
    common = [
        (k_ref, k_low)
        for k_ref, pair in enumerate(zip(queries.tolist(), labels.tolist()))
        for k_low, other in enumerate(zip(low.selected_query_indices[0].tolist(), low.selected_labels[0].tolist()))
        if pair == other
    ]
    assert len(common) >= len(queries) // 2
    ious = torch.stack(
        [
            _mask_iou(reference.selected_mask_logits[0, :, k_ref], low.selected_mask_logits[0, :, k_low])
            for k_ref, k_low in common
        ]
    )
    assert ious.mean() >= BF16_MIN_MASK_IOU, ious


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TEVIT_RUN_SLOW"), reason="inductor compile of the whole model takes minutes")
def test_inductor_compiled_model_matches_eager():
    model = tiny_model()
    compiled = torch.compile(model)
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        differences = outputs_max_difference(model(pixel_values=pixel_values), compiled(pixel_values=pixel_values))
    assert max(differences.values()) < 1e-4, differences


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_and_bf16_on_gpu():
    model = tiny_model().cuda()
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH, device="cuda")
    graphed = torch.compile(model, mode="reduce-overhead")
    with torch.no_grad():
        reference = model(pixel_values=pixel_values)
        for _ in range(3):  # CUDA graphs are recorded after warm-up calls
            replayed = graphed(pixel_values=pixel_values)
        assert max(outputs_max_difference(reference, replayed).values()) < 1e-4
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(pixel_values=pixel_values)
    assert (low.selected_scores - reference.selected_scores).abs().max() <= BF16_SCORE_TOLERANCE


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inference_forward_has_no_host_device_sync():
    model = tiny_model().cuda()
    pixel_values = torch.randn(1, 3, 3, HEIGHT, WIDTH, device="cuda")
    with torch.no_grad():
        model(pixel_values=pixel_values)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            model(pixel_values=pixel_values)
        finally:
            torch.cuda.set_sync_debug_mode("default")


# ----------------------------------------------------------------------------------------------------------------------
# The harness
# ----------------------------------------------------------------------------------------------------------------------


def test_cli_inference_writes_json_and_markdown(tmp_path):
    arguments = ["benchmark", "inference", "--preset", "tiny", "--num-frames", "2", "--repeats", "2"]
    assert main([*arguments, "--threads", "1", "--end-to-end", "--output-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "inference.json").read_text())
    result = record["result"]
    assert record["mode"] == "inference" and result["end_to_end"]
    assert result["frames_per_s"] > 0 and result["repeats"] == 2 and result["peak_memory_mb"] > 0
    assert set(result["stages_median_s"]) == {"preprocess", "model", "postprocess"}
    assert result["gflops_per_frame"] > 0 and result["settings"]["height"] == HEIGHT
    markdown = (tmp_path / "inference.md").read_text()
    assert "| setting | frames/s |" in markdown and "End-to-end split" in markdown


def test_compare_runs_every_setting_and_reports_ratios_over_the_first():
    result = compare_inference([apply_overrides(TINY, "attn_implementation=eager"), TINY])
    first, second = result["runs"]
    assert first["label"].startswith("attn eager") and second["label"].startswith("attn sdpa")
    assert "speedup_over_first" not in first
    assert second["speedup_over_first"] == pytest.approx(first["median_s"] / second["median_s"])
    assert second["speedup_paired_min"] <= second["speedup_paired_median"] <= second["speedup_paired_max"]
    with pytest.raises(ValueError, match="at least two settings"):
        compare_inference([TINY])


def test_onnxruntime_runtime_times_the_exported_model_next_to_pytorch(demo_onnx_path, tmp_path):
    from tevit_hf.commands.benchmark import _inference_runner
    from tevit_hf.commands.demo import bundled_demo_model_dir

    demo = str(bundled_demo_model_dir())
    pytorch = BenchmarkSettings(**{**vars(TINY), "model_path": demo})
    onnx = BenchmarkSettings(**{**vars(TINY), "model_path": str(demo_onnx_path), "runtime": "onnxruntime"})
    # Same inputs (the settings' seed) through both runners: the timed onnxruntime forward is the PyTorch one.
    expected, got = _inference_runner(pytorch).step(), _inference_runner(onnx).step()
    assert torch.allclose(got.class_logits, expected.class_logits, atol=1e-4)
    assert torch.equal(got.selected_query_indices, expected.selected_query_indices)
    assert torch.allclose(got.selected_mask_logits, expected.selected_mask_logits, atol=1e-4)

    arguments = ["benchmark", "inference", "--model", demo, "--height", "64", "--width", "96", "--num-frames", "2"]
    compare = ["attn_implementation=eager", f"runtime=onnxruntime,model_path={demo_onnx_path}"]
    options = ["--repeats", "2", "--threads", "1", "--output-dir", str(tmp_path)]
    assert main([*arguments, *options, "--compare", "runtime=pytorch", *compare]) == 0
    record = json.loads((tmp_path / "inference.json").read_text())
    runs = record["result"]["runs"]
    assert [run["label"] for run in runs] == [
        "attn sdpa, float32, no compile, 1 thread",
        "attn eager, float32, no compile, 1 thread",
        "onnxruntime CPU, float32, 1 thread",
    ]
    assert all(run["frames_per_s"] > 0 for run in runs)
    assert runs[2]["speedup_over_first"] == pytest.approx(runs[0]["median_s"] / runs[2]["median_s"])
    markdown = (tmp_path / "inference.md").read_text()
    assert "Speed-up of onnxruntime CPU, float32, 1 thread over attn sdpa, float32, no compile, 1 thread" in markdown
    # The FLOPs of an ONNX file are counted on its stored config.
    single = ["--runtime", "onnxruntime", "--model", str(demo_onnx_path), "--repeats", "1", "--threads", "1"]
    flops = ["benchmark", "inference", "--height", "64", "--width", "96", "--num-frames", "2"]
    assert main([*flops, *single, "--output-dir", str(tmp_path / "single")]) == 0
    single_result = json.loads((tmp_path / "single" / "inference.json").read_text())["result"]
    assert single_result["gflops_per_frame"] > 0 and "export_s" not in single_result


def test_onnxruntime_runtime_refuses_what_the_export_does_not_run(tmp_path, capsys):
    arguments = [
        "benchmark",
        "inference",
        "--preset",
        "tiny",
        "--runtime",
        "onnxruntime",
        "--output-dir",
        str(tmp_path),
    ]
    assert main([*arguments, "--dtype", "bfloat16"]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(
        "tevit-hf benchmark: error: runtime onnxruntime runs dtype='float32' only (the exported graph), got 'bfloat16'."
    )
    assert main(["benchmark", "training", "--preset", "tiny", "--runtime", "onnxruntime"]) != 0
    assert "--runtime onnxruntime times inference only, not training" in capsys.readouterr().err
    assert main(["benchmark", "inference", "--preset", "tiny", "--compare", "dtype=float32"]) != 0
    assert "--compare needs at least two settings" in capsys.readouterr().err
    assert main(["benchmark", "inference", "--model", str(tmp_path / "model.onnx")]) != 0
    assert "is an ONNX file: it runs with runtime onnxruntime only" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_training_benchmark_runs_amp_steps():
    result = benchmark_training(
        BenchmarkSettings(**{**vars(TINY), "dtype": "bfloat16", "repeats": 1, "batch_size": 2})
    )
    assert result["clips_per_s"] > 0 and result["frames_per_s"] == pytest.approx(2 * result["clips_per_s"])


def test_near_online_benchmark_returns_figures_per_length():
    settings = BenchmarkSettings(preset="tiny", height=32, width=64, threads=1)
    result = benchmark_near_online(settings, lengths=[6, 14], clip_length=4, stride=2)
    assert [row["num_frames"] for row in result["per_length"]] == [6, 14]
    for row in result["per_length"]:
        assert row["seconds"] > 0 and row["peak_memory_mb"] > 0 and row["num_tracks"] > 0
        assert row["result_mb"] > 0
    assert result["result_growth_mb"] > 0 and "peak_growth_mb" in result
    with pytest.raises(ValueError, match="lengths"):
        benchmark_near_online(settings, lengths=[0])


def test_generated_frames_are_lazy_and_move():
    frames = generate_frames(10**9, 24, 40)
    first, second = next(frames), next(frames)
    assert first.shape == (24, 40, 3) and first.dtype == np.uint8 and not np.array_equal(first, second)


def test_flops_per_frame_of_b1_and_the_split():
    result = flops_per_frame(BenchmarkSettings(num_frames=2))
    # Pinned: full MsgShifT PVTv2-B1 at 360x640 (input 384x640), top-10 masks; paper 82.19.
    assert result["gflops_per_frame"] == pytest.approx(78.18, abs=0.05)
    assert sum(result["by_part"].values()) == pytest.approx(result["gflops_per_frame"], rel=0.01)
    assert result["gmacs_per_frame"] == pytest.approx(result["gflops_per_frame"] / 2)
    longer = flops_per_frame(BenchmarkSettings(num_frames=8))
    assert longer["gflops_per_frame"] == pytest.approx(result["gflops_per_frame"], rel=0.001)


def test_peak_memory_sees_a_short_allocation():
    with PeakMemory("cpu") as memory:
        block = np.ones(64 * 1024 * 1024 // 8)
        del block
    assert memory.as_dict()["peak_memory_delta_mb"] >= 48


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="frobnicate"):
        apply_overrides(TINY, "frobnicate=1")
    with pytest.raises(ValueError, match="compile"):
        apply_overrides(TINY, "compile=maybe")
    with pytest.raises(ValueError, match="dtype"):
        BenchmarkSettings(dtype="fp8")
    with pytest.raises(ValueError, match="preset"):
        BenchmarkSettings(preset="b9")
