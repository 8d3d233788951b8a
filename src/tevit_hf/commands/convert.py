"""`tevit-hf convert`: an official TeViT checkpoint (mmdet `.pth`) to a Hub folder (logic: `convert_tevit_original_to_hf`)."""

from __future__ import annotations

import argparse
import json
import os

from ..convert_tevit_original_to_hf import DEFAULT_BACKBONE_HEAD_DIM, convert_checkpoint
from ..official_checkpoints import OFFICIAL_CHECKPOINTS, default_cache_dir, fetch_checkpoint


def load_id2label(path: str | os.PathLike) -> dict[int, str]:
    """id2label from a JSON file: an object {"0": "person", ...} or a list of names in class order."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if isinstance(data, list):
        return dict(enumerate(str(name) for name in data))
    if isinstance(data, dict):
        try:
            return {int(index): str(name) for index, name in data.items()}
        except ValueError as error:
            raise ValueError(f"{path}: id2label keys must be integer class ids, got {list(data)[:5]}") from error
    raise ValueError(f"{path}: expected a JSON object or list, got {type(data).__name__}.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="official TeViT or QueryInst .pth (mmdet state_dict): a path, a URL, or the name of a hustvl/Storage "
        f"v1.1.0 file ({', '.join(OFFICIAL_CHECKPOINTS)}), downloaded once into --cache-dir",
    )
    parser.add_argument("--sha256", help="expected sha256 (or a prefix of it) of the downloaded checkpoint")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help=f"where downloaded checkpoints are kept (default $TEVIT_HF_CHECKPOINTS or {default_cache_dir()})",
    )
    parser.add_argument("--output-dir", required=True, help="folder to write (save_pretrained layout)")
    parser.add_argument("--id2label", help="JSON file: {id: name} or a list of class names")
    parser.add_argument("--verify", action="store_true", help="run a forward on a random clip and check outputs")
    parser.add_argument(
        "--no-shift-at-inference",
        action="store_true",
        help="treat every frame as its own clip in the backbone at inference (code that produced the README AP)",
    )
    parser.add_argument(
        "--backbone-num-attention-heads",
        type=int,
        nargs="+",
        help=f"heads per backbone stage (default: width // {DEFAULT_BACKBONE_HEAD_DIM}, the PVTv2 rule)",
    )
    parser.add_argument(
        "--backbone-head-dim",
        type=int,
        default=DEFAULT_BACKBONE_HEAD_DIM,
        help="backbone head width used to derive heads when --backbone-num-attention-heads is not given "
        "(64 for PVTv2-B1..B5, 32 for B0)",
    )
    parser.add_argument("--head-num-attention-heads", type=int, help="heads of the STQI attention (default 8)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    convert_checkpoint(
        fetch_checkpoint(args.checkpoint, args.cache_dir, args.sha256),
        args.output_dir,
        id2label=load_id2label(args.id2label) if args.id2label else None,
        verify=args.verify,
        overwrite=args.overwrite,
        shift_messengers_at_inference=not args.no_shift_at_inference,
        backbone_num_attention_heads=args.backbone_num_attention_heads,
        backbone_head_dim=args.backbone_head_dim,
        head_num_attention_heads=args.head_num_attention_heads,
    )
    return 0


__all__ = ["add_arguments", "load_id2label", "run"]
