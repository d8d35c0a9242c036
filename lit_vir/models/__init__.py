"""Plain PyTorch models: reservoir topology, ViR and the ViT family. No Lightning in here."""

from lit_vir.models.baselines import PixelLinear, PixelMLP, SmallCNN
from lit_vir.models.counting import ParameterCount, count_parameters
from lit_vir.models.mobilevit import (
    EXMOBILEVIT_BACKBONE,
    MobileViT,
    exmobilevit_s,
    mobilevit_s,
    mobilevit_xs,
    mobilevit_xxs,
)
from lit_vir.models.reservoir import Reservoir
from lit_vir.models.revit import ReViT, revit_base, revit_small
from lit_vir.models.timm_model import TimmModel
from lit_vir.models.vir import ViR
from lit_vir.models.vit import VisionTransformer, vit_base, vit_small
from lit_vir.models.vit_slim import SearchableViT, SlimViT, slim
from lit_vir.models.vitae import ViTAEStage, ViTAEv2, vitae_v2_28, vitae_v2_32, vitae_v2_s

__all__ = [
    "EXMOBILEVIT_BACKBONE",
    "MobileViT",
    "ParameterCount",
    "PixelLinear",
    "PixelMLP",
    "ReViT",
    "Reservoir",
    "SearchableViT",
    "SlimViT",
    "SmallCNN",
    "TimmModel",
    "ViR",
    "ViTAEStage",
    "ViTAEv2",
    "VisionTransformer",
    "count_parameters",
    "exmobilevit_s",
    "mobilevit_s",
    "mobilevit_xs",
    "mobilevit_xxs",
    "revit_base",
    "revit_small",
    "slim",
    "vit_base",
    "vit_small",
    "vitae_v2_28",
    "vitae_v2_32",
    "vitae_v2_s",
]
