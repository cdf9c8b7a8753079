"""keras.applications ImageNet weights for the backbones that share its layout.

``resnet50`` / ``resnet101`` with ``variant="keras"`` and ``mobilenet_v2`` (alpha 0.35, 0.5,
0.75, 1.0, 1.3, 1.4) name their layers as keras.applications does, so weights copy across by
variable path. ``"imagenet"`` means the file keras.applications keeps in its cache
(``~/.keras/models``, or ``$KERAS_HOME/models``): read from there when present, otherwise
fetched by keras' own downloader (the keras.applications constructor with
``weights="imagenet"``: its URL, its hash check, its cache) only when the caller allows it
(``download=True``). Any other source is the path of such a file (keras.applications' legacy
``.h5``, or a ``.weights.h5`` of a keras.applications model).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vision_core.backend import keras
from vision_core.storage.weights import assign_by_path, weights_by_path

_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "mobilenet_v2": "MobileNetV2",
}
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # the widths keras.applications publishes
MOBILENET_V2_ROWS = (96, 128, 160, 192, 224)  # its input sizes; any other size gets the 224 file, as keras does
IMAGENET_BACKBONES = "resnet50 / resnet101 (variant keras), mobilenet_v2 (alpha 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)"


class ImagenetUnavailable(FileNotFoundError):
    """The ImageNet file is not in the keras cache and could not be (or was not allowed to be) downloaded."""


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_rows(backbone: str, rows: int) -> int:
    """The input size of the keras.applications file used for a ``rows``-pixel input: MobileNetV2 has one
    file for each of five sizes, ResNet one (224)."""
    return rows if backbone == "mobilenet_v2" and rows in MOBILENET_V2_ROWS else 224


def imagenet_file_name(backbone: str, include_top: bool, alpha: float = 1.0, rows: int = 224) -> str:
    """The file name keras.applications caches for ``backbone``'s ImageNet weights."""
    if backbone in ("resnet50", "resnet101"):
        return f"{backbone}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"
    if backbone == "mobilenet_v2":
        top = "" if include_top else "_no_top"
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{imagenet_rows(backbone, rows)}{top}.h5"
    raise ValueError(f"no keras.applications weights for {backbone!r}; available: {IMAGENET_BACKBONES}")


def keras_layout_problem(backbone: str, options: dict) -> str | None:
    """Why ``build_backbone(backbone, **options)`` cannot take keras.applications' weights, or None if it can."""
    if backbone in ("resnet50", "resnet101"):
        if options.get("variant") != "keras":
            variant = options.get("variant", "v1.5")
            return (
                f"{backbone} variant {variant!r} is not keras.applications' layout (set the backbone variant to keras)"
            )
        return None
    if backbone == "mobilenet_v2":
        alpha = float(options.get("alpha", 1.0))
        if alpha not in MOBILENET_V2_ALPHAS:
            return f"mobilenet_v2 alpha {alpha:g} has no keras.applications weights"
        return None
    return f"backbone {backbone!r} has no keras.applications weights"


def keras_applications_weights(
    backbone: str,
    source: str | os.PathLike = "imagenet",
    *,
    alpha: float = 1.0,
    include_top: bool = False,
    rows: int = 224,
    download: bool = False,
) -> tuple[Path, dict[str, np.ndarray]]:
    """``(file, {variable path: array})`` of keras.applications' ``backbone`` from ``source``.

    ``source``: ``"imagenet"`` (the keras cache; downloaded by keras when absent and ``download``)
    or a file path. ``rows``: the input size the weights are for (MobileNetV2 has one file per
    size). Raises :class:`ImagenetUnavailable` naming the expected file when it cannot be had.
    """
    if backbone not in _APPLICATIONS:
        raise ValueError(f"no keras.applications weights for {backbone!r}; available: {IMAGENET_BACKBONES}")
    rows = imagenet_rows(backbone, rows)
    builder = getattr(keras.applications, _APPLICATIONS[backbone])
    kwargs = {"alpha": alpha} if backbone == "mobilenet_v2" else {}
    kwargs.update(include_top=include_top, input_shape=(rows, rows, 3))
    path = keras_cache_dir() / imagenet_file_name(backbone, include_top, alpha, rows)
    if str(source) != "imagenet":
        path = Path(source)
    elif not path.is_file() and download:
        try:
            reference = builder(weights="imagenet", **kwargs)  # keras fetches the file into its cache
        except Exception as error:  # keras' downloader raises bare Exceptions (URL, HTTP, hash)
            raise ImagenetUnavailable(
                f"{path}: ImageNet weights for {backbone} are not in the keras cache and keras could not "
                f"download them ({error})"
            ) from None
        return path, weights_by_path(reference)
    if not path.is_file():
        raise ImagenetUnavailable(
            f"{path}: ImageNet weights for {backbone} not found; place keras.applications' file there or pass its path"
        )
    reference = builder(weights=None, **kwargs)
    reference.load_weights(str(path))
    return path, weights_by_path(reference)


def load_keras_applications_weights(
    model, backbone: str, source: str | os.PathLike = "imagenet", *, alpha: float = 1.0, download: bool = False
) -> Path:
    """Copy keras.applications weights from ``source`` into ``model``; returns the file used.

    ``model`` is a suite backbone built with the keras.applications layout (features or a
    1000-class head). Nothing is downloaded unless ``download``; an absent file raises
    :class:`ImagenetUnavailable` (a ``FileNotFoundError``) naming it.
    """
    include_top = "predictions" in {layer.name for layer in model.layers}
    rows = int(model.inputs[0].shape[1])
    path, weights = keras_applications_weights(
        backbone, source, alpha=alpha, include_top=include_top, rows=rows, download=download
    )
    assign_by_path(model, weights)
    return path
