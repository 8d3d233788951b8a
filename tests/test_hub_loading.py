"""Hub-loadable folders: auto_map + copied code, loading with remote code where tevit_hf cannot be imported, loading
without remote code where it is installed, safetensors only, and a clear error when config and weights disagree."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch
from hub_fixtures import moving_shapes, run_python_without_tevit_hf, save_tiny_hub_folder, tiny_model
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, AutoModel, pipeline

from tevit_hf import (
    TeViTConfig,
    TeViTForVideoInstanceSegmentation,
    TeViTImageProcessor,
    VideoInstanceSegmentationPipeline,
)
from tevit_hf.commands.push_to_hub import HUB_CODE_FILES
from tevit_hf.model_loading import ModelFolderError, load_model_and_processor


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    return save_tiny_hub_folder(tmp_path_factory.mktemp("hub") / "tiny-tevit")


def reference_scores(folder) -> list[float]:
    segmenter = pipeline(
        "video-instance-segmentation", model=tiny_model(), image_processor=TeViTImageProcessor.from_pretrained(folder)
    )
    return [instance["score"] for instance in segmenter(moving_shapes())]


def test_folder_holds_weights_configs_auto_map_custom_pipeline_and_code(hub_folder):
    names = {path.name for path in hub_folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", *HUB_CODE_FILES} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
    config = json.loads((hub_folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_tevit.TeViTConfig",
        "AutoModel": "modeling_tevit.TeViTForVideoInstanceSegmentation",
    }
    assert config["custom_pipelines"] == {
        "video-instance-segmentation": {
            "impl": "pipeline_tevit.VideoInstanceSegmentationPipeline",
            "pt": ["AutoModel"],
        }
    }
    processor_config = json.loads((hub_folder / "preprocessor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoImageProcessor": "image_processing_tevit.TeViTImageProcessor"}


def test_hub_code_set_is_self_contained(hub_folder):
    for name in HUB_CODE_FILES:
        tree = ast.parse((hub_folder / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[0] == "tevit_hf" for alias in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "tevit_hf", name
                if node.level:
                    assert node.level == 1 and f"{node.module}.py" in HUB_CODE_FILES, f"{name}: .{node.module}"


LOAD_WITH_REMOTE_CODE = """
import json, sys
import numpy as np
from transformers import AutoConfig, AutoImageProcessor, AutoModel, pipeline

