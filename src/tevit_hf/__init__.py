"""tevit-hf: TeViT video instance segmentation for Hugging Face Transformers.

Importing the package registers the config, model and processor with the Transformers auto classes, so
`AutoModel.from_pretrained(folder)` works without `trust_remote_code` when `tevit_hf` is installed. Under the
`tevit-hf` console command the import (torch and transformers, several seconds) is deferred until a command runs,
so `tevit-hf --help` answers at once; the public names load on first use either way.
"""

import importlib
import sys
from pathlib import Path


__version__ = "0.1.0"

# Public name -> the module that defines it.
_PUBLIC_NAMES = {
    "OFFICIAL_PRESETS": ".configuration_tevit",
    "PVT_V2_PRESETS": ".configuration_tevit",
    "YOUTUBE_VIS_2019_CLASSES": ".configuration_tevit",
    "TeViTConfig": ".configuration_tevit",
    "TeViTImageProcessor": ".image_processing_tevit",
    "TeViTForVideoInstanceSegmentation": ".modeling_tevit",
    "TeViTModel": ".modeling_tevit",
    "TeViTModelOutput": ".modeling_tevit",
    "TeViTPreTrainedModel": ".modeling_tevit",
    "TeViTVideoInstanceSegmentationOutput": ".modeling_tevit",
    # Importing the pipeline module registers the "video-instance-segmentation" task.
    "VideoInstanceSegmentationPipeline": ".pipeline_tevit",
    "TeViTNearOnlineTracker": ".tracking_tevit",
}
__all__ = [*_PUBLIC_NAMES, "register_auto_classes"]

_registered = False


def register_auto_classes() -> None:
    """Import the public classes and register them with the Transformers auto classes (idempotent).

    With these registrations, `AutoModel` / `AutoImageProcessor` serve a TeViT folder without remote code, and
    `save_pretrained` writes `auto_map` and copies the Hub-set code next to the weights (the model's `save_pretrained`
    adds the pipeline's `custom_pipelines` entry and code), so every saved folder also loads with
    `trust_remote_code=True` where tevit_hf is not installed.
    """
    global _registered
    if _registered:
        return
    for name, module_name in _PUBLIC_NAMES.items():
        globals()[name] = getattr(importlib.import_module(module_name, __name__), name)
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForUniversalSegmentation

    config_class, model_class = globals()["TeViTConfig"], globals()["TeViTForVideoInstanceSegmentation"]
    processor_class = globals()["TeViTImageProcessor"]
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoModelForUniversalSegmentation.register(config_class, model_class, exist_ok=True)
    AutoImageProcessor.register(config_class, image_processor_classes={"pil": processor_class}, exist_ok=True)
    config_class.register_for_auto_class("AutoConfig")
    model_class.register_for_auto_class("AutoModel")
    processor_class.register_for_auto_class("AutoImageProcessor")
    _registered = True


def __getattr__(name: str):
    # Only consulted for names not yet loaded (PEP 562): the deferred import of the `tevit-hf` command.
    if name in _PUBLIC_NAMES:
        register_auto_classes()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if Path(sys.argv[0] if sys.argv else "").stem != "tevit-hf":
    register_auto_classes()
