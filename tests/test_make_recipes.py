"""The Makefile's CPU recipes (`make train-synthetic`, `make ablate-synthetic`) stay valid command lines: every
training and ablation command they would run parses with today's options (`make -n` prints them without running)."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tevit_hf.training import parse_arguments


REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _commands(target: str) -> list[list[str]]:
    """The shell commands of `target` (split at `;` and `&` too), as words; `make install`'s line left out."""
    # Without the flags of an enclosing `make test`, so the dry run prints the same lines in and out of make.
    environment = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    dry_run = subprocess.run(
        [shutil.which("make"), "-n", target], cwd=REPO, capture_output=True, text=True, check=True, env=environment
    ).stdout
    commands = []
    for line in dry_run.replace("\\\n", " ").splitlines():
        if "import tevit_hf" in line:
            continue
        command = []
        for word in shlex.split(line):
            if word.rstrip("&;"):
                command.append(word.rstrip("&;"))
            if word.endswith(("&", ";")):
                commands.append(command)
                command = []
        commands.append(command)
    return [command for command in commands if command]


def _training_arguments(command: list[str]) -> list[str] | None:
    """What a command gives to `scripts/train.py`: its own arguments, or those after `--` of `tevit-hf ablate`."""
    if "scripts/train.py" in command:
        return command[command.index("scripts/train.py") + 1 :]
    if command[:2] == ["tevit-hf", "ablate"]:
        return command[command.index("--") + 1 :]
    return None


def _all_training_arguments(target: str) -> list[list[str]]:
    return [arguments for command in _commands(target) if (arguments := _training_arguments(command)) is not None]


@pytest.mark.parametrize(("target", "expected"), [("train-synthetic", 1), ("ablate-synthetic", 4)])
def test_make_recipe_training_arguments_parse(target, expected, tmp_path):
    argument_lists = _all_training_arguments(target)
    assert len(argument_lists) == expected
    for arguments in argument_lists:
        # A later --output_dir wins (argparse), so the recipe's own folder is never checked or touched.
        args = parse_arguments([*arguments, "--output_dir", str(tmp_path / "run")])
        assert args.synthetic and args.model_name_or_path == "tiny"


def test_ablation_recipe_fine_tunes_every_run_from_the_shared_initialisation():
    pretrain, *ablations = _all_training_arguments("ablate-synthetic")
    init_dir = pretrain[pretrain.index("--output_dir") + 1]
    assert "num_messenger_tokens=0,query_interaction=spatial" in pretrain[pretrain.index("--config_overrides") + 1]
    for arguments in ablations:
        assert arguments[arguments.index("--init_from") + 1] == init_dir
        # The seeds' runs and the final summary must share every argument, or the runner refuses the folder.
        assert arguments == ablations[0]
