"""ESPCN (Shi et al., 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network") and its wider/deeper variants.

Every feature is computed at low resolution: ``len(features)`` convolutions (kernel sizes ``kernels``,
``same`` padding, ``activation`` after each), then one convolution to ``scale^2 * channels`` maps and
a depth-to-space by ``scale`` (the sub-pixel convolution). The paper's model is ``features = (64, 32)``,
``kernels = (5, 3, 3)``, tanh. Fully convolutional: ``input_size = None`` takes any size, and
weights copy by variable path between models of any input size (:func:`at_input_size`).

Input: float32 ``[B, h, w, C]`` in ``pixels / 255`` (C = 1: the BT.601 Y channel; 3: RGB); output:
``sr_image`` float32 ``[B, h * scale, w * scale, C]`` in the same units (unclipped while training;
the shipped model clips to [0, 1], :func:`shipped_model`).
"""

from __future__ import annotations

from collections.abc import Sequence

from vision_core.backend import keras
from vision_core.layers.depth_to_space import DepthToSpace

OUTPUT_NAME = "sr_image"
ACTIVATIONS = ("tanh", "relu")


def build_espcn(
    scale: int = 3,
    channels: int = 1,
    features: Sequence[int] = (64, 32),
    kernels: Sequence[int] = (5, 3, 3),
    activation: str = "tanh",
    input_size: Sequence[int] | None = None,
    residual: bool = False,
    name: str | None = None,
):
    """The ESPCN model (see the module docstring); ``input_size``: ``(h, w)`` or None (any size).

    ``residual``: add the input, repeated over the ``scale^2`` sub-pixel positions, to the sub-pixel
    convolution, so the network learns the difference from nearest-neighbour upscaling (not in the
    paper; it converges in far fewer steps). Int8: a CONCATENATION and an ADD.
    """
    if len(kernels) != len(features) + 1:
        raise ValueError(f"kernels {tuple(kernels)} needs one size per feature layer {tuple(features)} plus one")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: expected one of {', '.join(ACTIVATIONS)}")
    if scale < 2:
        raise ValueError(f"scale must be 2 or more, got {scale}")
    height, width = input_size if input_size is not None else (None, None)
    inputs = keras.Input((height, width, channels), name="lr_image")
    x = inputs
    for i, (filters, kernel) in enumerate(zip(features, kernels)):
        x = keras.layers.Conv2D(filters, kernel, padding="same", name=f"feature{i + 1}")(x)
        # its own layer: QAT calibrates a fused tanh's input range from the layer's (post-tanh) output
        x = keras.layers.Activation(activation, name=f"feature{i + 1}_{activation}")(x)
    x = keras.layers.Conv2D(scale * scale * channels, kernels[-1], padding="same", name="subpixel_conv")(x)
    if residual:
        repeated = keras.layers.Concatenate(name="input_repeat")([inputs] * (scale * scale))
        x = keras.layers.Add(name="nearest_residual")([x, repeated])
    outputs = DepthToSpace(scale, name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=name or f"espcn_x{scale}")


def at_input_size(model, height: int | None, width: int | None):
    """``model`` (either Keras flavour) called on a fixed ``(height, width)`` input (None: any size): the same
    weights, a batch-1 graph for export."""
    channels = model.inputs[0].shape[-1]
    inputs = keras.Input((height, width, channels), batch_size=1, name="lr_image")
    return keras.Model(inputs, model(inputs), name=model.name)


def shipped_model(model, height: int | None, width: int | None):
    """The exported form: ``model`` at a fixed input size (None: any) with its output clipped to [0, 1] (a
    uint8 output is then the pixels themselves)."""
    fixed = at_input_size(model, height, width)
    clipped = keras.layers.ReLU(max_value=1.0, name=OUTPUT_NAME)(fixed.outputs[0])
    return keras.Model(fixed.inputs, clipped, name=model.name)
