"""Fold per-channel scales into the linear layers next to them (before QAT): the same float
function, fewer int8 roundings.

Int8 TFLite rounds every op's output to a range of its own. Two patterns of the suite
compute an affine per-channel map right beside a linear layer, which can absorb it exactly:

* A :class:`~vision_core.layers.normalization.LayerNorm` ends with ``x_hat * gamma + beta``.
  When its only reader is a linear layer applied per position (a 1x1 ``Conv2D`` without
  groups, or a ``Dense``), ``layer(x_hat * gamma + beta)`` is ``layer'(x_hat)`` with
  ``kernel' = gamma[:, None] * kernel`` and ``bias' = bias + beta @ kernel``; the norm keeps
  no scale and shift (``scale_and_shift=False``). ConvNeXt blocks and the RevCol / EMOv2
  heads have it.
* A layer declaring ``scale_weight`` (``x * weight`` per channel: RevCol's layer scale) right
  after a ``Conv2D``, ``Dense`` or ``DepthwiseConv2D`` (multiplier 1) without activation that
  it alone reads multiplies that layer's output channels instead, and leaves the graph.

Works on tf_keras functional models (the QAT job's flavour); layers keep their names.
"""

from __future__ import annotations

import numpy as np

from vision_core.backend import keras
from vision_core.layers.normalization import LayerNorm
from vision_core.layers.quantizable import CUSTOM_LAYERS


def _per_position_linear(layer) -> bool:
    if type(layer) is keras.layers.Dense:
        return True
    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and layer.groups == 1
    )


def _scales_outputs(layer) -> bool:
    """Whether scaling ``layer``'s kernel and bias per output channel scales its outputs the same way."""
    if layer.get_config().get("activation") != "linear":  # act(z) * s is not act(z * s)
        return False
    if type(layer) is keras.layers.DepthwiseConv2D:
        return layer.depth_multiplier == 1
    if type(layer) is keras.layers.Conv2D:
        return layer.groups == 1
    return type(layer) is keras.layers.Dense


def fold_for_int8(model):
    """An equivalent copy of the tf_keras functional ``model`` with every foldable LayerNorm
    scale and shift and every foldable ``scale_weight`` moved into its linear neighbour (weights
    carried over); returns ``(model, {"layer_norms": n, "channel_scales": m})``."""
    config = model.get_config()
    entries = {entry["name"]: entry for entry in config["layers"]}
    readers: dict[str, list[str]] = {}
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for inbound in node:
                readers.setdefault(inbound[0], []).append(entry["name"])
    outputs = {output[0] for output in config["output_layers"]}

    def only_reader(name: str):
        names = readers.get(name, [])
        return model.get_layer(names[0]) if len(names) == 1 and name not in outputs else None

    weights = {layer.name: layer.get_weights() for layer in model.layers}
    removed: dict[str, list] = {}  # folded scale layer -> its inbound entry
    norms = 0
    for layer in model.layers:
        reader = only_reader(layer.name)
        if (
            isinstance(layer, LayerNorm)
            and layer.scale_and_shift
            and reader is not None
            and _per_position_linear(reader)
        ):
            gamma, beta = weights[layer.name]
            kernel, *bias = weights[reader.name]
            matrix = kernel.reshape(-1, kernel.shape[-1])  # (C_in, C_out): 1x1 conv and dense alike
            bias = bias[0] if bias else np.zeros(kernel.shape[-1], kernel.dtype)
            weights[reader.name] = [(gamma[:, None] * matrix).reshape(kernel.shape), bias + beta @ matrix]
            entries[reader.name]["config"]["use_bias"] = True
            entries[layer.name]["config"]["scale_and_shift"] = False
            weights[layer.name] = []
            norms += 1
        scale_weight = getattr(layer, "scale_weight", None)
        nodes = entries[layer.name]["inbound_nodes"]
        if scale_weight and len(nodes) == 1 and len(nodes[0]) == 1:
            producer = model.get_layer(nodes[0][0][0])
            if _scales_outputs(producer) and only_reader(producer.name) is layer:
                scale = getattr(layer, scale_weight).numpy()
                kernel, *bias = weights[producer.name]  # depthwise kernels: (k, k, C, 1)
                kernel_scale = scale[:, None] if type(producer) is keras.layers.DepthwiseConv2D else scale
                weights[producer.name] = [kernel * kernel_scale, *(b * scale for b in bias)]
                removed[layer.name] = nodes[0][0]
    for name in removed:
        config["layers"].remove(entries[name])
        del weights[name]
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for inbound in node:
                if inbound[0] in removed:
                    inbound[:3] = removed[inbound[0]][:3]
    for output in config["output_layers"]:
        if output[0] in removed:
            output[:3] = removed[output[0]][:3]
    folded = keras.Model.from_config(config, custom_objects=CUSTOM_LAYERS)
    for name, values in weights.items():
        folded.get_layer(name).set_weights(values)
    return folded, {"layer_norms": norms, "channel_scales": len(removed)}
