"""Build, validate and upload a TeViT model repository to the Hugging Face Hub.

    python scripts/push_to_hub.py --model-dir DIR --model-card model_cards/<variant>.md --repo-id ORG/NAME
    python scripts/push_to_hub.py --model-dir DIR --model-card model_cards/<variant>.md --dry-run

The upload folder holds the safetensors weights, config (with auto_map and the custom pipeline), image processor
config, the self-contained model code, the card as README.md and example outputs on the bundled sample video.
`--dry-run` builds it and validates it (including a load in a fresh Python process without tevit-hf) and sends
nothing. The logic lives in `tevit_hf.commands.push_to_hub`.
"""

import sys

from tevit_hf.commands.push_to_hub import main


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
