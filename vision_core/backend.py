"""The one place that decides which Keras the whole process uses.

Two flavours share one code base:

* ``keras3`` (default): Keras 3 on TensorFlow. Float training, keras-cv, evaluation
  and export of float / post-training-quantized models.
* ``tf_keras``: Keras 2 (``tf_keras``) plus TF-MOT. Quantization-aware training only,
  run in its own process and started from a float Keras 3 checkpoint.

The flavour comes from the environment variable ``VISION_KERAS`` and is fixed at the
first import of this module. Importing TF-MOT sets ``TF_USE_LEGACY_KERAS=1`` in the
process environment (children inherit it) and repoints ``tf.keras``; the Keras 3
flavour therefore clears that variable before TensorFlow is imported, and refuses to
load TF-MOT. ``keras-cv`` fails to import after TF-MOT, so it is only offered in the
Keras 3 flavour.

Both flavours also get :mod:`vision_core.training.conv_backprop`'s faster ``Conv2D`` input gradient.

Everything else in the suite takes ``keras`` (and ``tf``) from here::

    from vision_core.backend import keras, tf
"""

from __future__ import annotations

import os

FLAVOUR_VARIABLE = "VISION_KERAS"
KERAS3 = "keras3"
TF_KERAS = "tf_keras"
FLAVOURS = (KERAS3, TF_KERAS)

FLAVOUR = os.environ.get(FLAVOUR_VARIABLE, KERAS3)
if FLAVOUR not in FLAVOURS:
    raise ValueError(f"{FLAVOUR_VARIABLE}={FLAVOUR!r}: expected one of {', '.join(FLAVOURS)}")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if FLAVOUR == TF_KERAS:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
else:
    os.environ.pop("TF_USE_LEGACY_KERAS", None)

import tensorflow as tf  # noqa: E402, F401  (the environment above must be set first; re-exported)

if FLAVOUR == TF_KERAS:
    import tf_keras as keras  # noqa: E402, F401  (re-exported)
else:
    import keras  # noqa: E402, F401  (re-exported)


def is_keras3() -> bool:
    return FLAVOUR == KERAS3


def tfmot():
    """TF-MOT's module; only in the ``tf_keras`` flavour, where QAT runs."""
    if FLAVOUR != TF_KERAS:
        raise RuntimeError(
            f"TF-MOT needs the tf_keras flavour: run with {FLAVOUR_VARIABLE}={TF_KERAS} "
            "(QAT runs in its own process; see vision_core.quant)"
        )
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def keras_cv():
    """keras-cv's module; only in the Keras 3 flavour (it fails to import after TF-MOT)."""
    if FLAVOUR != KERAS3:
        raise RuntimeError("keras-cv is only available in the keras3 flavour")
    import keras_cv as module

    return module


def flavour_environment(flavour: str) -> dict[str, str]:
    """A copy of this process's environment that makes a child process use ``flavour``."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown Keras flavour {flavour!r}: expected one of {', '.join(FLAVOURS)}")
    env = dict(os.environ)
    env[FLAVOUR_VARIABLE] = flavour
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


# Last, so it finds this module complete: importing it registers the faster Conv2D input gradient.
import vision_core.training.conv_backprop  # noqa: E402, F401
