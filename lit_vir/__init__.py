"""lit_vir: a Lightning experiment framework for the Vision Reservoir and the ViT variants it is compared with."""

__version__ = "0.1.0"
