"""Backbones shared by every task: ``build_backbone(name, input_shape, num_classes=None, **options)``."""

from vision_core.backbones.registry import (
    FEATURE_NAMES,
    FEATURE_STRIDES,
    backbone_options,
    build_backbone,
    list_backbones,
    register_backbone,
)

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_STRIDES",
    "backbone_options",
    "build_backbone",
    "list_backbones",
    "register_backbone",
]
