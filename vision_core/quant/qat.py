"""Quantization-aware training with TF-MOT (tf_keras flavour only).

:func:`quantize_model` wraps a tf_keras model for QAT: Keras built-ins get TF-MOT's
default 8-bit configs; the suite's custom layers (:class:`QuantizableLayer`) get a
config built from their declaration; built-ins TF-MOT does not know (``Multiply``,
``Activation("hard_swish")``, resizing, ...) get their output fake-quantized.

:func:`calibrate_ranges` initialises every activation range from calibration data
before fine-tuning: TF-MOT starts them at +-6 with an EMA of 0.999, so a short
fine-tune would otherwise end with ranges that never saw the data. Weight ranges, also
+-6 at first, are set from the weights by :func:`quantize_model` (:func:`set_weight_ranges`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from vision_core.backend import keras, tf, tfmot
from vision_core.layers.quantizable import CUSTOM_LAYERS, QuantizableLayer
from vision_core.quant.qat_job import RANGE_STATISTICS

_tfmot = tfmot()
_qkeras = _tfmot.quantization.keras
_registry = _qkeras.default_8bit.Default8BitQuantizeRegistry()
_ACTIVATION_RANGE_PREFIXES = ("output_", "post_activation_")
_ACTIVATIONS_TFMOT_KNOWS = {"relu", "relu6", "swish", "gelu", "linear", "softmax", "sigmoid", "tanh"}


def _weight_quantizer():
    return _qkeras.quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True, narrow_range=True)


def _output_quantizer():
    return _qkeras.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


def _resolve(layer, path: str):
    owner_path, _, attribute = path.rpartition(".")
    owner = functools.reduce(getattr, owner_path.split("."), layer) if owner_path else layer
    return owner, attribute


class DeclaredQuantizeConfig(_qkeras.QuantizeConfig):
    """Fake-quantize the weights a layer declares (per tensor) and, optionally, its output."""

    def __init__(self, weight_paths=(), quantize_output=True):
        self.weight_paths = tuple(weight_paths)
        self.quantize_output = bool(quantize_output)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(*_resolve(layer, p)), _weight_quantizer()) for p in self.weight_paths]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        for path, weight in zip(self.weight_paths, quantize_weights):
            setattr(*_resolve(layer, path), weight)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_output_quantizer()] if self.quantize_output else []

    def get_config(self):
        return {"weight_paths": list(self.weight_paths), "quantize_output": self.quantize_output}


def quantize_config_for(layer):
    """The config the suite gives ``layer``, or ``None`` to leave it to TF-MOT's registry."""
    if isinstance(layer, QuantizableLayer):
        return DeclaredQuantizeConfig(layer.quantized_weights, layer.quantize_output)
    if isinstance(layer, keras.layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        return None if name in _ACTIVATIONS_TFMOT_KNOWS else DeclaredQuantizeConfig()
    # TF-MOT's transforms give a batch norm that follows a conv or dense layer its config.
    if isinstance(layer, (keras.layers.InputLayer, keras.layers.BatchNormalization)) or _registry.supports(layer):
        return None
    return DeclaredQuantizeConfig()


def quantize_scope():
    return _qkeras.quantize_scope({"DeclaredQuantizeConfig": DeclaredQuantizeConfig, **CUSTOM_LAYERS})


_FOLDING_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


def _foldable_batch_norms(model) -> set[str]:
    """Batch norms TF-MOT folds: right after a conv/dense layer whose only consumer they are.

    Only Keras' own class: TF-MOT's folding patterns match the class name, so a subclass
    (:class:`~vision_core.layers.normalization.PreNormBatchNorm`) keeps its own config.
    """
    names = set()
    for layer in model.layers:
        if type(layer) is not keras.layers.BatchNormalization:
            continue
        producers = layer._inbound_nodes[0].inbound_layers
        producer = producers[0] if isinstance(producers, list) and len(producers) == 1 else producers
        if type(producer).__name__ in _FOLDING_LAYERS and len(producer._outbound_nodes) == 1:
            names.add(layer.name)
    return names


def quantize_model(model):
    """A QAT copy of the tf_keras functional ``model`` (weights carried over)."""
    foldable = _foldable_batch_norms(model)

    def annotate(layer):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name not in foldable:
            config = DeclaredQuantizeConfig()
        else:
            config = quantize_config_for(layer)
        options = layer.qat_options if isinstance(layer, QuantizableLayer) else {}
        clone = layer.__class__.from_config({**layer.get_config(), **options})
        if isinstance(layer, keras.layers.InputLayer):
            return clone
        return _qkeras.quantize_annotate_layer(clone, config)

    with quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=annotate)
        for layer, clone in zip(model.layers, annotated.layers):  # a clone may add QAT variables after its own
            own = layer.get_weights()
            clone.set_weights(own + clone.get_weights()[len(own) :])
        qat_model = _qkeras.quantize_apply(annotated)
    check_merge_order(model, qat_model)
    set_weight_ranges(qat_model)
    tie_same_scale_ranges(qat_model)
    return qat_model


_ORDERED_MERGES = ("Concatenate", "Subtract")


