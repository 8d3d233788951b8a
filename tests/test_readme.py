"""The README's Python example must really run."""

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example saves a folder in the working directory
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 6  # three instances from each example
    assert all("torch.Size([4, 120, 160])" in line for line in printed)


def test_readme_names_the_test_and_demo_commands():
    text = README.read_text()
    assert "make test" in text and "make demo" in text


def test_readme_train_commands_parse(tmp_path, monkeypatch):
    import shlex

    from tevit_hf.training import parse_arguments

    monkeypatch.chdir(tmp_path)  # relative output folders: nothing there yet
    text = README.read_text().replace("\\\n", " ")
    commands = [
        line for line in text.splitlines() if line.startswith("accelerate launch") and "scripts/train.py" in line
    ]
    assert len(commands) >= 2, "README shows the quick start and the official recipe"
    for command in commands:
        words = shlex.split(command.split("#")[0])
        parse_arguments(words[words.index("scripts/train.py") + 1 :])
