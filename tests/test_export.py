"""`tevit-hf export`: ONNX (checked with onnxruntime) and torch.export programs match PyTorch; `predict --onnx`.

The exports are of the bundled demo model (a trained tiny TeViT; a randomly initialised one is too ill-conditioned for
the 1e-4 bar on boxes): one ONNX export (conftest's `demo_onnx_path`, shared with the benchmark tests) and one
torch.export for the module. They are the slow part of the suite:
about 2 min 50 s and 1 min of CPU time (on a 2-core machine shared with other jobs the module took 20 min of wall
time), see docs/benchmarks.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_cli_error

from tevit_hf.commands.cli import main
from tevit_hf.commands.demo import bundled_demo_model_dir, bundled_sample_video
from tevit_hf.export import EXPORT_OUTPUT_NAMES, example_inputs, reference_outputs
from tevit_hf.model_loading import load_model_and_processor
from tevit_hf.ops_tevit import multi_level_roi_align


onnxruntime = pytest.importorskip("onnxruntime", reason="the [export] extra (onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the [export] extra (onnxscript, the ONNX exporter's translator) is missing")

# The bar: last-stage logits and selected mask logits within 1e-4 of PyTorch, same selected instances.
TOLERANCE = 1e-4
# Clips other than the traced example (2 frames, 64 x 96): frame count and frame size are dynamic.
CLIPS = [(1, 64, 64), (5, 96, 128), (8, 128, 96)]


@pytest.fixture(scope="module")
def demo_model():
    model, _ = load_model_and_processor(bundled_demo_model_dir(), dtype="float32")
    return model


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The exported program, loaded back from the `.pt2` file the command wrote."""
    path = tmp_path_factory.mktemp("pt2") / "demo.pt2"
    assert main(["export", "--model", "demo", "--format", "torch-export", "--output", str(path), "--verify"]) == 0
    return torch.export.load(str(path)).module()


def assert_matches(reference: dict, exported: dict) -> None:
    for name in ("class_logits", "selected_mask_logits", "selected_scores", "selected_boxes", "pred_boxes"):
        difference = (torch.as_tensor(exported[name]).double() - reference[name].double()).abs().max().item()
        assert difference <= TOLERANCE, (name, difference)
    for name in ("selected_labels", "selected_query_indices", "image_sizes"):
        assert torch.equal(torch.as_tensor(exported[name]).long(), reference[name].long()), name


@pytest.mark.parametrize("clip", CLIPS)
def test_onnx_matches_pytorch_with_onnxruntime(demo_onnx_path, demo_model, clip):
    from tevit_hf.onnx_model import ONNXTeViTModel

    session = onnxruntime.InferenceSession(str(demo_onnx_path), providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == list(EXPORT_OUTPUT_NAMES)
    pixel_values, pixel_mask = example_inputs(*clip, seed=7)
    exported = ONNXTeViTModel(demo_onnx_path).run_outputs(pixel_values, pixel_mask)
    assert exported["selected_mask_logits"].shape[:2] == (1, clip[0])
    assert_matches(reference_outputs(demo_model, pixel_values, pixel_mask), exported)


@pytest.mark.parametrize("clip", CLIPS)
def test_torch_export_program_matches_pytorch(program, demo_model, clip):
    pixel_values, pixel_mask = example_inputs(*clip, seed=7)
    with torch.no_grad():
        exported = dict(zip(EXPORT_OUTPUT_NAMES, program(pixel_values, pixel_mask)))
    assert_matches(reference_outputs(demo_model, pixel_values, pixel_mask), exported)


def test_onnx_file_carries_config_and_processor(demo_onnx_path, demo_model):
    from tevit_hf.onnx_model import ONNXTeViTModel

    model = ONNXTeViTModel(demo_onnx_path)
    stored, expected = model.config.to_dict(), demo_model.config.to_dict()
    assert stored.pop("_name_or_path") == "" and expected.pop("_name_or_path")
    assert stored == expected
    assert model.image_processor().size == {"shortest_edge": 96, "longest_edge": 128}


def test_predict_onnx_gives_the_tracks_of_pytorch(demo_onnx_path, tmp_path):
    video = str(bundled_sample_video())
    common = ["--clip-length", "4", "--stride", "2", "--overlay-format", "gif"]
    assert main(["predict", video, "--model", "demo", "--output-dir", str(tmp_path / "pt"), *common]) == 0
    assert (
        main(["predict", video, "--onnx", str(demo_onnx_path), "--output-dir", str(tmp_path / "onnx"), *common]) == 0
    )
    pytorch = json.loads((tmp_path / "pt" / "results.json").read_text())
    exported = json.loads((tmp_path / "onnx" / "results.json").read_text())
    assert len(pytorch["instances"]) == len(exported["instances"]) > 0
    for expected, actual in zip(pytorch["instances"], exported["instances"]):
        assert (actual["id"], actual["label"]) == (expected["id"], expected["label"])
        assert actual["score"] == pytest.approx(expected["score"], abs=1e-5)
        assert actual["segmentations"] == expected["segmentations"]
        for box, expected_box in zip(actual["boxes"], expected["boxes"]):
            assert (box is None) == (expected_box is None)
            if box is not None:
                np.testing.assert_allclose(box, expected_box, atol=0.02)


def test_export_under_tracing_pools_rois_like_eager(monkeypatch):
    # The exported graph pools every RoI in one chunk with K gathers instead of `embedding_bag`: same values.
    feature_maps = [torch.randn(2, 8, 16 // 2**level, 24 // 2**level) for level in range(4)]
    rois = torch.tensor([[0, 1.0, 2.0, 30.0, 40.0], [1, 10.0, 5.0, 90.0, 60.0], [1, 0.0, 0.0, 8.0, 8.0]])
    eager = multi_level_roi_align(feature_maps, rois, 7, [4, 8, 16, 32], 2, 56)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True, raising=False)
    exporting = multi_level_roi_align(feature_maps, rois, 7, [4, 8, 16, 32], 2, 56)
    torch.testing.assert_close(exporting, eager, rtol=1e-5, atol=1e-6)


def test_export_refuses_an_existing_output(tmp_path, capsys):
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"earlier work")
    assert_cli_error(capsys, ["export", "--model", "demo", "--output", str(existing)], r"already exists.*--overwrite")
    assert existing.read_bytes() == b"earlier work"


def test_predict_needs_a_model_or_an_onnx_file(tmp_path, capsys):
    video = str(bundled_sample_video())
    assert_cli_error(capsys, ["predict", video, "--output-dir", str(tmp_path / "a")], r"give --model DIR")
    argv = ["predict", video, "--onnx", "m.onnx", "--device", "cuda", "--output-dir", str(tmp_path / "b")]
    assert_cli_error(capsys, argv, r"--onnx runs on onnxruntime's CPU provider; drop --device cuda")


def test_predict_onnx_rejects_a_file_not_written_by_export(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "other.onnx"
    onnx.save_model(helper.make_model(graph), str(path))
    video = str(bundled_sample_video())
    argv = ["predict", video, "--onnx", str(path), "--output-dir", str(tmp_path / "out")]
    assert_cli_error(capsys, argv, r"other.onnx has no `tevit_config` metadata")