def _inbound_names(layer) -> list[str]:
    inbound = layer._inbound_nodes[0].inbound_layers
    return [one.name for one in (inbound if isinstance(inbound, list) else [inbound])]


def check_merge_order(model, qat_model) -> None:
    """Raise if TF-MOT's transforms reordered the inputs of a layer whose result depends on their order.

    TF-MOT 0.8.1's ``quantize_apply`` moves a fused conv-BN-ReLU input of a ``Concatenate`` after the
    others (measured), which silently permutes the channels the next layer reads: a QAT model far from
    its float model. A model must then say the same without the order-sensitive merge (a conv over a
    concatenation as a sum of per-input convs, ``apps/segment/models/blocks.py: conv_over_concat``).
    """
    quantized = {layer.name: layer for layer in qat_model.layers}
    for layer in model.layers:
        if type(layer).__name__ not in _ORDERED_MERGES:
            continue
        twin = quantized.get(f"quant_{layer.name}", quantized.get(layer.name))
        if twin is None:
            continue
        before = _inbound_names(layer)
        after = [name.removeprefix("quant_") for name in _inbound_names(twin)]
        if sorted(before) == sorted(after) and before != after:
            raise RuntimeError(
                f"TF-MOT reordered the inputs of {type(layer).__name__} {layer.name!r} during QAT "
                f"({', '.join(before)} -> {', '.join(after)}): express it without the ordered merge, "
                "e.g. a conv over the concatenation as a sum of per-input convs"
            )


def set_weight_ranges(qat_model) -> int:
    """Set every weight quantizer's range to its weight's current min/max; returns the weights set.

    TF-MOT creates the ranges at +-6 and sets them only in training-mode calls, so without
    this a QAT model used or converted before a training step quantizes its kernels on
    +-6 (cosine 0.4 to float for ResNet-18 features, measured; 0.98-0.999 with it).
    """
    count = 0
    for layer in qat_model.layers:
        for weight, quantizer, quantizer_vars in getattr(layer, "_weight_vars", ()):  # QuantizeWrapperV2's
            quantizer(weight, True, weights=quantizer_vars)  # training mode assigns the range
            count += 1
    return count


def freeze_batch_norms(qat_model) -> int:
    """Make every batch norm of ``qat_model`` non-trainable; returns how many.

    A non-trainable tf_keras batch norm runs in inference mode even in training-mode calls:
    it normalises with the float model's moving statistics and keeps them, and its scale and
    offset stay fixed. A short fine-tune at batch 16 would otherwise replace the moving
    statistics with noisy batch estimates (momentum 0.9: 88 % replaced after 20 steps) and
    move predictions that int8 alone leaves in place (VoVNet-57 on the built-in shapes: 3.25 %
    of its int8 predictions at learning rate 0; benchmarks/README.md, "QAT fine-tune"); freezing them is the
    usual QAT practice (Krishnamoorthi 2018, "Quantizing deep convolutional networks for
    efficient inference").
    """
    count = 0
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)  # QuantizeWrapperV2 holds the original layer
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False
            if inner is not layer:  # QuantizeWrapperV2 keeps its own list of the layer's trainable weights
                frozen = {id(w) for w in inner.weights}
                layer._trainable_weights = [w for w in layer._trainable_weights if id(w) not in frozen]
            count += 1
    return count


def _short_name(variable) -> str:
    """A variable's own name without scope or output index: ``.../conv1/output_max:0`` -> ``output_max``."""
    return variable.name.split("/")[-1].split(":")[0]


def _probe_targets(qat_model) -> dict:
    """Original layer name (``None`` for the model input) -> its activation range variables."""
    targets: dict = {}
    for layer in qat_model.layers:
        if isinstance(layer, _qkeras.QuantizeWrapperV2):
            source, prefixes = layer.layer.name, _ACTIVATION_RANGE_PREFIXES
        elif type(layer).__name__ == "QuantizeLayer":  # not in TF-MOT's public API
            source, prefixes = None, ("",)
        else:
            continue
        for v in layer.weights:
            short = _short_name(v)
            if short.endswith(("_min", "_max")) and short.startswith(prefixes):
                targets.setdefault(source, []).append(v)
    return targets


def _pre_activation_targets(qat_model) -> dict:
    """Original layer name -> the ``pre_activation_`` range variables TF-MOT gives a fused activation it
    quantizes before applying (tanh, sigmoid, softmax, gelu on a conv or dense layer)."""
    targets: dict = {}
    for layer in qat_model.layers:
        if isinstance(layer, _qkeras.QuantizeWrapperV2):
            for v in layer.weights:
                if _short_name(v) in ("pre_activation_min", "pre_activation_max"):
                    targets.setdefault(layer.layer.name, []).append(v)
    return targets


def _pre_activation(layer, inputs):
    """``layer``'s output on ``inputs`` before its fused activation."""
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(inputs, training=False)
    finally:
        layer.activation = activation


