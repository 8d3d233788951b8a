"""`tevit-hf export`: the model forward of a saved TeViT folder to ONNX or a `torch.export` program (`tevit_hf.export`).

    tevit-hf export --model DIR --format onnx|torch-export --output PATH [--opset 18] [--verify] [--overwrite]

Pre- and post-processing stay in Python: `tevit-hf predict --onnx PATH` runs an ONNX export through the same
processor, post-processing and tracker. Dynamic: frames and padded frame size; static: the batch of one clip (see
`tevit_hf.export`). `--verify` compares the written file with PyTorch on random clips of other sizes than the
traced one and fails when an output differs by more than `--tolerance` or the selected instances differ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..export import DEFAULT_OPSET, DEFAULT_TOLERANCE, EXPORT_FORMATS, FORMAT_SUFFIXES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="folder of a saved TeViT model, or `demo` for the bundled demo model"
    )
    parser.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="onnx",
        help="onnx (onnxruntime; needs the [export] extra) or torch-export (a .pt2 for torch.export.load) "
        "(default: onnx)",
    )
    parser.add_argument("--output", help="file to write (default: model.onnx or model.pt2 in the working directory)")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset version (default: {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the written file (onnxruntime / the loaded program) and PyTorch on random clips and compare",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest absolute difference --verify accepts (default: {DEFAULT_TOLERANCE:g})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx, export_program, save_program, verify_export
    from ..model_loading import load_model_and_processor
    from .predict import resolve_model_dir

    output = Path(args.output or f"model{FORMAT_SUFFIXES[args.format]}")
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} already exists; pass --overwrite to replace it, or choose another --output.")
    model, processor = load_model_and_processor(resolve_model_dir(args.model), device="cpu", dtype="float32")
    if args.format == "onnx":
        export_onnx(model, output, image_processor=processor, opset=args.opset, overwrite=args.overwrite)
    else:
        save_program(export_program(model), output, overwrite=args.overwrite)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB)")
    if args.verify:
        for report in verify_export(model, output, args.format, tolerance=args.tolerance):
            print(f"verified: {report.describe()}")
    return 0


__all__ = ["add_arguments", "run"]
