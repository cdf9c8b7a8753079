"""Detection necks: backbone features ``C3..C5`` in, pyramid levels ``P3..P7`` out.

A neck builder is a plain function on Keras tensors, registered by name::

    @register_neck
    def fpn(features, channels=256, *, prefix="fpn", **options) -> {"P3": ..., "P7": ...}

``features`` maps ``"C3"``, ``"C4"``, ``"C5"`` (extra keys such as ``"C2"`` are ignored) to
NHWC float tensors of strides 8, 16, 32 with static sizes; the result maps ``"P3"``..``"P7"``
to NHWC float tensors of ``channels`` channels at strides 8..128. Every layer's name starts
with ``prefix`` (the neck's name unless given), so two necks can share one graph.

Working on tensors composes with :func:`vision_core.backbones.build_backbone`, whose
functional model exposes its features as ``backbone.output``: :func:`pyramid_model` builds
one flat functional model (backbone layers and neck layers side by side, no nested model), so
variable paths are the layers' own names in both Keras flavours and the backbone's weights
load into it by path unchanged::

    backbone = build_backbone("resnet50", (512, 512, 3))
    model = pyramid_model(backbone, "rcnet")               # image -> {"P3": ..., "P7": ...}
    heads = build_neck("fpn", backbone.output, channels=128)  # or tensors, to build on

:func:`build_pyramid` does both from names (JSON-friendly: the QAT job's builder).

Registered: ``fpn`` (RetinaNet's FPN, :mod:`.fpn`) and ``rcnet`` (RevFP + CSN, :mod:`.rcnet`).
"""

from __future__ import annotations

from collections.abc import Callable

PYRAMID_LEVELS = ("P3", "P4", "P5", "P6", "P7")
PYRAMID_STRIDES = {"P3": 8, "P4": 16, "P5": 32, "P6": 64, "P7": 128}
NECK_INPUTS = ("C3", "C4", "C5")

_NECKS: dict[str, Callable] = {}


def register_neck(fn: Callable | None = None, *, name: str | None = None):
    """Register ``fn`` under ``name`` (default: the function's name)."""

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _NECKS:
            raise ValueError(f"neck {key!r} is already registered")
        _NECKS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_necks() -> list[str]:
    _load_all()
    return sorted(_NECKS)


def build_neck(name: str, features: dict, channels: int = 256, **options) -> dict:
    """Apply the neck ``name`` to ``features`` (see the module docstring); returns ``{"P3": ..., "P7": ...}``."""
    _load_all()
    if name not in _NECKS:
        raise KeyError(f"unknown neck {name!r}; registered: {', '.join(sorted(_NECKS))}")
    missing = [k for k in NECK_INPUTS if k not in features]
    if missing:
        raise ValueError(f"neck {name!r} needs features {list(NECK_INPUTS)}, missing {missing}")
    pyramid = _NECKS[name]({k: features[k] for k in NECK_INPUTS}, channels, **options)
    return {k: pyramid[k] for k in PYRAMID_LEVELS}


def pyramid_model(backbone, neck: str, channels: int = 256, **options):
    """A functional model ``image -> {"P3": ..., "P7": ...}`` of ``backbone`` (a feature model) + ``neck``."""
    from vision_core.backend import keras

    pyramid = build_neck(neck, backbone.output, channels, **options)
    return keras.Model(backbone.input, pyramid, name=f"{backbone.name}_{neck}")


def build_pyramid(
    backbone: str, neck: str, input_shape, channels: int = 256, backbone_options: dict | None = None, **neck_options
):
    """:func:`pyramid_model` from registered names: ``build_backbone(backbone, input_shape)`` + ``neck``."""
    from vision_core.backbones import build_backbone

    features = build_backbone(backbone, tuple(input_shape), **(backbone_options or {}))
    return pyramid_model(features, neck, channels, **neck_options)


def _load_all() -> None:
    # Importing the modules runs their @register_neck decorators.
    from vision_core.necks import fpn, rcnet  # noqa: F401
