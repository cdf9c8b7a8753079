"""Blocks the segmentation heads share.

:func:`conv_over_concat` is ``ConvBNReLU(Concatenate(inputs))`` written as one conv per input, summed
(a conv over stacked channels is the sum of convs over each part, with the same kernel split by
input). The QAT graph then needs no ``Concatenate``: TF-MOT's ``quantize_apply`` (0.8.1) can reorder a
concatenation's inputs (measured on the FFNet head: the un-resized branch moved last, cosine 0.26 to
float), which breaks the conv after it; additions do not care about order.
"""

from __future__ import annotations

from vision_core.backend import keras
from vision_core.layers.conv import BN_EPSILON, BN_MOMENTUM, apply_activation


def conv_over_concat(inputs: list, filters: int, kernel_size: int = 1, *, name: str, activation: str | None = "relu"):
    """``activation(BN(Conv(Concatenate(inputs))))`` as ``activation(BN(sum_i Conv_i(inputs[i])))``.

    Layers: ``{name}_conv{i}`` (no bias), ``{name}_add{i}`` (chained binary adds: int8 ADD, not ADD_N),
    ``{name}_bn``, ``{name}_act``.
    """
    parts = [
        keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        for i, x in enumerate(inputs)
    ]
    x = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        x = keras.layers.Add(name=f"{name}_add{i}")([x, part])
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return apply_activation(x, activation, f"{name}_act")
