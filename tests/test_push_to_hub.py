"""scripts/push_to_hub.py: the dry run builds and validates the upload folder; an upload sends exactly its files (the
real card as README.md included) in one commit, checked with the Hub client replaced by a recorder."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_fixtures import save_tiny_hub_folder
from safetensors.torch import load_file
from torch import save as torch_save

from tevit_hf.commands.demo import bundled_sample_annotations
from tevit_hf.commands.push_to_hub import (
    HUB_CODE_FILES,
    UploadFolderError,
    build_upload_folder,
    check_space_starts,
    main,
    validate_upload_folder,
)


REPO_ROOT = Path(__file__).resolve().parents[1]
CARD = REPO_ROOT / "model_cards" / "tevit-msgshift-b1-youtube-vis-2019.md"
EXPECTED_UPLOAD = sorted(
    [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        *HUB_CODE_FILES,
        "examples/sample_overlay.gif",
        "examples/sample_results.json",
    ]
)


class RecordingHubApi:
    """Stands in for `huggingface_hub.HfApi`: records the calls and the bytes each commit would send."""

    def __init__(self) -> None:
        self.created_repos: list[tuple[str, dict]] = []
        self.commits: list[dict] = []

    def create_repo(self, repo_id: str, **kwargs):
        self.created_repos.append((repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id: str, operations, commit_message: str, **kwargs):
        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        self.commits.append({"repo_id": repo_id, "files": files, "message": commit_message, **kwargs})
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()

    def __getattr__(self, name):
        raise AssertionError(f"the upload called HfApi.{name}, which the test does not expect")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_hub_folder(tmp_path_factory.mktemp("model") / "tiny")


def test_dry_run_builds_and_validates_without_network(model_dir, tmp_path, capsys):
    api = RecordingHubApi()
    output_dir = tmp_path / "upload"
    argv = ["--model-dir", str(model_dir), "--model-card", str(CARD), "--output-dir", str(output_dir), "--dry-run"]
    assert main(argv, api=api) == 0
    assert api.created_repos == [] and api.commits == []
    printed = capsys.readouterr().out
    assert "is valid" in printed and "Dry run: nothing was uploaded." in printed
    files = sorted(str(p.relative_to(output_dir).as_posix()) for p in output_dir.rglob("*") if p.is_file())
    assert files == EXPECTED_UPLOAD
    assert (output_dir / "README.md").read_text() == CARD.read_text()
    results = json.loads((output_dir / "examples" / "sample_results.json").read_text())
    sample_length = json.loads(bundled_sample_annotations().read_text())["videos"][0]["length"]
    assert results["num_frames"] == sample_length and results["instances"]


def test_upload_sends_exactly_the_folder_with_the_real_card(model_dir, tmp_path):
    api = RecordingHubApi()
    argv = [
        "--model-dir", str(model_dir), "--model-card", str(CARD), "--repo-id", "someone/tevit-test",
        "--output-dir", str(tmp_path / "upload"), "--skip-fresh-process-check", "--private",
    ]  # fmt: skip
    assert main(argv, api=api) == 0
    assert api.created_repos == [("someone/tevit-test", {"repo_type": "model", "private": True, "exist_ok": True})]
    (commit,) = api.commits
    assert commit["repo_id"] == "someone/tevit-test" and commit["repo_type"] == "model"
    assert sorted(commit["files"]) == EXPECTED_UPLOAD
    assert commit["files"]["README.md"] == CARD.read_bytes()
    config = json.loads(commit["files"]["config.json"])
    assert config["auto_map"]["AutoModel"] == "modeling_tevit.TeViTForVideoInstanceSegmentation"
    assert config["custom_pipelines"]["video-instance-segmentation"]["impl"] == (
        "pipeline_tevit.VideoInstanceSegmentationPipeline"
    )
    assert commit["files"]["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()


def test_repo_id_is_required_to_upload(model_dir):
    with pytest.raises(SystemExit, match="--repo-id"):
        main(["--model-dir", str(model_dir), "--model-card", str(CARD)], api=RecordingHubApi())


@pytest.fixture
def built_folder(model_dir, tmp_path):
    return build_upload_folder(model_dir, CARD, tmp_path / "upload", with_examples=False).path


def test_validation_names_every_problem(built_folder):
    assert validate_upload_folder(built_folder, fresh_process=False)
    (built_folder / "tracking_tevit.py").unlink()
    torch_save(load_file(built_folder / "model.safetensors"), built_folder / "pytorch_model.bin")
    config = json.loads((built_folder / "config.json").read_text())
    del config["custom_pipelines"]
    (built_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UploadFolderError) as info:
        validate_upload_folder(built_folder, fresh_process=False)
    message = str(info.value)
    assert "missing tracking_tevit.py" in message
    assert "pickle weights pytorch_model.bin" in message
    assert "custom_pipelines" in message


def test_card_without_hub_metadata_is_refused_before_building(model_dir, tmp_path):
    card = tmp_path / "README.md"
    card.write_text(
        CARD.read_text()
        .replace("pipeline_tag: image-segmentation\n", "")
        .replace("- video-instance-segmentation\n", "", 1)
    )
    with pytest.raises(
        UploadFolderError, match=r"missing metadata field `pipeline_tag`.*lack 'video-instance-segmentation'"
    ):
        build_upload_folder(model_dir, card, tmp_path / "upload")
    assert not (tmp_path / "upload").exists()
    todo_card = tmp_path / "todo.md"
    todo_card.write_text(CARD.read_text() + "\nTODO(lead): numbers\n")
    with pytest.raises(UploadFolderError, match="TODO"):
        build_upload_folder(model_dir, todo_card, tmp_path / "upload")


def test_inconsistent_model_folder_is_refused(model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["hidden_size"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="disagree"):
        build_upload_folder(broken, CARD, tmp_path / "upload", with_examples=False)
    assert not (tmp_path / "upload").exists()


def test_existing_output_folder_is_not_overwritten_silently(model_dir, built_folder):
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_upload_folder(model_dir, CARD, built_folder, with_examples=False)
    build_upload_folder(model_dir, CARD, built_folder, with_examples=False, overwrite=True)


def test_script_entry_point():
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), "--help"], capture_output=True, text=True
    )
    assert completed.returncode == 0 and "--dry-run" in completed.stdout


def _needs_gradio():
    if importlib.util.find_spec("gradio") is None:
        reason = 'the Space needs Gradio, the [app] extra: pip install -e ".[app]"'
        if os.environ.get("TEVIT_HF_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"{reason} (TEVIT_HF_REQUIRE_BROWSER is set: CI must run the app tests)")
        pytest.skip(reason)


def test_space_dry_run_builds_a_folder_that_starts_alone(tmp_path, capsys):
    _needs_gradio()
    from huggingface_hub import SpaceCard

    output_dir = tmp_path / "space"
    api = RecordingHubApi()
    # The dry run starts `python app.py` from the folder in a fresh process and waits for HTTP 200.
    assert main(["--space", "--dry-run", "--output-dir", str(output_dir)], api=api) == 0
    assert api.created_repos == [] and api.commits == []
    printed = capsys.readouterr().out
    assert f"Space folder {output_dir} is valid" in printed and "Dry run: nothing was uploaded." in printed
    card = SpaceCard.load(output_dir / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.sdk_version
    requirements = (output_dir / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("torch") for line in requirements)
    assert any(line.startswith("transformers") for line in requirements)
    assert not any(path.is_symlink() for path in output_dir.rglob("*"))
    assert (output_dir / "tevit_hf" / "assets" / "demo_model" / "modeling_tevit.py").read_text() == (
        REPO_ROOT / "src" / "tevit_hf" / "modeling_tevit.py"
    ).read_text()


def test_space_start_check_reports_an_app_that_does_not_serve(tmp_path):
    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "app.py").write_text("raise SystemExit('the app is broken')\n")
    (problem,) = check_space_starts(folder, timeout_s=60)
    assert "did not serve its page (exited with code 1)" in problem and "the app is broken" in problem


def test_space_upload_ships_the_model_and_creates_a_gradio_space(model_dir, tmp_path):
    _needs_gradio()
    api = RecordingHubApi()
    argv = [
        "--space", "--model-dir", str(model_dir), "--repo-id", "someone/tevit-space",
        "--output-dir", str(tmp_path / "space"), "--skip-fresh-process-check",
    ]  # fmt: skip
    assert main(argv, api=api) == 0
    assert api.created_repos == [
        ("someone/tevit-space", {"repo_type": "space", "private": False, "exist_ok": True, "space_sdk": "gradio"})
    ]
    (commit,) = api.commits
    assert commit["repo_type"] == "space" and commit["message"] == "Upload TeViT Space"
    files = commit["files"]
    assert {"app.py", "requirements.txt", "README.md", "model/config.json", "model/model.safetensors"} <= set(files)
    assert "DEFAULT_MODEL = 'model'" in files["app.py"].decode()
    assert files["model/model.safetensors"] == (model_dir / "model.safetensors").read_bytes()


def test_model_repository_still_needs_its_folder_and_card(model_dir):
    with pytest.raises(SystemExit, match="--model-dir and --model-card are required"):
        main(["--model-dir", str(model_dir), "--dry-run"], api=RecordingHubApi())
