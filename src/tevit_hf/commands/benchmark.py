"""`tevit-hf benchmark`: speed, memory and FLOPs of TeViT (inference, training, near-online, FLOPs).

    tevit-hf benchmark inference [--preset b1 --height 360 --width 640 --num-frames 36 --dtype bfloat16 --compile]
    tevit-hf benchmark inference --end-to-end        # + pre-processing and post-processing (paste, RLE)
    tevit-hf benchmark inference --compare "attn_implementation=eager" "compile=1"
    tevit-hf benchmark training [--batch-size 16 --num-frames 5 --dtype bfloat16]
    tevit-hf benchmark near-online --preset tiny --lengths 100 1000 5000
    tevit-hf benchmark flops [--num-frames 36]

Every mode writes `<output-dir>/<mode>.json` (settings, environment, figures) and `<output-dir>/<mode>.md` (a
markdown table) and logs the table. Frame sizes are the *unpadded* frame (e.g. 360x640); the model input is padded
to a multiple of 32 (384x640) with a `pixel_mask`, exactly as `TeViTImageProcessor` does.

Shared machines are noisy: `--compare` runs two settings in one process, alternating their repeats (A, B, A, B,
...), and reports the ratio of the medians, which is the figure to trust off-GPU. Models have random weights
(speed does not depend on them); `--model DIR` benchmarks a saved model instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..configuration_tevit import OFFICIAL_PRESETS, PVT_V2_PRESETS, TINY_CONFIG_KWARGS, TeViTConfig
from ..file_utils import write_text_atomic
from ..image_processing_tevit import TeViTImageProcessor
from ..inference_tevit import TeViTClipRunner
from ..model_loading import check_weights_match_config
from ..modeling_tevit import TeViTForVideoInstanceSegmentation
from ..overrides import parse_overrides
from ..tracking_tevit import TeViTNearOnlineTracker


logger = logging.getLogger(__name__)

MODES = ("inference", "training", "near-online", "flops")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
# Who runs the model forward: PyTorch, or onnxruntime's CPU provider on the `tevit-hf export` ONNX graph.
RUNTIMES = ("pytorch", "onnxruntime")
# Paper (TeViT, CVPR 2022): MsgShifT PVTv2-B1 at 360x640, T=36.
PAPER_GFLOPS_PER_FRAME = 82.19
PAPER_FRAMES_PER_SECOND = 68.9
DEFAULT_NEAR_ONLINE_LENGTHS = (100, 1000, 5000)
# The tiny TeViT, for smoke runs, tests and the near-online memory benchmark.
TINY_CONFIG: dict[str, Any] = {**TINY_CONFIG_KWARGS, "num_labels": 3}
_MEGABYTE = 1024 * 1024
# Module names (as FlopCounterMode records them) of the parts of the FLOP split; ModuleLists are never called, so
# their members are matched.
_FLOP_PARTS = {
    "backbone": r"\.model\.backbone$",
    "neck": r"\.model\.neck$",
    "head_stages": r"\.model\.decoder_stages\.\d+$",
    "mask_heads": r"\.mask_heads\.\d+$",
}
# Sampling period of the fallback CPU peak-memory monitor (when /proc/self/clear_refs is unavailable).
_RSS_SAMPLING_SECONDS = 0.005
# Synthetic training targets: instances per clip and their size range (fraction of the frame side).
_SYNTHETIC_INSTANCES = 2
_SYNTHETIC_BOX_FRACTION = (0.2, 0.5)


# ----------------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkSettings:
    """One benchmark setting. `height`/`width` are the unpadded frame size; the model input is padded to a multiple
    of 32. With `dtype` bf16/fp16, `autocast=True` keeps fp32 weights under `torch.autocast`, `False` casts the
    weights (inference only; training always uses autocast). `compile_mode="reduce-overhead"` adds CUDA graphs.
    `runtime="onnxruntime"` times onnxruntime's CPU provider on the model forward exported to ONNX (as `tevit-hf
    export` does), or on the `tevit-hf export` file `model_path` (`.onnx`); inference only: float32, one clip, no
    compile, `threads` = its intra-op threads."""

    preset: str = "b1"
    model_path: str | None = None
    height: int = 360
    width: int = 640
    num_frames: int = 36
    batch_size: int = 1
    dtype: str = "float32"
    autocast: bool = False
    attn_implementation: str = "sdpa"
    compile: bool = False
    compile_mode: str = "default"
    runtime: str = "pytorch"
    device: str = "cpu"
    threads: int | None = None
    warmup: int = 1
    repeats: int = 5
    seed: int = 0
    config_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}.")
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attn_implementation!r}."
            )
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}.")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}.")
        if self.runtime == "onnxruntime":
            unsupported = {
                "dtype": (self.dtype, "float32"),
                "compile": (self.compile, False),
                "batch_size": (self.batch_size, 1),
                "device": (self.device, "cpu"),
            }
            for name, (value, supported) in unsupported.items():
                if value != supported:
                    raise ValueError(
                        f"runtime onnxruntime runs {name}={supported!r} only (the exported graph), got {value!r}."
                    )
        elif self.onnx_file:
            raise ValueError(f"{self.model_path!r} is an ONNX file: it runs with runtime onnxruntime only.")
        for name in ("height", "width", "num_frames", "batch_size", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}.")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}.")
        known = ("tiny", *PVT_V2_PRESETS, *OFFICIAL_PRESETS)
        if self.model_path is None and self.preset not in known:
            raise ValueError(f"preset must be one of {', '.join(known)}, got {self.preset!r}.")

    @property
    def label(self) -> str:
        """Short human-readable description of what distinguishes this setting."""
        threads = f", {self.threads} thread{'s' if self.threads > 1 else ''}" if self.threads else ""
        if self.runtime == "onnxruntime":
            return f"onnxruntime CPU, float32{threads}"
        precision = self.dtype + (" autocast" if self.autocast and self.dtype != "float32" else "")
        compiled = f"compile {self.compile_mode}" if self.compile else "no compile"
        return f"attn {self.attn_implementation}, {precision}, {compiled}{threads}"

    @property
    def onnx_file(self) -> bool:
        """Whether `model_path` is a `tevit-hf export --format onnx` file rather than a model folder."""
        return self.model_path is not None and self.model_path.lower().endswith(".onnx")

    @property
    def padded_size(self) -> tuple[int, int]:
        """Model input `(height, width)`: the frame padded bottom/right to a multiple of 32."""
        return _round_up(self.height, 32), _round_up(self.width, 32)


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"Expected a boolean (1/0/true/false), got {text!r}.")


_SETTING_PARSERS: dict[str, Callable[[str], Any]] = {
    "preset": str,
    "model_path": lambda text: None if text.lower() == "none" else text,
    "height": int,
    "width": int,
    "num_frames": int,
    "batch_size": int,
    "dtype": str,
    "autocast": _parse_bool,
    "attn_implementation": str,
    "compile": _parse_bool,
    "compile_mode": str,
    "runtime": str,
    "device": str,
    "threads": lambda text: None if text.lower() == "none" else int(text),
    "warmup": int,
    "repeats": int,
    "seed": int,
}


def apply_overrides(settings: BenchmarkSettings, overrides: str) -> BenchmarkSettings:
    """A copy of `settings` with `"key=value,key=value"` applied (keys: `BenchmarkSettings` fields).

    Raises:
        ValueError: unknown key, missing `=`, or a value of the wrong type (the message names the key).
    """
    changes: dict[str, Any] = {}
    for key, value in parse_overrides(overrides, option=f"settings {overrides!r}", parse_values=False).items():
        key = key.replace("-", "_")
        if key not in _SETTING_PARSERS:
            raise ValueError(f"Unknown setting {key!r} in {overrides!r}; expected one of {sorted(_SETTING_PARSERS)}.")
        try:
            changes[key] = _SETTING_PARSERS[key](value)
        except ValueError as error:
            raise ValueError(f"Bad value for setting {key!r}: {error}") from error
    return dataclasses.replace(settings, **changes)


# ----------------------------------------------------------------------------------------------------------------------
# Model, inputs, timing and memory
# ----------------------------------------------------------------------------------------------------------------------


def build_config(settings: BenchmarkSettings) -> TeViTConfig:
    """The config of `settings`: the tiny config, a PVTv2 preset, an official preset (r50, r50_mstrain,
    swin_l_mstrain) or the config of `model_path`."""
    if settings.model_path is not None:
        if settings.onnx_file:
            from ..export import CONFIG_METADATA_KEY, read_onnx_metadata

            config = TeViTConfig.from_dict(read_onnx_metadata(settings.model_path)[CONFIG_METADATA_KEY])
        else:
            config = TeViTConfig.from_pretrained(settings.model_path)
        for key, value in settings.config_overrides.items():
            setattr(config, key, value)
    elif settings.preset == "tiny":
        config = TeViTConfig(**{**TINY_CONFIG, **settings.config_overrides})
    elif settings.preset in OFFICIAL_PRESETS:
        config = TeViTConfig.from_official_preset(settings.preset, **settings.config_overrides)
    else:
        config = TeViTConfig.from_pvt_v2_preset(settings.preset, **settings.config_overrides)
    config._attn_implementation = settings.attn_implementation
    return config


def build_model(
    settings: BenchmarkSettings, device: str | torch.device | None = None
) -> TeViTForVideoInstanceSegmentation:
    """A model for `settings` in eval mode on `device` (default `settings.device`), weights cast unless autocast.
    For an ONNX file, a random-weight model of its stored config (what the FLOP count needs)."""
    torch.manual_seed(settings.seed)
    config = build_config(settings)
    device = settings.device if device is None else device
    if settings.model_path is not None and not settings.onnx_file:
        # The strict checks of every command: safetensors only, and the (overridden) config must fit the weights.
        check_weights_match_config(settings.model_path, config)
        model = TeViTForVideoInstanceSegmentation.from_pretrained(
            settings.model_path,
            config=config,
            attn_implementation=settings.attn_implementation,
            use_safetensors=True,
            dtype=torch.float32,
        )
    else:
        with torch.device(device):
            model = TeViTForVideoInstanceSegmentation(config)
    model = model.to(device).eval()
    if settings.dtype != "float32" and not settings.autocast:
        model = model.to(DTYPES[settings.dtype])
    return model


def make_inputs(settings: BenchmarkSettings, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
    """Random normalised clips `(B, T, 3, H_pad, W_pad)` and the `pixel_mask` of the unpadded frame."""
    device = settings.device if device is None else device
    generator = torch.Generator().manual_seed(settings.seed)
    padded_height, padded_width = settings.padded_size
    shape = (settings.batch_size, settings.num_frames, 3, padded_height, padded_width)
    pixel_values = torch.randn(shape, generator=generator)
    pixel_values[..., settings.height :, :] = 0.0
    pixel_values[..., :, settings.width :] = 0.0
    pixel_mask = torch.zeros(settings.batch_size, padded_height, padded_width, dtype=torch.long)
    pixel_mask[:, : settings.height, : settings.width] = 1
    weight_dtype = DTYPES[settings.dtype] if not settings.autocast else torch.float32
    return {"pixel_values": pixel_values.to(device=device, dtype=weight_dtype), "pixel_mask": pixel_mask.to(device)}


def _autocast_context(settings: BenchmarkSettings, force: bool = False):
    if settings.dtype == "float32" or not (settings.autocast or force):
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(settings.device).type, dtype=DTYPES[settings.dtype])


def _maybe_compile(module: torch.nn.Module, settings: BenchmarkSettings) -> torch.nn.Module:
    if not settings.compile:
        return module
    return torch.compile(module, mode=None if settings.compile_mode == "default" else settings.compile_mode)


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: str) -> tuple[float, Any]:
    """Wall-clock seconds of `function()` (device work included) and its result."""
    _synchronize(device)
    start = time.perf_counter()
    result = function()
    _synchronize(device)
    return time.perf_counter() - start, result


def summarize_times(seconds: list[float]) -> dict[str, float]:
    """Median, min, max, mean, stdev, inter-quartile range and spread ((max - min) / median) of repeat times."""
    ordered = sorted(seconds)
    median = statistics.median(ordered)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [median, median, median]
    return {
        "median_s": median,
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "mean_s": statistics.fmean(ordered),
        "stdev_s": statistics.stdev(ordered) if len(ordered) >= 2 else 0.0,
        "iqr_s": quartiles[2] - quartiles[0],
        "spread_pct": 100.0 * (ordered[-1] - ordered[0]) / median if median > 0 else 0.0,
        "repeats": len(ordered),
    }


def _read_proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int:
    """Resident set size of this process."""
    rss_kb = _read_proc_status_kb("VmRSS")
    if rss_kb is not None:
        return rss_kb * 1024
    import psutil

    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak memory over a `with` block: CUDA max allocated on a CUDA device, else the process's peak RSS.

    CPU peak RSS: Linux's high-water mark `VmHWM`, reset by writing 5 to `/proc/self/clear_refs`; where that is not
    possible, a background thread samples the RSS every few milliseconds (may miss very short spikes).
    After the block: `peak_bytes`, `baseline_bytes` (memory when the block started) and `kind`.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_peak_rss"
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._uses_high_water_mark = False

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            return self
        self.baseline_bytes = current_rss_bytes()
        self._uses_high_water_mark = _reset_high_water_mark()
        if not self._uses_high_water_mark:
            self.peak_bytes = self.baseline_bytes
            self._stop.clear()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(_RSS_SAMPLING_SECONDS):
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            return
        if self._uses_high_water_mark:
            self.peak_bytes = (_read_proc_status_kb("VmHWM") or 0) * 1024
        else:
            self._stop.set()
            self._sampler.join()
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes())

    def as_dict(self) -> dict[str, Any]:
        return {
            "memory_kind": self.kind,
            "peak_memory_mb": self.peak_bytes / _MEGABYTE,
            "peak_memory_delta_mb": (self.peak_bytes - self.baseline_bytes) / _MEGABYTE,
        }


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _read_proc_status_kb("VmHWM") is not None


def environment_info(device: str = "cpu") -> dict[str, Any]:
    """Hardware and software the figures were measured on (load average: how busy the shared machine was)."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model_name(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@contextlib.contextmanager
def _threads(settings: BenchmarkSettings) -> Iterator[None]:
    previous = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic data
# ----------------------------------------------------------------------------------------------------------------------


def generate_frames(num_frames: int, height: int, width: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Lazily generate `(height, width, 3)` uint8 frames of two coloured rectangles moving over noise.

    Frames are made one at a time, so a benchmark over thousands of frames never holds the video.
    """
    generator = np.random.default_rng(seed)
    background = generator.integers(0, 64, size=(height, width, 3), dtype=np.uint8)
    box_height, box_width = max(2, height // 4), max(2, width // 5)
    for index in range(num_frames):
        frame = background.copy()
        for track, colour in enumerate(((230, 60, 60), (60, 200, 90))):
            phase = (index * (track + 1)) % max(1, 2 * (width - box_width))
            left = phase if phase <= width - box_width else 2 * (width - box_width) - phase
            top = (track * height // 2 + index // 3) % max(1, height - box_height)
            frame[top : top + box_height, left : left + box_width] = colour
        yield frame


def make_synthetic_labels(settings: BenchmarkSettings, num_labels: int) -> list[dict[str, torch.Tensor]]:
    """Training targets for `settings`: per clip, rectangles with random classes that are visible in every frame."""
    generator = torch.Generator().manual_seed(settings.seed)
    padded_height, padded_width = settings.padded_size
    labels = []
    for _ in range(settings.batch_size):
        low, high = _SYNTHETIC_BOX_FRACTION
        size = low + (high - low) * torch.rand(settings.num_frames, _SYNTHETIC_INSTANCES, 2, generator=generator)
        centre = size / 2 + (1 - size) * torch.rand(settings.num_frames, _SYNTHETIC_INSTANCES, 2, generator=generator)
        boxes = torch.cat([centre, size], dim=-1)  # normalised (cx, cy, w, h) of the unpadded frame
        scale = torch.tensor([settings.width, settings.height, settings.width, settings.height], dtype=torch.float32)
        x1y1 = ((centre - size / 2) * scale[:2]).floor().long()
        x2y2 = ((centre + size / 2) * scale[:2]).ceil().long()
        masks = torch.zeros(settings.num_frames, _SYNTHETIC_INSTANCES, padded_height, padded_width, dtype=torch.bool)
        for frame in range(settings.num_frames):
            for instance in range(_SYNTHETIC_INSTANCES):
                (x1, y1), (x2, y2) = x1y1[frame, instance].tolist(), x2y2[frame, instance].tolist()
                masks[frame, instance, y1:y2, x1:x2] = True
        labels.append(
            {
                "class_labels": torch.randint(0, num_labels, (_SYNTHETIC_INSTANCES,), generator=generator),
                "boxes": boxes,
                "masks": masks,
                "valid": torch.ones(settings.num_frames, _SYNTHETIC_INSTANCES, dtype=torch.bool),
            }
        )
    return labels


def _labels_to(labels: list[dict[str, torch.Tensor]], device: str) -> list[dict[str, torch.Tensor]]:
    return [{key: value.to(device) for key, value in clip.items()} for clip in labels]


# ----------------------------------------------------------------------------------------------------------------------
# Runners: each prepares a setting and returns a step function plus the units one step processes
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class _Runner:
    settings: BenchmarkSettings
    step: Callable[[], Any]
    frames_per_step: int
    clips_per_step: int
    extra: dict[str, Any] = field(default_factory=dict)
    stage_steps: dict[str, Callable[[], Any]] = field(default_factory=dict)


def _onnxruntime_forward(settings: BenchmarkSettings) -> tuple[Any, dict[str, Any]]:
    """(onnxruntime session with the model's call interface, extra figures): the ONNX file `model_path`, or the
    settings' model exported as `tevit-hf export` does into a temporary file that lives as long as the session."""
    from ..export import export_onnx
    from ..onnx_model import ONNXTeViTModel

    if settings.onnx_file:
        return ONNXTeViTModel(settings.model_path, num_threads=settings.threads), {}
    model = build_model(settings)
    folder = tempfile.TemporaryDirectory(prefix="tevit_benchmark_")
    started = time.perf_counter()
    path = export_onnx(model, Path(folder.name) / "model.onnx")
    session = ONNXTeViTModel(path, num_threads=settings.threads)
    session.exported_to = folder  # removed with the session
    return session, {"export_s": time.perf_counter() - started}


def _inference_runner(settings: BenchmarkSettings, end_to_end: bool = False) -> _Runner:
    if settings.runtime == "onnxruntime":
        forward, extra = _onnxruntime_forward(settings)
    else:
        forward, extra = _maybe_compile(build_model(settings), settings), {}
    frames = settings.batch_size * settings.num_frames
    if not end_to_end:
        inputs = make_inputs(settings)

        def step():
            with torch.inference_mode(), _autocast_context(settings):
                return forward(**inputs)

        return _Runner(settings, step, frames, settings.batch_size, extra)

    processor = TeViTImageProcessor(
        size={
            "longest_edge": max(settings.height, settings.width),
            "shortest_edge": min(settings.height, settings.width),
        }
    )
    videos = [
        list(generate_frames(settings.num_frames, settings.height, settings.width, seed=settings.seed + index))
        for index in range(settings.batch_size)
    ]
    # The one clip runner every inference path uses; here its three stages are timed separately.
    runner = TeViTClipRunner(forward, processor)
    state: dict[str, Any] = {}

    def preprocess():
        state["inputs"] = runner.preprocess(videos)

    def predict():
        with _autocast_context(settings):
            state["outputs"] = runner.forward(state["inputs"])

    def postprocess():
        return runner.postprocess(state["outputs"], state["inputs"])

    def step():
        preprocess()
        predict()
        return postprocess()

    preprocess()
    predict()
    return _Runner(
        settings,
        step,
        frames,
        settings.batch_size,
        extra,
        stage_steps={"preprocess": preprocess, "model": predict, "postprocess": postprocess},
    )


def _training_runner(settings: BenchmarkSettings) -> _Runner:
    if settings.runtime != "pytorch":
        raise ValueError(f"training runs in PyTorch only, got runtime {settings.runtime!r}.")
    # Training in bf16/fp16 always means autocast on fp32 weights (the label says so).
    settings = dataclasses.replace(settings, autocast=settings.dtype != "float32")
    model = build_model(dataclasses.replace(settings, dtype="float32")).train()
    if settings.compile:
        # The loss (Hungarian matching on the host, data-dependent positives) stays eager; the backbone, FPN and
        # head stages compile without graph breaks.
        model.model = _maybe_compile(model.model, settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(torch.device(settings.device).type, enabled=settings.dtype == "float16")
    inputs = make_inputs(dataclasses.replace(settings, dtype="float32"))
    labels = _labels_to(make_synthetic_labels(settings, model.config.num_labels), settings.device)

    def step():
        with _autocast_context(settings, force=True):
            loss = model(**inputs, labels=labels).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return _Runner(settings, step, settings.batch_size * settings.num_frames, settings.batch_size)


def _measure(runner: _Runner, warmup: int, repeats: int) -> dict[str, Any]:
    """Warm up (the first call includes compilation), then time `repeats` steps under one peak-memory window."""
    settings = runner.settings
    with _threads(settings):
        first_seconds, _ = timed(runner.step, settings.device)
        for _ in range(max(0, warmup - 1)):
            timed(runner.step, settings.device)
        gc.collect()
        seconds = []
        stage_seconds: dict[str, list[float]] = {name: [] for name in runner.stage_steps}
        with PeakMemory(settings.device) as memory:
            for _ in range(repeats):
                if runner.stage_steps:
                    total = 0.0
                    for name, stage_step in runner.stage_steps.items():
                        elapsed, _ = timed(stage_step, settings.device)
                        stage_seconds[name].append(elapsed)
                        total += elapsed
                    seconds.append(total)
                else:
                    seconds.append(timed(runner.step, settings.device)[0])
    return _figures(runner, first_seconds, seconds, memory, stage_seconds)


def _figures(
    runner: _Runner,
    first_seconds: float,
    seconds: list[float],
    memory: PeakMemory,
    stage_seconds: dict[str, list[float]],
) -> dict[str, Any]:
    timing = summarize_times(seconds)
    median = timing["median_s"]
    figures = {
        "label": runner.settings.label,
        "settings": dataclasses.asdict(runner.settings),
        "first_call_s": first_seconds,
        **timing,
        "frames_per_s": runner.frames_per_step / median,
        "clips_per_s": runner.clips_per_step / median,
        "ms_per_frame": 1000.0 * median / runner.frames_per_step,
        **memory.as_dict(),
        **runner.extra,
    }
    if stage_seconds:
        figures["stages_median_s"] = {name: statistics.median(values) for name, values in stage_seconds.items()}
    return figures


def _compare(
    make_runner: Callable[[BenchmarkSettings], _Runner], settings_list: Sequence[BenchmarkSettings]
) -> dict[str, Any]:
    """Run two or more settings in one process with alternating repeats (A, B, C, A, B, C, ...): the figures of each
    (`runs`), and for every run after the first its speed-up over the first (ratio of medians, and the range of the
    per-repeat ratios) and its peak-memory ratio."""
    if len(settings_list) < 2:
        raise ValueError(f"A comparison needs at least two settings, got {len(settings_list)}.")
    runners = [make_runner(settings) for settings in settings_list]
    first = []
    for runner in runners:
        with _threads(runner.settings):
            first.append(timed(runner.step, runner.settings.device)[0])
            for _ in range(max(0, runner.settings.warmup - 1)):
                timed(runner.step, runner.settings.device)
    gc.collect()
    seconds: list[list[float]] = [[] for _ in runners]
    peaks = [PeakMemory(runner.settings.device) for runner in runners]
    for _ in range(max(settings.repeats for settings in settings_list)):
        for index, runner in enumerate(runners):
            with _threads(runner.settings), PeakMemory(runner.settings.device) as memory:
                seconds[index].append(timed(runner.step, runner.settings.device)[0])
            peaks[index].peak_bytes = max(peaks[index].peak_bytes, memory.peak_bytes)
            peaks[index].baseline_bytes = memory.baseline_bytes
    runs = [_figures(runner, first[index], seconds[index], peaks[index], {}) for index, runner in enumerate(runners)]
    for index in range(1, len(runs)):
        paired = [a / b for a, b in zip(seconds[0], seconds[index])]
        runs[index].update(
            speedup_over_first=runs[0]["median_s"] / runs[index]["median_s"],
            speedup_paired_median=statistics.median(paired),
            speedup_paired_min=min(paired),
            speedup_paired_max=max(paired),
            memory_ratio_over_first=runs[index]["peak_memory_mb"] / runs[0]["peak_memory_mb"]
            if runs[0]["peak_memory_mb"]
            else None,
        )
    return {"runs": runs}


# ----------------------------------------------------------------------------------------------------------------------
# Public benchmark functions
# ----------------------------------------------------------------------------------------------------------------------


def benchmark_inference(
    settings: BenchmarkSettings, end_to_end: bool = False, count_flops: bool = True
) -> dict[str, Any]:
    """Frames/s, repeat statistics and peak memory of the model forward (selected-instance masks included).

    With `end_to_end`, each repeat also pre-processes uint8 frames with `TeViTImageProcessor` and post-processes
    (mask pasting into the original frame, RLE); `stages_median_s` splits the time. Adds `gflops_per_frame`.
    """
    figures = _measure(_inference_runner(settings, end_to_end), settings.warmup, settings.repeats)
    figures["end_to_end"] = end_to_end
    if count_flops:
        figures["gflops_per_frame"] = flops_per_frame(settings)["gflops_per_frame"]
    return figures


def benchmark_training(settings: BenchmarkSettings) -> dict[str, Any]:
    """Clips/s, frames/s and peak memory of full training steps (forward, loss, backward, AdamW) with AMP."""
    return _measure(_training_runner(settings), settings.warmup, settings.repeats)


def compare_inference(settings_list: Sequence[BenchmarkSettings], end_to_end: bool = False) -> dict[str, Any]:
    """Inference settings side by side in one process (alternating repeats), with each one's speed-up over the
    first (see `_compare`)."""
    return _compare(lambda settings: _inference_runner(settings, end_to_end), settings_list)


def compare_training(settings_list: Sequence[BenchmarkSettings]) -> dict[str, Any]:
    """Training settings side by side in one process, with each one's speed-up over the first."""
    return _compare(_training_runner, settings_list)


def benchmark_near_online(
    settings: BenchmarkSettings,
    lengths: tuple[int, ...] | list[int] = DEFAULT_NEAR_ONLINE_LENGTHS,
    clip_length: int = 36,
    stride: int = 18,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Peak memory of `TeViTNearOnlineTracker` versus video length on generated frames (never materialised).

    Returns `{"per_length": [{"num_frames", "seconds", "frames_per_s", "peak_memory_mb", "peak_memory_delta_mb",
    "num_tracks", "result_mb"}, ...], "peak_growth_mb", "result_growth_mb", ...}`. `result_mb` estimates the
    returned tracks (per-frame boxes, validity and RLEs of every track: O(tracks x frames) by the output format);
    when `peak_growth_mb` stays below `result_growth_mb`, no per-frame working memory accumulates. The first,
    untimed video (one clip) warms the allocator so that every length starts from the same state.
    """
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths must be positive frame counts, got {list(lengths)}.")
    model = build_model(settings)
    processor = TeViTImageProcessor(
        size={
            "longest_edge": max(settings.height, settings.width),
            "shortest_edge": min(settings.height, settings.width),
        }
    )
    tracker = TeViTNearOnlineTracker(
        model, processor, clip_length=clip_length, stride=stride, show_progress=show_progress
    )
    per_length = []
    with _threads(settings):
        tracker.track(generate_frames(clip_length, settings.height, settings.width, settings.seed))
        for num_frames in lengths:
            gc.collect()
            frames = generate_frames(num_frames, settings.height, settings.width, settings.seed)
            with PeakMemory("cpu") as memory:
                seconds, tracks = timed(
                    lambda frames=frames, count=num_frames: tracker.track(frames, num_frames=count), "cpu"
                )
            figures = memory.as_dict()
            result_mb = tracks_size_bytes(tracks) / _MEGABYTE
            per_length.append(
                {
                    "num_frames": num_frames,
                    "seconds": seconds,
                    "frames_per_s": num_frames / seconds,
                    **figures,
                    "num_tracks": len(tracks),
                    "result_mb": result_mb,
                }
            )
            del tracks
            logger.info(
                "near-online %d frames: %.1f s, peak RSS %.1f MB", num_frames, seconds, memory.peak_bytes / _MEGABYTE
            )
    shortest = min(per_length, key=lambda row: row["num_frames"])
    longest = max(per_length, key=lambda row: row["num_frames"])
    return {
        "label": f"near-online {settings.label}, clip {clip_length}, stride {stride}",
        "settings": dataclasses.asdict(settings),
        "clip_length": clip_length,
        "stride": stride,
        "per_length": per_length,
        "peak_growth_mb": longest["peak_memory_mb"] - shortest["peak_memory_mb"],
        "result_growth_mb": longest["result_mb"] - shortest["result_mb"],
    }


def tracks_size_bytes(tracks: list[dict[str, Any]]) -> int:
    """Approximate bytes held by near-online tracks: arrays, list slots and each distinct RLE dict once."""
    total, seen = 0, set()
    for track in tracks:
        for key in ("boxes", "frame_valid"):
            value = track.get(key)
            if isinstance(value, torch.Tensor):
                total += value.element_size() * value.numel()
            elif isinstance(value, np.ndarray):
                total += value.nbytes
        segmentations = track.get("segmentations", [])
        total += sys.getsizeof(segmentations)
        for rle in segmentations:
            if id(rle) not in seen:
                seen.add(id(rle))
                total += sys.getsizeof(rle) + sys.getsizeof(rle["counts"]) + sys.getsizeof(rle["size"])
    return total


def flops_per_frame(settings: BenchmarkSettings) -> dict[str, Any]:
    """FLOPs per frame of one inference forward (top-k mask branch included), counted by
    `torch.utils.flop_counter.FlopCounterMode` (1 multiply-add = 2 FLOPs; matmuls, convolutions and attention only).

    Runs on the meta device (no memory, no compute) so that the full model at T=36 is counted in a second; falls
    back to `settings.device`. Returns the total, the split by part (backbone, neck, head stages, mask heads) and by
    operator, and `gmacs_per_frame` (= GFLOPs / 2, the mmcv counter's convention).
    """
    try:
        counts, device = _count_flops(settings, "meta"), "meta"
    except (NotImplementedError, RuntimeError) as error:  # an operator without a meta kernel
        logger.warning("FLOPs on the meta device failed (%s); counting on %s.", error, settings.device)
        counts, device = _count_flops(settings, settings.device), settings.device
    frames = settings.batch_size * settings.num_frames
    total = counts.pop("Global")
    parts = {}
    for part, pattern in _FLOP_PARTS.items():
        flops = sum(sum(ops.values()) for name, ops in counts.items() if re.search(pattern, name))
        parts[part] = flops / frames / 1e9
    by_operator: dict[str, float] = {}
    for operator, flops in total.items():
        name = str(operator).split(".")[-1]
        by_operator[name] = by_operator.get(name, 0.0) + flops / frames / 1e9
    gflops = sum(total.values()) / frames / 1e9
    return {
        "gflops_per_frame": gflops,
        "gmacs_per_frame": gflops / 2,
        "by_part": parts,
        "by_operator": by_operator,
        "counted_on": device,
        "num_frames": settings.num_frames,
        "input_size": list(settings.padded_size),
        "frame_size": [settings.height, settings.width],
        # The paper's figure is for the MsgShifT PVTv2-B1 only.
        "paper_gflops_per_frame": PAPER_GFLOPS_PER_FRAME
        if settings.model_path is None and settings.preset == "b1"
        else None,
    }


def _count_flops(settings: BenchmarkSettings, device: str) -> dict[str, dict[Any, int]]:
    from torch.utils.flop_counter import FlopCounterMode

    # Eager attention: FlopCounterMode has no formula for the CPU/meta SDPA kernel, and the eager matmuls are the
    # same arithmetic.
    counted = dataclasses.replace(settings, dtype="float32", autocast=False, attn_implementation="eager")
    model = build_model(counted, device=device)
    # FlopCounterMode's module tracker hooks tensors that require grad; counting needs no gradients.
    model.requires_grad_(False)
    inputs = make_inputs(counted, device=device)
    with FlopCounterMode(display=False, depth=None) as counter:
        model(**inputs)
    return {name: dict(ops) for name, ops in counter.get_flop_counts().items()}


# ----------------------------------------------------------------------------------------------------------------------
# Records: markdown and json
# ----------------------------------------------------------------------------------------------------------------------


def _format(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _throughput_row(figures: dict[str, Any]) -> str:
    cells = [
        figures["label"],
        _format(figures["frames_per_s"]),
        _format(figures["clips_per_s"], 3),
        _format(figures["ms_per_frame"], 1),
        f"{_format(figures['min_s'], 3)} / {_format(figures['median_s'], 3)} / {_format(figures['max_s'], 3)}",
        _format(figures["spread_pct"], 1),
        _format(figures["peak_memory_mb"], 0),
        _format(figures["peak_memory_delta_mb"], 0),
        _format(figures.get("gflops_per_frame")),
    ]
    return "| " + " | ".join(cells) + " |"


_THROUGHPUT_HEADER = (
    "| setting | frames/s | clips/s | ms/frame | step s (min / median / max) | spread % | peak MB | peak - start MB "
    "| GFLOPs/frame |\n|---|---|---|---|---|---|---|---|---|"
)


def format_markdown(record: dict[str, Any]) -> str:
    """A markdown table of a benchmark record (any mode)."""
    mode = record["mode"]
    environment = record["environment"]
    lines = [
        f"### tevit-hf benchmark: {mode}",
        "",
        f"Hardware: {environment.get('gpu') or environment['cpu']}, {environment['logical_cores']} logical cores, "
        f"{environment['torch_threads']} torch threads by default, load average {environment['load_average']}; "
        f"torch {environment['torch']}.",
        "",
    ]
    result = record["result"]
    if mode == "flops":
        lines += [
            f"Input {result['input_size'][0]}x{result['input_size'][1]} (frame {result['frame_size'][0]}x"
            f"{result['frame_size'][1]}), T={result['num_frames']}: **{result['gflops_per_frame']:.2f} GFLOPs per "
            f"frame** ({result['gmacs_per_frame']:.2f} GMACs)"
            + (f"; paper: {result['paper_gflops_per_frame']}." if result["paper_gflops_per_frame"] else "."),
            "",
            "| part | GFLOPs/frame |",
            "|---|---|",
            *(f"| {name} | {value:.2f} |" for name, value in result["by_part"].items()),
            "",
            "| operator | GFLOPs/frame |",
            "|---|---|",
            *(f"| {name} | {value:.2f} |" for name, value in sorted(result["by_operator"].items())),
        ]
    elif mode == "near-online":
        lines += [
            f"{result['label']}",
            "",
            "| frames | seconds | frames/s | peak RSS MB | peak - start MB | tracks | returned tracks MB |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {row['num_frames']} | {row['seconds']:.1f} | {row['frames_per_s']:.1f} | "
                f"{row['peak_memory_mb']:.1f} | {row['peak_memory_delta_mb']:.1f} | {row['num_tracks']} | "
                f"{row['result_mb']:.1f} |"
                for row in result["per_length"]
            ),
            "",
            f"From the shortest to the longest video the peak RSS grows by {result['peak_growth_mb']:.1f} MB while "
            f"the returned tracks alone grow by {result['result_growth_mb']:.1f} MB.",
        ]
    elif "runs" in result:
        runs = result["runs"]
        lines += [_THROUGHPUT_HEADER, *map(_throughput_row, runs), ""]
        lines += [
            f"Speed-up of {run['label']} over {runs[0]['label']}: **{run['speedup_over_first']:.2f}x** (ratio of "
            f"medians; paired repeats {run['speedup_paired_min']:.2f}-{run['speedup_paired_max']:.2f}x)."
            for run in runs[1:]
        ]
        exports = [f"{run['label']} {run['export_s']:.0f} s" for run in runs if "export_s" in run]
        if exports:
            lines.append(f"ONNX export before timing (not counted): {', '.join(exports)}.")
    else:
        lines += [_THROUGHPUT_HEADER, _throughput_row(result)]
        if "stages_median_s" in result:
            stages = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in result["stages_median_s"].items())
            lines += ["", f"End-to-end split (median per step): {stages}."]
    return "\n".join(lines) + "\n"


def write_record(record: dict[str, Any], output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `<output_dir>/<mode>.json` and `<output_dir>/<mode>.md` atomically; returns both paths."""
    import json

    output_dir = Path(output_dir)
    name = record["mode"].replace("-", "_")
    json_path = write_text_atomic(output_dir / f"{name}.json", json.dumps(record, indent=2, default=str) + "\n")
    markdown_path = write_text_atomic(output_dir / f"{name}.md", format_markdown(record))
    return json_path, markdown_path


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BenchmarkSettings()
    parser.add_argument("mode", choices=MODES, help="what to measure")
    parser.add_argument(
        "--preset",
        default=defaults.preset,
        help="'tiny', a PVTv2 variant b0..b5 (default b1, the MsgShifT TeViT) or an official preset: "
        "r50, r50_mstrain, swin_l_mstrain",
    )
    parser.add_argument(
        "--model",
        dest="model_path",
        default=None,
        help="benchmark a saved model folder instead, or with --runtime onnxruntime a `tevit-hf export` .onnx file",
    )
    parser.add_argument("--height", type=int, default=None, help="frame height before padding (default 360)")
    parser.add_argument("--width", type=int, default=None, help="frame width before padding (default 640)")
    parser.add_argument("--num-frames", type=int, default=None, help="clip length T (36; training 5)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per step (1; training 2)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=defaults.dtype, help="weights dtype (cast)")
    parser.add_argument(
        "--autocast", action="store_true", help="bfloat16/float16 via torch.autocast on float32 weights"
    )
    parser.add_argument(
        "--attn-implementation",
        choices=ATTENTION_IMPLEMENTATIONS,
        default=defaults.attn_implementation,
        help="attention kernels (transformers' attention interface)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--compile-mode", choices=COMPILE_MODES, default=defaults.compile_mode, help="reduce-overhead = CUDA graphs"
    )
    parser.add_argument("--device", default=defaults.device, help="torch device, e.g. cpu, cuda, cuda:1")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed runs before measuring")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="timed runs")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the random weights and inputs")
    parser.add_argument(
        "--config-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TeViTConfig field (value parsed as a JSON literal, else a string), e.g. num_head_stages=2; repeatable",
    )
    parser.add_argument("--end-to-end", action="store_true", help="inference: add pre- and post-processing")
    parser.add_argument("--no-flops", action="store_true", help="inference: skip the FLOP count")
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=defaults.runtime,
        help="inference: run the forward in PyTorch, or export it to ONNX and run onnxruntime's CPU provider",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="SETTING",
        help='two or more settings as "key=value,..." overrides of the options, timed in one process with '
        'alternating repeats, e.g. "runtime=pytorch" "compile=1" "runtime=onnxruntime"',
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=list(DEFAULT_NEAR_ONLINE_LENGTHS),
        help="near-online: video lengths in frames",
    )
    parser.add_argument("--clip-length", type=int, default=36, help="near-online: frames per clip")
    parser.add_argument("--stride", type=int, default=18, help="near-online: frames between clip starts")
    parser.add_argument("--output-dir", default="benchmark_results", help="where <mode>.json and <mode>.md go")


def settings_from_args(args: argparse.Namespace) -> BenchmarkSettings:
    """`BenchmarkSettings` from the parsed CLI options (mode-dependent defaults for T and batch)."""
    training = args.mode == "training"
    tiny = args.preset == "tiny"
    return BenchmarkSettings(
        preset=args.preset,
        model_path=args.model_path,
        height=args.height or (64 if tiny else 360),
        width=args.width or (96 if tiny else 640),
        num_frames=args.num_frames or (5 if training else 36),
        batch_size=args.batch_size or (2 if training else 1),
        dtype=args.dtype,
        autocast=args.autocast,
        attn_implementation=args.attn_implementation,
        compile=args.compile,
        compile_mode=args.compile_mode,
        runtime=args.runtime,
        device=args.device,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        seed=args.seed,
        config_overrides=parse_overrides(args.config_override, option="--config-override"),
    )


def run(args: argparse.Namespace) -> int:
    if args.mode != "inference" and args.runtime != "pytorch":
        raise ValueError(f"--runtime {args.runtime} times inference only, not {args.mode}.")
    settings = settings_from_args(args)
    if args.mode == "near-online":
        result = benchmark_near_online(settings, args.lengths, args.clip_length, args.stride, show_progress=True)
    elif args.mode == "flops":
        result = flops_per_frame(settings)
    elif args.compare:
        if len(args.compare) < 2:
            raise ValueError(f"--compare needs at least two settings, got {len(args.compare)}: {args.compare[0]!r}.")
        settings_list = [apply_overrides(settings, text) for text in args.compare]
        if args.mode == "inference":
            result = compare_inference(settings_list, end_to_end=args.end_to_end)
        else:
            result = compare_training(settings_list)
    elif args.mode == "inference":
        result = benchmark_inference(settings, end_to_end=args.end_to_end, count_flops=not args.no_flops)
    else:
        result = benchmark_training(settings)
    record = {"mode": args.mode, "environment": environment_info(settings.device), "result": result}
    json_path, markdown_path = write_record(record, args.output_dir)
    logger.info("\n%s", format_markdown(record))
    logger.info("Wrote %s and %s", json_path, markdown_path)
    return 0


__all__ = [
    "BenchmarkSettings",
    "PeakMemory",
    "add_arguments",
    "apply_overrides",
    "benchmark_inference",
    "benchmark_near_online",
    "benchmark_training",
    "build_model",
    "compare_inference",
    "compare_training",
    "flops_per_frame",
    "format_markdown",
    "generate_frames",
    "make_inputs",
    "run",
    "summarize_times",
    "write_record",
]
