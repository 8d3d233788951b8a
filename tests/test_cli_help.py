"""Every command-line option has help text and shows its default; `tevit-hf --help` loads neither torch nor
transformers (it answers at once; the package defers its imports under the `tevit-hf` command)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from tevit_hf.argparse_help import DefaultsHelpFormatter
from tevit_hf.commands.cli import COMMANDS
from tevit_hf.commands.push_to_hub import build_argument_parser
from tevit_hf.training.arguments import build_parser as build_train_parser


def _command_parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tevit-hf {name}", formatter_class=DefaultsHelpFormatter)
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
    return parser


PARSERS = {
    **{name: (lambda name=name: _command_parser(name)) for name in COMMANDS},
    "scripts/train.py": build_train_parser,
    "scripts/push_to_hub.py": build_argument_parser,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_and_shows_its_default(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # no line wrapping inside the defaults
    parser = PARSERS[name]()
    help_text = " ".join(parser.format_help().split())
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
        if (
            action.default in (None, argparse.SUPPRESS)
            or isinstance(action.default, bool)
            or not action.option_strings
        ):
            continue
        if "default" in action.help.lower():  # the help says it in words
            continue
        assert f"(default: {action.default})" in help_text, (
            f"{name}: the default of {action.option_strings} is missing"
        )


def test_top_level_help_loads_neither_torch_nor_transformers():
    code = (
        "import sys; sys.argv = ['tevit-hf', '--help']\n"
        "from tevit_hf.commands.cli import build_parser\n"
        "text = build_parser().format_help()\n"
        "assert 'predict' in text and 'make-synthetic' in text, text\n"
        "heavy = sorted(name for name in ('torch', 'transformers') if name in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_command_registers_the_auto_classes_before_it_runs(tmp_path):
    # Under `tevit-hf` the package import is deferred; running a command completes it, Auto-class registration included.
    code = (
        "import sys; sys.argv = ['tevit-hf']\n"
        "import tevit_hf\n"
        "assert 'torch' not in sys.modules\n"
        "from tevit_hf.commands.cli import main\n"
        f"assert main(['make-synthetic', '--output-dir', {str(tmp_path / 'data')!r}, '--num-train-videos', '1',"
        " '--num-val-videos', '1', '--num-frames', '2']) == 0\n"
        "from transformers import CONFIG_MAPPING\n"
        "assert CONFIG_MAPPING['tevit'] is tevit_hf.TeViTConfig\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
