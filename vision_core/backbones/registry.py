"""Backbone registry: one decorator to register, one function to build.

A backbone builder is a plain function ``fn(input_shape, num_classes=None, **options)``
returning a functional Keras model; its registered name is the function's name unless
given. With ``num_classes=None`` the model outputs a dict of multi-scale features
``{"C2": stride 4, "C3": stride 8, "C4": stride 16, "C5": stride 32}`` (NHWC float
tensors); with ``num_classes=N`` it outputs the ImageNet-style head's ``logits`` of
shape ``(batch, N)`` (or probabilities with ``classifier_activation="softmax"``).
"""

from __future__ import annotations

from collections.abc import Callable

_BACKBONES: dict[str, Callable] = {}

FEATURE_NAMES = ("C2", "C3", "C4", "C5")
FEATURE_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}


def register_backbone(fn: Callable | None = None, *, name: str | None = None):
    """Register ``fn`` under ``name`` (default: the function's name)."""

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _BACKBONES:
            raise ValueError(f"backbone {key!r} is already registered")
        _BACKBONES[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_backbones() -> list[str]:
    _load_all()
    return sorted(_BACKBONES)


def build_backbone(name: str, input_shape=(224, 224, 3), num_classes: int | None = None, **options):
    """Build the backbone ``name`` (see the module docstring for its outputs)."""
    _load_all()
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(sorted(_BACKBONES))}")
    return _BACKBONES[name](tuple(input_shape), num_classes=num_classes, **options)


LAYOUTS = ("tf", "torch")


def backbone_options(backbone: str, alpha: float = 1.0, variant: str | None = None, layout: str = "tf") -> dict:
    """The build options of an app's backbone settings: MobileNetV2's width ``alpha`` (ignored by the other
    backbones), a ResNet layout ``variant`` (``ValueError`` for another backbone) and the ``layout`` of its
    padding: ``tf`` ("same" padding, keras' batch-norm epsilon) or ``torch`` (as PyTorch pads, so a timm or
    official PyTorch checkpoint computes exactly what it computes there: ``torch_layouts.exact_source_options``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"backbone_layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    options: dict = {"alpha": alpha} if backbone == "mobilenet_v2" else {}
    if variant is not None:
        if not backbone.startswith("resnet"):
            raise ValueError(f"backbone_variant={variant!r} is a ResNet option; {backbone!r} has no variants")
        options["variant"] = variant
    if layout == "torch":
        from vision_core.backbones.torch_layouts import exact_source_options

        options.update(exact_source_options(backbone))
    return options


def _load_all() -> None:
    # Importing the modules runs their @register_backbone decorators.
    from vision_core.backbones import emov2, mobilenet_v2, resnet, revcol, vovnet  # noqa: F401
