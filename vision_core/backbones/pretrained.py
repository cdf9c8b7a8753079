"""keras.applications ImageNet weights for the backbones that share its layout.

``resnet50`` / ``resnet101`` with ``variant="keras"`` and ``mobilenet_v2`` name their
layers as keras.applications does, so weights copy across by variable path. Nothing is
downloaded: ``"imagenet"`` means the file keras.applications keeps in its cache
(``~/.keras/models``, or ``$KERAS_HOME/models``); any other source is a path to such a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from vision_core.backend import keras
from vision_core.storage.weights import assign_by_path, weights_by_path

_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "mobilenet_v2": "MobileNetV2",
}


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_file_name(backbone: str, include_top: bool, alpha: float = 1.0, rows: int = 224) -> str:
    """The file name keras.applications caches for ``backbone``'s ImageNet weights."""
    if backbone in ("resnet50", "resnet101"):
        return f"{backbone}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"
    if backbone == "mobilenet_v2":
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha:g}_{rows}{'' if include_top else '_no_top'}.h5"
    raise ValueError(f"no keras.applications weights for {backbone!r}; available: {', '.join(_APPLICATIONS)}")


def load_keras_applications_weights(
    model, backbone: str, source: str | os.PathLike = "imagenet", *, alpha: float = 1.0
) -> Path:
    """Copy keras.applications weights from ``source`` into ``model``; returns the file used.

    ``model`` is a suite backbone built with the keras.applications layout (features or a
    1000-class head). Raises ``FileNotFoundError`` naming the expected file when absent.
    """
    if backbone not in _APPLICATIONS:
        raise ValueError(f"no keras.applications weights for {backbone!r}; available: {', '.join(_APPLICATIONS)}")
    include_top = "predictions" in {layer.name for layer in model.layers}
    rows = int(model.inputs[0].shape[1])
    if str(source) == "imagenet":
        path = keras_cache_dir() / imagenet_file_name(backbone, include_top, alpha, rows)
    else:
        path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: ImageNet weights for {backbone} not found. Nothing is downloaded at run time; "
            f"place keras.applications' file there or pass its path"
        )
    builder = getattr(keras.applications, _APPLICATIONS[backbone])
    kwargs = {"alpha": alpha} if backbone == "mobilenet_v2" else {}
    reference = builder(weights=None, include_top=include_top, input_shape=tuple(model.inputs[0].shape[1:]), **kwargs)
    reference.load_weights(str(path))
    assign_by_path(model, weights_by_path(reference))
    return path
