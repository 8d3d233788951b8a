"""Forward speed of an exported TeViT: ONNX Runtime (CPU) vs PyTorch eager (and torch.compile) in one process.

    python scripts/benchmark_export.py [--preset b1 --num-frames 4 --height 384 --width 640 --repeats 3 --compile]

Random weights (speed does not depend on them). The three runners alternate their repeats (A, B, C, A, B, C, ...)
so that load from other processes on a shared machine hits them alike; the table gives the median frames/s.
Needs the [export] extra.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from tevit_hf import TeViTConfig, TeViTForVideoInstanceSegmentation
from tevit_hf.export import example_inputs, export_onnx
from tevit_hf.onnx_model import ONNXTeViTModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="b1", help="PVTv2 variant (default: b1)")
    parser.add_argument("--num-frames", type=int, default=4, help="frames per clip (default: 4)")
    parser.add_argument("--height", type=int, default=384, help="padded height, a multiple of 32 (default: 384)")
    parser.add_argument("--width", type=int, default=640, help="padded width, a multiple of 32 (default: 640)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per runner (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of torch and onnxruntime (default: 2)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (default: off)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TeViTForVideoInstanceSegmentation(TeViTConfig.from_pvt_v2_preset(args.preset)).eval()
    pixel_values, pixel_mask = example_inputs(args.num_frames, args.height, args.width)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = export_onnx(model, Path(folder) / "model.onnx")
        print(f"ONNX export: {time.perf_counter() - started:.0f} s, {path.stat().st_size / 2**20:.0f} MiB")
        session = ONNXTeViTModel(path, num_threads=args.threads)
        runners = {
            "PyTorch eager": lambda: model(pixel_values=pixel_values, pixel_mask=pixel_mask),
            "ONNX Runtime (CPU)": lambda: session.run_outputs(pixel_values, pixel_mask),
        }
        if args.compile:
            compiled = torch.compile(model)
            runners["torch.compile"] = lambda: compiled(pixel_values=pixel_values, pixel_mask=pixel_mask)
        times: dict[str, list[float]] = {name: [] for name in runners}
        with torch.inference_mode():
            for name, runner in runners.items():  # warm-up (and compilation)
                started = time.perf_counter()
                runner()
                print(f"warm-up {name}: {time.perf_counter() - started:.1f} s", flush=True)
            for _ in range(args.repeats):
                for name, runner in runners.items():
                    started = time.perf_counter()
                    runner()
                    times[name].append(time.perf_counter() - started)
    print(
        f"\nTeViT {args.preset}, B1 x {args.num_frames} frames at {args.height}x{args.width}, {args.threads} threads"
    )
    print("| runner | median s / clip | frames/s |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {args.num_frames / median:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
