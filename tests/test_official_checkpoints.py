"""`tevit-hf convert --checkpoint URL_OR_NAME`: download once (progress bar, sha256), convert; offline, say which file
to fetch and where to put it. A local `file://` URL stands in for the release."""

from __future__ import annotations

import hashlib

import pytest
import torch
from conftest import assert_cli_error, tiny_config
from original_checkpoint_fixture import make_original_state_dict

from tevit_hf import TeViTForVideoInstanceSegmentation
from tevit_hf.commands.cli import main as cli_main
from tevit_hf.official_checkpoints import RELEASE_URL, checkpoint_url, fetch_checkpoint


@pytest.fixture
def release(tmp_path):
    """A tiny official-format checkpoint served from a file:// URL, and its sha256."""
    path = tmp_path / "release" / "tevit_msgshift.pth"
    path.parent.mkdir()
    torch.save({"state_dict": make_original_state_dict(tiny_config())}, path)
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def test_short_names_and_urls_resolve_to_the_release():
    assert checkpoint_url("tevit_msgshift") == f"{RELEASE_URL}/tevit_msgshift.pth"
    assert checkpoint_url("tevit_swin_l_mstrain") == f"{RELEASE_URL}/tevit_swin-l_mstrain.pth"
    assert checkpoint_url("queryinst_pvtv2-b1_coco").endswith("/queryinst_pvtv2-b1_fpn_mstrain_480-800_3x_coco.pth")
    assert checkpoint_url("https://example.org/a.pth") == "https://example.org/a.pth"
    assert checkpoint_url("checkpoints/tevit_msgshift.pth") is None  # a local path stays a path


def test_convert_downloads_once_checks_the_sha256_and_converts(tmp_path, release):
    url, digest = release
    cache = tmp_path / "cache"
    arguments = ["convert", "--checkpoint", url, "--cache-dir", str(cache), "--sha256", digest[:16]]
    assert cli_main([*arguments, "--output-dir", str(tmp_path / "out")]) == 0
    assert (cache / "tevit_msgshift.pth").is_file()
    model = TeViTForVideoInstanceSegmentation.from_pretrained(tmp_path / "out")
    assert model.config.num_messenger_tokens == tiny_config().num_messenger_tokens
    # The cached copy is reused: the release may disappear.
    (tmp_path / "release" / "tevit_msgshift.pth").unlink()
    assert fetch_checkpoint(url, cache, sha256=digest) == cache / "tevit_msgshift.pth"


def test_a_wrong_sha256_is_refused_and_nothing_is_kept(tmp_path, release, capsys):
    url, _ = release
    cache = tmp_path / "cache"
    arguments = ["convert", "--checkpoint", url, "--cache-dir", str(cache), "--sha256", "0" * 16]
    assert_cli_error(capsys, [*arguments, "--output-dir", str(tmp_path / "out")], "hash|sha256")
    assert not (cache / "tevit_msgshift.pth").exists() and not (tmp_path / "out").exists()


def test_offline_names_the_file_and_where_to_put_it(tmp_path, capsys):
    missing = (tmp_path / "nowhere" / "tevit_r50.pth").as_uri()
    cache = tmp_path / "cache"
    line = assert_cli_error(
        capsys,
        ["convert", "--checkpoint", missing, "--cache-dir", str(cache), "--output-dir", str(tmp_path / "out")],
        r"cannot download .*tevit_r50\.pth",
    )
    assert f"put it at {cache / 'tevit_r50.pth'}" in line
