"""Plain PyTorch models: reservoir topology, ViR and the ViT family. No Lightning in here."""

from lit_vir.models.counting import ParameterCount, count_parameters
from lit_vir.models.reservoir import Reservoir
from lit_vir.models.vir import ViR
from lit_vir.models.vit import VisionTransformer, vit_base, vit_small

__all__ = ["ParameterCount", "Reservoir", "ViR", "VisionTransformer", "count_parameters", "vit_base", "vit_small"]
