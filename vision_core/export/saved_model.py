"""Keras 3 model -> a new version of a TF Serving SavedModel, ``<root>/<model_name>/<version>/``.

Every export carries two signatures (outputs are a dict by name in both):

* ``serving_default(image: float32[N, H, W, C])``: the model's own preprocessed input,
  any batch size, H, W, C fixed by the model.
* ``serving_bytes(image_bytes: string[N])``: encoded images (JPEG, PNG; also BMP and the
  first frame of a GIF) decoded in the graph, resized to H x W, normalised, then the model.
  The input name ends in ``_bytes`` because TF Serving's REST API decodes
  ``{"b64": ...}`` values only for such inputs. Only for an image model (C = 1 or 3): a model whose
  input has other channels (a volume classifier's ``[H, W, D]`` slices) has no encoded-image form and
  carries ``serving_default`` alone.

Decoding matches the suite's OpenCV readers: JPEG goes through ``decode_jpeg`` with the
accurate integer IDCT, which equals ``cv2.imdecode`` pixel for pixel (the default fast
IDCT of ``tf.io.decode_image`` differs by up to ~8 grey levels); other formats go through
``tf.io.decode_image``. Channels come out RGB (or grey for C=1). Resizing is
``tf.image.resize`` bilinear (half-pixel centres, no antialiasing), which equals
``cv2.resize`` with ``INTER_LINEAR`` on float32 pixels; an image already at H x W passes
through unchanged.

Versions count up from 1 and are never overwritten. An export is written into a hidden
temp folder beside the versions (TF Serving ignores non-integer names) and renamed into
place when complete, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision_core.backend import is_keras3, tf
from vision_core.export.serving_config import check_model_name, next_version
from vision_core.quant.convert import input_spec, output_dict, save_signatures

BYTES_INPUT_NAME = "image_bytes"


@dataclass(frozen=True)
class Normalization:
    """Pixels -> model input: ``(pixels - mean) / std``.

    ``pixels`` are float32 RGB values in 0..255 (numpy or tf, shape ``[..., C]``);
    ``mean`` and ``std`` are in pixel units, one number or one per channel.
    """

    mean: float | Sequence[float] = 127.5
    std: float | Sequence[float] = 127.5

    def __call__(self, pixels):
        return (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


# uint8 RGB -> [-1, 1], the same mapping as vision_core.data.synthetic.normalize.
MINUS_ONE_TO_ONE = Normalization(mean=127.5, std=127.5)


def decode_and_resize(image_bytes: tf.Tensor, size: tuple[int | None, int | None], channels: int) -> tf.Tensor:
    """Encoded images ``string[N]`` -> float32 pixels ``[N, H, W, channels]`` in 0..255 (see module docstring);
    ``size`` ``(None, None)``: each image at its own size, which all images must share."""

    def decode_one(data):
        image = tf.cond(
            tf.io.is_jpeg(data),
            lambda: tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=channels, expand_animations=False),
        )
        image.set_shape((None, None, channels))
        if None in size:
            return tf.cast(image, tf.float32)
        return tf.image.resize(image, size, method="bilinear")

    return tf.map_fn(decode_one, image_bytes, fn_output_signature=tf.TensorSpec((*size, channels), tf.float32))


def export_saved_model(
    model,
    root: str | os.PathLike = "saved_models",
    model_name: str | None = None,
    *,
    preprocess: Callable = MINUS_ONE_TO_ONE,
    postprocess: Callable[[dict], dict] | None = None,
    decode_channels: int | None = None,
    any_size: bool = False,
) -> Path:
    """Write ``model`` as the next version of ``<root>/<model_name>/``; returns the version folder.

    ``model``: a Keras 3 model with one fixed-size input ``(H, W, C)``; ``serving_bytes`` when the images
    are decoded to 1 or 3 channels. With ``any_size`` H and W may be None: ``serving_default`` then takes
    any size and ``serving_bytes`` feeds the images at their own size (one size per request).
    ``model_name`` defaults to ``model.name``. ``preprocess`` maps decoded float32 pixels
    ``[N, H, W, C]`` (0..255) to the model's input in ``serving_bytes``; it must match
    training (default: ``MINUS_ONE_TO_ONE``). ``postprocess`` maps the model's output
    dict ``{name: tensor}`` to the served output dict in both signatures (e.g. box
    decoding and NMS); it must be built from TF ops and constants only, since nothing
    it holds is tracked as a variable. ``decode_channels``: the channels images are
    decoded to (default the model's); ``preprocess`` then maps them to the model's
    (e.g. RGB to the BT.601 Y of a one-channel super-resolution model). Afterwards,
    refresh ``models.config`` with
    :func:`vision_core.export.serving_config.write_models_config`.
    """
    if not is_keras3():
        raise RuntimeError("SavedModel export for serving runs in the keras3 flavour")
    model_name = check_model_name(model_name or model.name)
    spec = input_spec(model, batch_size=None, any_size=any_size)
    height, width, channels = spec.shape[1:]
    decode_channels = decode_channels or channels

    def serve(image):
        outputs = output_dict(model, model(image, training=False))
        return postprocess(outputs) if postprocess else outputs

    def serve_bytes(image_bytes):
        return serve(preprocess(decode_and_resize(image_bytes, (height, width), decode_channels)))

    model_dir = Path(root) / model_name
    new_model_dir = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".export-"))
    try:
        signatures = {"serving_default": tf.function(serve, input_signature=[spec]).get_concrete_function()}
        if decode_channels in (1, 3):
            bytes_spec = tf.TensorSpec((None,), tf.string, name=BYTES_INPUT_NAME)
            serve_bytes_function = tf.function(serve_bytes, input_signature=[bytes_spec])
            signatures["serving_bytes"] = serve_bytes_function.get_concrete_function()
        save_signatures(model, staging, signatures)
        version_dir = model_dir / str(next_version(model_dir))
        # rename refuses a non-empty target: a version taken meanwhile fails this export, never overwritten.
        os.rename(staging, version_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if new_model_dir:
            with contextlib.suppress(OSError):  # rmdir only removes it if still empty
                model_dir.rmdir()
        raise
    return version_dir
