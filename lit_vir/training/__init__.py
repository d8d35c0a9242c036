"""The Lightning layer: the LightningModule, schedules and callbacks that wrap the plain models."""

from lit_vir.training.mixing import BatchMixing
from lit_vir.training.module import ImageClassifier
from lit_vir.training.ridge import RidgeClassifier
from lit_vir.training.schedulers import WarmupCosineLR

__all__ = ["BatchMixing", "ImageClassifier", "RidgeClassifier", "WarmupCosineLR"]
