"""Regenerate the demo's bundled files in src/tevit_hf/assets/.

    python scripts/make_demo_assets.py                         # the sample video + its ground truth
    python scripts/make_demo_assets.py --model-dir outputs/synthetic_model   # also bundle a trained demo model
    python scripts/make_demo_assets.py --model-dir outputs/synthetic_model --bfloat16 --num-frames 8

The sample video comes from the synthetic generator with `tevit_hf.commands.demo.DEMO_SAMPLE_SPEC` (a seed the demo
model's training data does not use). A model is bundled only if its files total less than 10 MB.
"""

import argparse
import sys

from tevit_hf.commands.demo import make_demo_assets


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip())
    parser.add_argument("--model-dir", help="trained demo model to bundle (config, safetensors, processor)")
    parser.add_argument(
        "--bfloat16", action="store_true", help="store the bundled weights in bfloat16 (it still runs in float32)"
    )
    parser.add_argument("--skip-sample", action="store_true", help="keep the current sample video")
    parser.add_argument("--seed", type=int, help="generator seed of the sample video")
    parser.add_argument("--num-frames", type=int, help="frames of the sample video")
    parser.add_argument("--num-classes", type=int, help="shape classes (default: the model's)")
    args = parser.parse_args()
    overrides = {
        key: value
        for key, value in {
            "seed": args.seed,
            "num_frames": args.num_frames,
            "num_classes": args.num_classes,
        }.items()
        if value is not None
    }
    weights_dtype = "bfloat16" if args.bfloat16 else None
    sys.exit(
        make_demo_assets(
            model_dir=args.model_dir, write_sample=not args.skip_sample, weights_dtype=weights_dtype, **overrides
        )
    )
