"""Pins the MsgShifT quirks of the official backbone (spec section 1)."""

import torch
from conftest import tiny_config

from tevit_hf.modeling_tevit import TeViTMsgShiftBackbone, constant_patch_conv, shift_messenger_tokens


def test_cyclic_shift_pattern():
    num_frames, groups, tokens_per_group = 4, 4, 2
    # Token value = its home frame; each group of 2 tokens shifts by its own stride.
    tokens = torch.arange(num_frames, dtype=torch.float32)[:, None, None].expand(
        num_frames, groups * tokens_per_group, 1
    )
    shifted = shift_messenger_tokens(tokens.clone(), [1, -1, 2, -2], num_frames)
    home = shifted[..., 0][:, ::tokens_per_group]  # (T, groups): home frame of each group now held by frame t
    # Frame 0 receives group 0 from frame T-1, group 1 from frame 1, group 2 from frame T-2, group 3 from frame 2.
    assert home[0].tolist() == [3, 1, 2, 2]
    assert home[1].tolist() == [0, 2, 3, 3]
    # The reversed shift of the next block sends every group home.
    restored = shift_messenger_tokens(shifted, [-1, 1, -2, 2], num_frames)
    assert torch.equal(restored, tokens)


def test_shift_keeps_clips_separate():
    tokens = torch.arange(2 * 3, dtype=torch.float32)[:, None, None].expand(6, 4, 1).clone()
    shifted = shift_messenger_tokens(tokens, [1, -1, 2, -2], num_frames=3)
    assert set(shifted[:3].unique().tolist()) <= {0.0, 1.0, 2.0}
    assert set(shifted[3:].unique().tolist()) <= {3.0, 4.0, 5.0}


def test_single_frame_shift_is_identity():
    tokens = torch.randn(2, 8, 5)
    assert torch.equal(shift_messenger_tokens(tokens, [1, -1, 2, -2], num_frames=1), tokens)


def test_block_shift_directions_and_odd_depth():
    config = tiny_config(backbone_depths=[2, 3, 1, 2])
    backbone = TeViTMsgShiftBackbone(config)
    strides = [[layer.shift_strides for layer in stage.layers] for stage in backbone.stages]
    forward, backward = [1, -1, 2, -2], [-1, 1, -2, 2]
    assert strides[0] == [forward, backward]
    assert strides[1] == [forward, backward, None]  # the unpaired last block of an odd-depth stage does not shift
    assert strides[2] == [None]


def test_messengers_are_projected_as_constant_patches():
    conv = torch.nn.Conv2d(3, 4, kernel_size=3, padding=0)
    tokens = torch.randn(2, 5, 3)
    # A constant image of the token's colour convolved with `conv` gives the same value at every position.
    images = tokens[0, :, :, None, None].expand(5, 3, 6, 6)
    assert torch.allclose(conv(images)[:, :, 2, 2], constant_patch_conv(tokens, conv)[0], atol=1e-5)


def test_last_stage_messengers_are_not_keys_and_skipping_them_is_exact():
    config = tiny_config()
    assert config.backbone_sr_ratios[-1] == 1
    backbone = TeViTMsgShiftBackbone(config).eval()
    assert not backbone.stages[-1].uses_messengers and backbone.stages[0].uses_messengers
    pixel_values = torch.randn(4, 3, 64, 96)
    with torch.no_grad():
        skipped = backbone(pixel_values, num_frames=2)
        backbone.stages[-1].uses_messengers = True  # run the official (dead) stage-4 messenger computation
        computed = backbone(pixel_values, num_frames=2)
    for a, b in zip(skipped, computed):
        assert torch.equal(a, b)


def test_messenger_tokens_exchange_information_across_frames_only_within_stages_1_to_3():
    config = tiny_config(drop_path_rate=0.0)
    backbone = TeViTMsgShiftBackbone(config).eval()
    pixel_values = torch.randn(3, 3, 64, 96)
    perturbed = pixel_values.clone()
    perturbed[2] += 1.0  # change only the last frame
    with torch.no_grad():
        base, other = backbone(pixel_values, 3), backbone(perturbed, 3)
        base_single, other_single = backbone(pixel_values, 1), backbone(perturbed, 1)
    # Frame 0 sees frame 2 through the cyclic shift (wrap-around); without the temporal clip it does not.
    assert not torch.allclose(base[0][0], other[0][0])
    assert torch.equal(base_single[0][0], other_single[0][0])


def test_sr_ratio_one_stage_ignores_messengers_as_keys():
    # A middle stage with sr_ratio 1 keeps messengers as queries (they are carried on) but not as keys/values:
    # changing the messenger tokens must not change that stage's patch-token output.
    config = tiny_config(backbone_sr_ratios=[8, 1, 2, 1])
    backbone = TeViTMsgShiftBackbone(config).eval()
    stage = backbone.stages[1]
    pixel_values = torch.randn(2, 8, 16, 24)
    with torch.no_grad():
        out_a, msg_a = stage(pixel_values, torch.randn(2, 8, 8), num_frames=2)
        out_b, msg_b = stage(pixel_values, torch.randn(2, 8, 8), num_frames=2)
    assert torch.allclose(out_a, out_b, atol=1e-6)
    assert not torch.allclose(msg_a, msg_b)
