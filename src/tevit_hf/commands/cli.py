"""The `tevit-hf` console command.

Each subcommand lives in the module that implements it; that module exposes `add_arguments(parser)` and
`run(args) -> int`. Modules are imported lazily so `tevit-hf --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import tevit_hf

from ..argparse_help import DefaultsHelpFormatter
from ..errors import DEBUG_ENVIRONMENT_VARIABLE, EXIT_USAGE, run_with_error_layer


COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("tevit_hf.commands.convert", "convert an official mmdet checkpoint to a HF folder"),
    "make-synthetic": ("tevit_hf.commands.make_synthetic", "write a synthetic YouTube-VIS-format dataset"),
    "evaluate": ("tevit_hf.commands.evaluate", "run inference on a dataset and score YouTube-VIS AP"),
    "predict": ("tevit_hf.commands.predict", "segment and track the instances of a video file or frame folder"),
    "demo": ("tevit_hf.commands.demo", "segment the bundled sample video with the bundled demo model and score it"),
    "benchmark": ("tevit_hf.commands.benchmark", "measure inference and training speed"),
    "app": (
        "tevit_hf.commands.app",
        "serve a Gradio web demo (upload a video, see its tracks); needs the [app] extra",
    ),
    "ablate": ("tevit_hf.commands.ablate", "train and evaluate the paper's ablation variants, write its tables"),
    "export": ("tevit_hf.commands.export", "export the model forward to ONNX or a torch.export program"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tevit-hf", description="TeViT video instance segmentation tools.", formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ...)")
    parser.add_argument(
        "--debug", action="store_true", help=f"show the traceback of an error (also: {DEBUG_ENVIRONMENT_VARIABLE}=1)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(
            name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter
        )
        subparser.set_defaults(_module=module_name)
        if name in _requested_commands():
            importlib.import_module(module_name).add_arguments(subparser)
    return parser


def _requested_commands() -> set[str]:
    return {arg for arg in sys.argv[1:] if arg in COMMANDS}


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    program = f"tevit-hf {args.command}"
    return run_with_error_layer(program, lambda: _run_command(args), debug=args.debug)


def _run_command(args: argparse.Namespace) -> int:
    # The package defers its imports and Auto-class registrations under this command (fast `--help`); a command
    # runs with them in place, as in any other program that imports tevit_hf.
    tevit_hf.register_auto_classes()
    return importlib.import_module(args._module).run(args)


if __name__ == "__main__":
    sys.exit(main())
