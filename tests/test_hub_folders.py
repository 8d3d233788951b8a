"""Every folder the project writes is a complete Hub folder: `save_pretrained`, `scripts/train.py`'s output,
`tevit-hf convert`'s output, the bundled demo model and the push folder all load in a fresh process where `tevit_hf`
cannot be imported (AutoModel, AutoImageProcessor and the pipeline with `trust_remote_code=True`) and run the pipeline
on a short video; with `tevit_hf` installed they load without remote code too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_cli_error, tiny_config, tiny_train_arguments
from hub_fixtures import moving_shapes, run_python_without_tevit_hf, tiny_model, tiny_processor, write_mp4
from original_checkpoint_fixture import make_original_state_dict
from transformers import AutoImageProcessor, AutoModel, pipeline

from tevit_hf import TeViTForVideoInstanceSegmentation, TeViTImageProcessor, VideoInstanceSegmentationPipeline
from tevit_hf.commands.cli import main as cli_main
from tevit_hf.commands.demo import bundled_demo_model_dir
from tevit_hf.commands.push_to_hub import build_upload_folder
from tevit_hf.data.synthetic import generate_synthetic_vis_dataset
from tevit_hf.model_loading import HUB_CODE_FILES


REPO_ROOT = Path(__file__).resolve().parents[1]
CARD = REPO_ROOT / "model_cards" / "tevit-msgshift-b1-youtube-vis-2019.md"
FOLDER_KINDS = ("save_pretrained", "train_output", "convert_output", "bundled_demo", "push_folder")


def _train_output(root: Path) -> Path:
    dataset = root / "data"
    generate_synthetic_vis_dataset(dataset, num_videos=2, num_frames=4, height=64, width=96, num_classes=3, mp4="none")
    output_dir = root / "run"
    arguments = tiny_train_arguments(dataset, output_dir, "--max_train_steps", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return output_dir


def _convert_output(root: Path) -> Path:
    checkpoint = root / "tevit_official.pth"
    torch.save({"state_dict": make_original_state_dict(tiny_config())}, checkpoint)
    output_dir = root / "converted"
    assert cli_main(["convert", "--checkpoint", str(checkpoint), "--output-dir", str(output_dir)]) == 0
    return output_dir


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folders")
    saved = root / "saved"
    tiny_model().save_pretrained(saved)
    tiny_processor().save_pretrained(saved)
    push = build_upload_folder(saved, CARD, root / "push", with_examples=False).path
    return {
        "save_pretrained": saved,
        "train_output": _train_output(root),
        "convert_output": _convert_output(root),
        "bundled_demo": bundled_demo_model_dir(),
        "push_folder": push,
    }


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("video") / "short.mp4", moving_shapes(num_frames=5))


@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_folder_carries_code_auto_map_and_pipeline(folders, kind):
    folder = folders[kind]
    for name in HUB_CODE_FILES:
        assert (folder / name).is_file(), f"{kind}: no {name}"
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_tevit.TeViTForVideoInstanceSegmentation"
    assert config["custom_pipelines"]["video-instance-segmentation"]["impl"] == (
        "pipeline_tevit.VideoInstanceSegmentationPipeline"
    )
    processor_config = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoImageProcessor": "image_processing_tevit.TeViTImageProcessor"}


LOAD_EVERY_FOLDER = """
import json, sys
from transformers import AutoImageProcessor, AutoModel, pipeline

report = {}
for kind, folder in json.loads(sys.argv[1]).items():
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    segmenter = pipeline("video-instance-segmentation", model=folder, trust_remote_code=True)
    instances = segmenter(sys.argv[2], return_rle=True)
    report[kind] = {
        "classes": [type(o).__module__ for o in (model, processor, segmenter)],
        "dtype": str(segmenter.model.dtype),
        "num_instances": len(instances),
        "frames": len(instances[0]["segmentations"]),
        "tevit_hf_modules": sorted(n for n, m in sys.modules.items() if n.split(".")[0] == "tevit_hf" and m),
    }
print(json.dumps(report))
"""


def test_every_folder_kind_loads_with_remote_code_in_a_fresh_process(folders, short_video, tmp_path):
    output = run_python_without_tevit_hf(
        LOAD_EVERY_FOLDER, json.dumps({k: str(v) for k, v in folders.items()}), str(short_video), cwd=tmp_path
    )
    report = json.loads(output.strip().splitlines()[-1])
    assert sorted(report) == sorted(FOLDER_KINDS)
    for kind, entry in report.items():
        assert entry["tevit_hf_modules"] == [], kind
        assert all(module.startswith("transformers_modules.") for module in entry["classes"]), (kind, entry)
        assert entry["num_instances"] > 0 and entry["frames"] == 5, (kind, entry)
        # One dtype rule: config.json's dtype; the bundled demo stores bfloat16 weights but runs in float32.
        assert entry["dtype"] == "torch.float32", (kind, entry)


@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_every_folder_kind_loads_without_remote_code_where_tevit_hf_is_installed(folders, kind):
    folder = folders[kind]
    model = AutoModel.from_pretrained(folder)
    assert type(model) is TeViTForVideoInstanceSegmentation and model.dtype == torch.float32
    assert type(AutoImageProcessor.from_pretrained(folder)) is TeViTImageProcessor
    segmenter = pipeline(
        "video-instance-segmentation", model=str(folder), pipeline_class=VideoInstanceSegmentationPipeline
    )
    instances = segmenter(moving_shapes(num_frames=3))
    assert instances and instances[0]["masks"].shape[0] == 3


def test_bundled_demo_stores_bfloat16_weights_and_links_the_package_code():
    from safetensors import safe_open

    folder = bundled_demo_model_dir()
    with safe_open(folder / "model.safetensors", framework="pt") as weights:
        assert {weights.get_slice(name).get_dtype() for name in weights.keys()} >= {"BF16"}
    for name in HUB_CODE_FILES:
        assert (folder / name).resolve() == (folder.parents[1] / name).resolve(), name
    # The user's dtype wins over the stored/configured one.
    assert AutoModel.from_pretrained(folder, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_hub_code_set_is_what_the_imports_need():
    # Derived from modeling_tevit.py's relative imports, the pipeline's included: nothing the Hub folder needs is left
    # out, whatever Hub module is added later.
    assert {"configuration_tevit.py", "modeling_tevit.py", "pipeline_tevit.py", "image_processing_tevit.py"} <= set(
        HUB_CODE_FILES
    )
    assert np.all([name.endswith(".py") for name in HUB_CODE_FILES])


def _folder_missing_a_tensor(root: Path) -> Path:
    from safetensors.torch import load_file, save_file

    folder = root / "missing"
    tiny_model().save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    weights.pop(sorted(weights)[0])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _pickle_only_folder(root: Path) -> Path:
    from safetensors.torch import load_file

    folder = root / "pickle"
    tiny_model().save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.mark.parametrize(
    ("make_folder", "message"),
    [(_folder_missing_a_tensor, "missing from the weights"), (_pickle_only_folder, "pickle weights")],
)
def test_evaluate_loads_through_the_strict_loader(tmp_path, make_folder, message, capsys):
    from tevit_hf.commands.demo import bundled_sample_annotations

    folder = make_folder(tmp_path)
    arguments = ["evaluate", "--model", str(folder), "--annotations", str(bundled_sample_annotations())]
    assert_cli_error(
        capsys, [*arguments, "--frames-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")], message
    )
    assert not (tmp_path / "out").exists()  # refused before any inference or writing