def calibrate_ranges(qat_model, float_model, batches: Iterable[np.ndarray], statistic: str = "batch_mean") -> int:
    """Set activation ranges of ``qat_model`` from the min/max seen in ``float_model``: their mean
    over the batches (``"batch_mean"``) or the lowest and highest over all of them (``"min_max"``,
    as the TFLite calibrator of post-training int8 does). A fused activation TF-MOT quantizes before
    applying (a conv's tanh) gets the range of its input, the layer's output before the activation.

    ``float_model`` is the tf_keras model ``qat_model`` was made from; ``batches`` are
    float32 input batches. Returns the number of range variables set.
    """
    if statistic not in RANGE_STATISTICS:
        raise ValueError(f"range statistic {statistic!r}: expected one of {RANGE_STATISTICS}")
    targets = _probe_targets(qat_model)
    pre_targets = _pre_activation_targets(qat_model)
    names = [n for n in targets if n is not None]
    probe = keras.Model(
        float_model.inputs,
        [float_model.get_layer(n).output for n in names] + [float_model.get_layer(n).input for n in pre_targets],
    )
    # the range variables, each group beside the values it quantizes in ``values`` below
    groups = [targets[n] for n in names] + list(pre_targets.values()) + ([targets[None]] if None in targets else [])
    lows: list[list[float]] = [[] for _ in groups]
    highs: list[list[float]] = [[] for _ in groups]
    for batch in batches:
        batch = np.asarray(batch, np.float32)
        probed = probe(batch, training=False)
        probed = probed if isinstance(probed, (list, tuple)) else [probed]
        pre_activations = [
            _pre_activation(float_model.get_layer(n), x) for n, x in zip(pre_targets, probed[len(names) :])
        ]
        values = [*probed[: len(names)], *pre_activations, *([batch] if None in targets else [])]
        for index, value in enumerate(values):
            value = np.asarray(value)
            lows[index].append(value.min())
            highs[index].append(value.max())
    count = 0
    for variables, group_lows, group_highs in zip(groups, lows, highs):
        if not group_lows:
            continue
        if statistic == "batch_mean":
            low, high = float(np.mean(group_lows)), float(np.mean(group_highs))
        else:
            low, high = float(np.min(group_lows)), float(np.max(group_highs))
        low, high = min(low, 0.0), max(high, 0.0)
        for v in variables:
            v.assign(tf.fill(v.shape, low if v.name.split(":")[0].endswith("_min") else high))
            count += 1
    return count


def tie_same_scale_ranges(qat_model) -> int:
    """Copy each producer's output range onto the ranges that must share its int8 grid;
    returns the layers tied.

    The output range of layers that declare ``same_scale_as_input`` (max pools: int8
    ``MAX_POOL_2D`` takes one scale for input and output), and the inner ranges a custom
    layer lists in ``input_grid_ranges()``. Calibration gives a max pool nearly its input's
    range, but a fine-tune moves the two moving averages apart and the converter then
    rejects the op ("violate the same scale constraint"). Call it after calibrating and
    after fine-tuning, before conversion.
    """
    targets = _probe_targets(qat_model)
    tied = 0
    for layer in qat_model.layers:
        if not isinstance(layer, _qkeras.QuantizeWrapperV2):
            continue
        inner = layer.layer
        grid = inner.input_grid_ranges() if isinstance(inner, QuantizableLayer) else []
        own = _output_range(targets.get(inner.name, [])) if getattr(inner, "same_scale_as_input", False) else {}
        ties = grid + ([(own["min"], own["max"])] if own else [])
        if not ties:
            continue
        producers = layer.inbound_nodes[0].inbound_layers
        producer = producers[0] if isinstance(producers, (list, tuple)) else producers
        source = producer.layer.name if isinstance(producer, _qkeras.QuantizeWrapperV2) else None
        ranges = _output_range(targets.get(source, []))
        if not ranges:
            if grid:
                raise ValueError(f"{inner.name}: its input {producer.name} has no int8 output range to share")
            continue
        for low, high in ties:
            low.assign(tf.fill(low.shape, float(np.asarray(ranges["min"]).reshape(-1)[0])))
            high.assign(tf.fill(high.shape, float(np.asarray(ranges["max"]).reshape(-1)[0])))
        tied += 1
    return tied


def _output_range(variables) -> dict:
    """``{"min": v, "max": v}``: the range applied last to a layer's output (``output_`` over
    ``post_activation_``), or the model input's (``quantize_layer_``)."""
    by_name = {_short_name(v): v for v in variables}
    for prefix in ("output_", "post_activation_", "quantize_layer_", ""):
        if f"{prefix}min" in by_name and f"{prefix}max" in by_name:
            return {"min": by_name[f"{prefix}min"], "max": by_name[f"{prefix}max"]}
    return {}


def set_input_range(qat_model, low: float, high: float) -> int:
    """Fix the range of the model's input quantizer to ``[low, high]``; returns the variables set.

    For a uint8 export the input range must be the normalised pixel range exactly (so the
    uint8 input quantization *is* the normalisation); calibration and fine-tuning only see
    the pixels the data happen to hold.
    """
    variables = _probe_targets(qat_model).get(None, [])
    for v in variables:
        v.assign(tf.fill(v.shape, low if v.name.split(":")[0].endswith("_min") else high))
    return len(variables)
