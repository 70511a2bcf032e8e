"""Model architectures, size presets and loading of local Hugging Face folders."""
