"""The official checkpoints by name or URL, downloaded once into a cache for `tevit-hf convert --checkpoint`.

Downloads go through `torch.hub.download_url_to_file` (progress bar, sha256 prefix check, written to a temporary file
and moved into place only when complete). The release does not publish checksums: give `--sha256` to have the file
checked; the digest of every file used is logged so that it can be recorded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch

from .errors import TeViTError


logger = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/hustvl/Storage/releases/download/v1.1.0"
# Short name -> file of the hustvl/Storage v1.1.0 release (hustvl/TeViT README): TeViT models and the COCO QueryInst
# PVTv2-B1 that the MsgShifT training starts from.
OFFICIAL_CHECKPOINTS: dict[str, str] = {
    "tevit_msgshift": "tevit_msgshift.pth",
    "tevit_msgshift_mstrain": "tevit_msgshift_mstrain.pth",
    "tevit_r50": "tevit_r50.pth",
    "tevit_swin-l_mstrain": "tevit_swin-l_mstrain.pth",
    "queryinst_pvtv2-b1_coco": "queryinst_pvtv2-b1_fpn_mstrain_480-800_3x_coco.pth",
}
_URL_SCHEMES = ("http", "https", "file")


class CheckpointDownloadError(TeViTError, OSError):
    """An official checkpoint that cannot be downloaded or does not match its checksum."""


def default_cache_dir() -> Path:
    """`$TEVIT_HF_CHECKPOINTS`, else torch.hub's checkpoint folder (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(os.environ.get("TEVIT_HF_CHECKPOINTS") or Path(torch.hub.get_dir()) / "checkpoints")


def checkpoint_url(source: str) -> str | None:
    """The URL `source` names (a short name of `OFFICIAL_CHECKPOINTS`, `-` and `_` alike, or a URL), or `None` for a
    local path."""
    files = {name.replace("_", "-"): file for name, file in OFFICIAL_CHECKPOINTS.items()}
    name = source.lower().replace("_", "-")
    if name in files:
        return f"{RELEASE_URL}/{files[name]}"
    if urlparse(source).scheme in _URL_SCHEMES:
        return source
    return None


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_checkpoint(
    source: str, cache_dir: str | os.PathLike | None = None, sha256: str | None = None, progress: bool = True
) -> Path:
    """A local checkpoint for `source`: a path as it is, or the cached download of a URL / short name.

    Raises `CheckpointDownloadError` when the download fails (naming the file to fetch by hand and where to put it)
    or when the file does not start with the `sha256` digest given.
    """
    url = checkpoint_url(source)
    if url is None:
        return Path(source)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / Path(urlparse(url).path).name
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        logger.info("Downloading %s to %s.", url, target)
        try:
            torch.hub.download_url_to_file(url, str(target), hash_prefix=sha256, progress=progress)
        except (URLError, OSError) as error:
            raise CheckpointDownloadError(
                f"cannot download {url} ({getattr(error, 'reason', error)}); download it by hand and put it at "
                f"{target}, or pass --checkpoint /path/to/{target.name}"
            ) from error
        except RuntimeError as error:  # torch.hub's hash mismatch (the partial file is removed)
            raise CheckpointDownloadError(f"{url}: {error}") from error
    digest = sha256_of(target)
    if sha256 is not None and not digest.startswith(sha256.lower()):
        raise CheckpointDownloadError(
            f"{target}: sha256 {digest} does not start with the expected {sha256}; delete it and download again"
        )
    logger.info("Using %s (sha256 %s).", target, digest)
    return target


__all__ = [
    "OFFICIAL_CHECKPOINTS",
    "RELEASE_URL",
    "CheckpointDownloadError",
    "checkpoint_url",
    "default_cache_dir",
    "fetch_checkpoint",
    "sha256_of",
]
