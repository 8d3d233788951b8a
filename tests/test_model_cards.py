"""Model cards: Hub metadata, the authors' numbers attributed to them, required sections, commands that parse, and
usage snippets that run (in a fresh process without tevit_hf, like a Hub user's)."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
from hub_fixtures import moving_shapes, run_python_without_tevit_hf, save_tiny_hub_folder, write_mp4
from huggingface_hub import ModelCard

import tevit_hf.commands.demo as demo_command
from tevit_hf.commands.cli import COMMANDS
from tevit_hf.commands.push_to_hub import build_argument_parser, save_hub_folder, validate_model_card
from tevit_hf.model_loading import load_model_and_processor
from tevit_hf.training.arguments import build_parser as build_train_parser


CARDS_DIR = Path(__file__).resolve().parents[1] / "model_cards"
CONVERTED_CARDS = {
    # card file -> the authors' YouTube-VIS-2019 val numbers (hustvl/TeViT README, spec section 6.1)
    "tevit-msgshift-b1-youtube-vis-2019.md": {"AP": 46.3, "AP50": 70.6, "AP75": 50.9, "AR1": 45.2, "AR10": 54.3},
    "tevit-msgshift-b1-mst-youtube-vis-2019.md": {"AP": 46.9, "AP50": 70.1, "AP75": 52.9, "AR1": 45.0, "AR10": 53.4},
}
DEMO_CARD = "tevit-synthetic-demo.md"
ALL_CARDS = [*CONVERTED_CARDS, DEMO_CARD]
HUB_ID = re.compile(r"tevit-hf/[\w.-]+")


def card_text(name: str) -> str:
    return (CARDS_DIR / name).read_text(encoding="utf-8")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def demo_model_bundled() -> bool:
    return (demo_command.ASSETS_DIR / demo_command.DEMO_MODEL_DIRNAME / "config.json").is_file()


def test_one_card_per_published_variant():
    assert sorted(path.name for path in CARDS_DIR.glob("*.md")) == sorted(ALL_CARDS)


@pytest.mark.parametrize("name", ALL_CARDS)
def test_hub_metadata(name):
    card = ModelCard.load(CARDS_DIR / name)
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "image-segmentation"  # the Hub has no video segmentation task
    assert "video-instance-segmentation" in metadata["tags"]
    assert metadata["license"] and metadata["datasets"]
    results = {result.metric_name: result for result in card.data.eval_results}
    assert "AP" in results and all(r.task_type == "video-instance-segmentation" for r in results.values())


@pytest.mark.parametrize("name", list(CONVERTED_CARDS))
def test_converted_cards_attribute_the_authors_numbers(name):
    card = ModelCard.load(CARDS_DIR / name)
    assert card.data.license == "mit"  # the official repository's license
    reported = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert reported == CONVERTED_CARDS[name]
    for result in card.data.eval_results:
        assert "TeViT authors" in result.source_name and result.source_url == "https://github.com/hustvl/TeViT"
        assert result.dataset_name == "YouTube-VIS 2019" and result.dataset_split == "validation"
    text = card_text(name)
    assert "**These numbers are the authors'**" in text
    assert f"| {' | '.join(str(value) for value in CONVERTED_CARDS[name].values())} |" in text
    assert "TODO" not in text
    validate_model_card(CARDS_DIR / name)  # what the push script checks


@pytest.mark.parametrize("name", ALL_CARDS)
def test_required_sections(name):
    text = card_text(name)
    limitations = text.split("## Limitations", 1)[1].split("\n## ", 1)[0].lower()
    assert "occlusion" in limitations and "long videos" in limitations
    assert "tevit-hf convert" in text
    assert "accelerate launch scripts/train.py" in text
    (bibtex,) = code_blocks(text, "bibtex")
    assert bibtex.startswith("@inproceedings{yang2022tevit,")
    assert bibtex.count("{") == bibtex.count("}")
    for field in ("Temporally Efficient Vision Transformer for Video Instance Segmentation", "Yang, Shusheng", "2022"):
        assert field in bibtex


def test_demo_card_numbers_are_measured_or_marked_todo():
    card = ModelCard.load(CARDS_DIR / DEMO_CARD)
    for result in card.data.eval_results:
        value = result.metric_value
        assert isinstance(value, float) and 0 <= value <= 100 or str(value).startswith("TODO(lead)"), value
    if demo_model_bundled():
        assert "TODO" not in card_text(DEMO_CARD), "the demo model is bundled: fill in its measured numbers"
        validate_model_card(CARDS_DIR / DEMO_CARD)


def parse_command(line: str) -> None:
    """Parse a shell command of a card with the argument parser of the program it runs (SystemExit if invalid)."""
    words = shlex.split(line)
    if words[:2] == ["accelerate", "launch"]:
        assert words[2] == "scripts/train.py"
        build_train_parser().parse_args(words[3:])
    elif words[0] == "tevit-hf":
        parser = argparse.ArgumentParser()
        importlib.import_module(COMMANDS[words[1]][0]).add_arguments(parser)
        parser.parse_args(words[2:])
    elif words[:2] == ["python", "scripts/push_to_hub.py"]:
        build_argument_parser().parse_args(words[2:])


@pytest.mark.parametrize("name", ALL_CARDS)
def test_shell_commands_parse(name):
    commands = []
    for block in code_blocks(card_text(name), "bash"):
        joined = block.replace("\\\n", " ")
        commands += [line.split("#")[0].strip() for line in joined.splitlines() if line.strip()]
    assert any(command.startswith("accelerate launch") for command in commands)
    for command in commands:
        parse_command(command)


RUN_SNIPPETS = """
import json, sys
snippets = json.loads(open(sys.argv[1]).read())
for name, code in snippets:
    print("running", name, flush=True)
    exec(compile(code, name, "exec"), {"__name__": "__main__"})
print("all snippets ran")
"""


def test_python_snippets_run_against_a_saved_model(tmp_path):
    """Every ```python block of every card, with its Hub id pointing at a local Hub folder (the bundled demo model for
    the demo card when it is there, else a tiny random model) and `video.mp4` at a generated video."""
    tiny_folder = save_tiny_hub_folder(tmp_path / "tiny")
    demo_folder = tiny_folder
    if demo_model_bundled():
        model, processor = load_model_and_processor(demo_command.ASSETS_DIR / demo_command.DEMO_MODEL_DIRNAME)
        demo_folder = save_hub_folder(model, processor, tmp_path / "demo")
    video = write_mp4(tmp_path / "video.mp4", moving_shapes(7))
    snippets = []
    for name in ALL_CARDS:
        folder = demo_folder if name == DEMO_CARD else tiny_folder
        blocks = code_blocks(card_text(name), "python")
        assert blocks, f"{name} has no Python usage snippet"
        for index, code in enumerate(blocks):
            assert HUB_ID.search(code) and '"video.mp4"' in code, f"{name} snippet {index}"
            code = HUB_ID.sub(str(folder), code).replace('"video.mp4"', json.dumps(str(video)))
            snippets.append((f"{name}[{index}]", code))
    snippets_path = tmp_path / "snippets.json"
    snippets_path.write_text(json.dumps(snippets))
    output = run_python_without_tevit_hf(RUN_SNIPPETS, str(snippets_path), cwd=tmp_path, timeout=600)
    assert output.strip().endswith("all snippets ran")
    assert output.count("running ") == len(snippets)
