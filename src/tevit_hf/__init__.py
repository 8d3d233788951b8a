"""tevit-hf: TeViT video instance segmentation for Hugging Face Transformers.

Importing the package registers the config, model and processor with the Transformers auto classes, so
`AutoModel.from_pretrained(folder)` works without `trust_remote_code` when `tevit_hf` is installed.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForUniversalSegmentation

from .configuration_tevit import OFFICIAL_PRESETS, PVT_V2_PRESETS, YOUTUBE_VIS_2019_CLASSES, TeViTConfig
from .image_processing_tevit import TeViTImageProcessor
from .modeling_tevit import (
    TeViTForVideoInstanceSegmentation,
    TeViTModel,
    TeViTModelOutput,
    TeViTPreTrainedModel,
    TeViTVideoInstanceSegmentationOutput,
)


__version__ = "0.1.0"


def _register_auto_classes() -> None:
    AutoConfig.register(TeViTConfig.model_type, TeViTConfig, exist_ok=True)
    AutoModel.register(TeViTConfig, TeViTForVideoInstanceSegmentation, exist_ok=True)
    AutoModelForUniversalSegmentation.register(TeViTConfig, TeViTForVideoInstanceSegmentation, exist_ok=True)
    AutoImageProcessor.register(TeViTConfig, image_processor_classes={"pil": TeViTImageProcessor}, exist_ok=True)


_register_auto_classes()

__all__ = [
    "OFFICIAL_PRESETS",
    "PVT_V2_PRESETS",
    "YOUTUBE_VIS_2019_CLASSES",
    "TeViTConfig",
    "TeViTForVideoInstanceSegmentation",
    "TeViTImageProcessor",
    "TeViTModel",
    "TeViTModelOutput",
    "TeViTPreTrainedModel",
    "TeViTVideoInstanceSegmentationOutput",
]

# Hub folders: with these, `save_pretrained` writes `auto_map` and copies the self-contained Hub-set code next to the
# weights (the model's `save_pretrained` adds the pipeline's `custom_pipelines` entry and code), so every saved folder
# also loads with `trust_remote_code=True` where tevit_hf is not installed. Where it is installed and imported, the
# registrations above serve AutoModel / AutoImageProcessor without remote code. Importing the pipeline module
# registers the "video-instance-segmentation" task.
TeViTConfig.register_for_auto_class("AutoConfig")
TeViTForVideoInstanceSegmentation.register_for_auto_class("AutoModel")
TeViTImageProcessor.register_for_auto_class("AutoImageProcessor")

from .pipeline_tevit import VideoInstanceSegmentationPipeline  # noqa: E402  (registers the task)
from .tracking_tevit import TeViTNearOnlineTracker  # noqa: E402


__all__ += ["TeViTNearOnlineTracker", "VideoInstanceSegmentationPipeline"]
