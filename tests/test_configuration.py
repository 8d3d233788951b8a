import pytest
import torch

from tevit_hf import PVT_V2_PRESETS, YOUTUBE_VIS_2019_CLASSES, TeViTConfig, TeViTForVideoInstanceSegmentation


def test_defaults_are_the_official_b1_youtube_vis_model():
    config = TeViTConfig()
    assert config.num_labels == 40
    assert config.id2label[0] == "person" and config.id2label[39] == "tennis_racket"
    assert config.num_queries == 100 and config.num_head_stages == 6
    assert config.num_messenger_tokens == 32 and config.messenger_shift_strides == [1, -1, 2, -2]
    assert config.backbone_hidden_sizes == [64, 128, 320, 512]
    assert config.mask_size == 28
    assert config.stage_loss_weights == [1.0] * 6


def test_default_model_has_the_official_parameter_count():
    with torch.device("meta"):
        model = TeViTForVideoInstanceSegmentation(TeViTConfig())
    assert sum(parameter.numel() for parameter in model.parameters()) == 161_832_616
    assert sum(parameter.numel() for parameter in model.model.backbone.parameters()) == 13_496_096
    assert sum(parameter.numel() for parameter in model.model.neck.parameters()) == 2_623_488
    assert sum(parameter.numel() for parameter in model.model.decoder_stages[0].parameters()) == 13_225_132
    assert sum(parameter.numel() for parameter in model.mask_heads[0].parameters()) == 11_056_040


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_messenger_tokens": 30}, "divisible by the number of shift groups"),
        ({"backbone_depths": [2, 2, 2]}, "`backbone_depths` has 3 entries"),
        ({"backbone_num_attention_heads": [1, 2, 5, 7]}, "not divisible by its 7 attention heads"),
        ({"hidden_size": 250}, "not divisible by `head_num_attention_heads`"),
        ({"stage_loss_weights": [1.0, 1.0]}, "one per head stage"),
        ({"bbox_delta_stds": [0.5, 0.5, 1.0]}, "needs 4 values"),
        ({"num_queries": 0}, "`num_queries` must be positive"),
    ],
)
def test_inconsistent_configs_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TeViTConfig(**kwargs)


def test_num_labels_without_id2label_gets_generic_names():
    config = TeViTConfig(num_labels=3)
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_presets_and_round_trip(tmp_path):
    assert set(PVT_V2_PRESETS) == {"b0", "b1", "b2", "b3", "b4", "b5"}
    config = TeViTConfig.from_pvt_v2_preset("b2", num_head_stages=3)
    assert config.backbone_depths == [3, 4, 6, 3] and config.stage_loss_weights == [1.0] * 3
    assert TeViTConfig.from_pvt_v2_preset("b0").backbone_hidden_sizes == [32, 64, 160, 256]
    assert TeViTConfig.from_pvt_v2_preset("b5").backbone_mlp_ratios == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="Unknown PVTv2 variant"):
        TeViTConfig.from_pvt_v2_preset("b9")
    config.save_pretrained(tmp_path)
    loaded = TeViTConfig.from_pretrained(tmp_path)
    assert loaded.backbone_depths == [3, 4, 6, 3]
    assert loaded.id2label[1] == YOUTUBE_VIS_2019_CLASSES[1]
    assert loaded.to_dict() == config.to_dict()
