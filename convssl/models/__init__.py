"""Model architectures, size presets and loading of local Hugging Face folders."""

from convssl.models.presets import ModelConfig, available_presets, load_preset
from convssl.models.pretext_model import PretextModel, build_pretext_model, load_pretext_model, save_hf_folder

__all__ = [
    "ModelConfig",
    "PretextModel",
    "available_presets",
    "build_pretext_model",
    "load_pretext_model",
    "load_preset",
    "save_hf_folder",
]