folder = sys.argv[1]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
segmenter = pipeline("video-instance-segmentation", model=folder, trust_remote_code=True)
implicit_task = pipeline(model=folder, trust_remote_code=True)
frames = np.load(sys.argv[2])
instances = segmenter(frames)
print(json.dumps({
    "classes": [type(obj).__module__ + "." + type(obj).__name__
                for obj in (config, model, processor, segmenter, segmenter.model, implicit_task)],
    "tevit_hf_modules": sorted(name for name, module in sys.modules.items()
                               if name.split(".")[0] == "tevit_hf" and module is not None),
    "scores": [instance["score"] for instance in instances],
    "labels": [instance["label"] for instance in instances],
    "mask_shape": list(instances[0]["masks"].shape),
}))
"""


def test_loads_with_remote_code_in_a_fresh_process_without_tevit_hf(hub_folder, tmp_path):
    frames_path = tmp_path / "frames.npy"
    np.save(frames_path, moving_shapes())
    output = run_python_without_tevit_hf(LOAD_WITH_REMOTE_CODE, str(hub_folder), str(frames_path), cwd=tmp_path)
    report = json.loads(output.strip().splitlines()[-1])
    assert report["tevit_hf_modules"] == []
    for qualified_name in report["classes"]:
        assert qualified_name.startswith("transformers_modules."), qualified_name
    assert report["classes"][0].endswith("configuration_tevit.TeViTConfig")
    assert report["classes"][1].endswith("modeling_tevit.TeViTForVideoInstanceSegmentation")
    assert report["classes"][2].endswith("image_processing_tevit.TeViTImageProcessor")
    assert report["classes"][3].endswith("pipeline_tevit.VideoInstanceSegmentationPipeline")
    assert report["classes"][5].endswith("pipeline_tevit.VideoInstanceSegmentationPipeline")
    assert report["mask_shape"] == [6, 48, 64]
    # Same weights, same code: the same instances as the installed package computes.
    np.testing.assert_allclose(report["scores"], reference_scores(hub_folder), rtol=1e-5)


def test_fresh_process_really_cannot_import_tevit_hf(tmp_path):
    output = run_python_without_tevit_hf(
        "import importlib.util, sys\ntry:\n    import tevit_hf.modeling_tevit\nexcept ImportError:\n    print('blocked')\n",
        cwd=tmp_path,
    )
    assert output.strip() == "blocked"


def test_loads_without_remote_code_where_tevit_hf_is_installed(hub_folder):
    config = AutoConfig.from_pretrained(hub_folder)
    model = AutoModel.from_pretrained(hub_folder)
    processor = AutoImageProcessor.from_pretrained(hub_folder)
    assert type(config) is TeViTConfig
    assert type(model) is TeViTForVideoInstanceSegmentation
    assert type(processor) is TeViTImageProcessor
    expected = load_file(hub_folder / "model.safetensors")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)
    # The pipeline: with the installed class, or from objects (no config with custom_pipelines is read then).
    by_class = pipeline(
        "video-instance-segmentation", model=str(hub_folder), pipeline_class=VideoInstanceSegmentationPipeline
    )
    by_objects = pipeline("video-instance-segmentation", model=model, image_processor=processor)
    for segmenter in (by_class, by_objects):
        assert type(segmenter) is VideoInstanceSegmentationPipeline
        assert type(segmenter.model) is TeViTForVideoInstanceSegmentation
    scores = [instance["score"] for instance in by_class(moving_shapes())]
    np.testing.assert_allclose(scores, reference_scores(hub_folder), rtol=1e-5)


def test_strict_loader_accepts_a_consistent_folder(hub_folder):
    model, processor = load_model_and_processor(hub_folder, dtype="bfloat16")
    assert type(model) is TeViTForVideoInstanceSegmentation and not model.training
    assert model.dtype == torch.bfloat16 and isinstance(processor, TeViTImageProcessor)


def edit_config(folder, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_config_and_weights_with_different_shapes_fail_clearly(tmp_path):
    folder = save_tiny_hub_folder(tmp_path / "tiny")
    edit_config(folder, mask_conv_dim=24)
    with pytest.raises(
        ModelFolderError, match=r"disagree: .*shape mismatches \(mask_heads\.0\..*weights \(16,"
    ) as info:
        load_model_and_processor(folder)
    assert str(folder) in str(info.value) and "vs config (24," in str(info.value)


def test_config_with_more_stages_than_the_weights_fails_clearly(tmp_path):
    # transformers alone would only warn and initialise the missing stage randomly.
    folder = save_tiny_hub_folder(tmp_path / "tiny")
    edit_config(folder, num_head_stages=3, stage_loss_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ModelFolderError, match=r"tensors the config needs are missing from the weights \(.*\.2\."):
        load_model_and_processor(folder)


def test_weights_with_extra_tensors_fail_clearly(tmp_path):
    folder = save_tiny_hub_folder(tmp_path / "tiny")
    edit_config(folder, num_head_stages=1, stage_loss_weights=[1.0])
    with pytest.raises(ModelFolderError, match="unknown to the config"):
        load_model_and_processor(folder)


def test_pickle_weights_are_never_loaded(tmp_path):
    folder = save_tiny_hub_folder(tmp_path / "tiny")
    state_dict = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state_dict, folder / "pytorch_model.bin")
    with pytest.raises(ModelFolderError, match=r"no model\.safetensors.*pickle weights \['pytorch_model\.bin'\]"):
        load_model_and_processor(folder)


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_and_processor(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model_and_processor(tmp_path / "empty")
