"""The contract between the suite's custom layers and quantization-aware training.

TF-MOT only knows Keras' built-in layers. A custom layer subclasses
:class:`QuantizableLayer` and declares, in flavour-free terms, what QAT must fake-quantize:

* ``quantized_weights``: attribute paths of the kernels used in ``call`` (``"kernel"``,
  or ``"qkv.kernel"`` for a sublayer's); ``call`` must read them through those
  attributes, since QAT replaces them with fake-quantized tensors.
* ``quantize_output``: fake-quantize the layer's output (ranges learnt by EMA).
* ``qat_options``: constructor options QAT gives the layer's clone, for fake quantization
  inside ``call`` (:class:`~vision_core.layers.normalization.LayerNorm`: ``quantize_centred``).
* ``input_grid_ranges()``: the clone's ``(min, max)`` range variables of inner tensors
  that must be quantized on the int8 grid of the layer's input; QAT sets them to the
  producing layer's output range (:func:`vision_core.quant.qat.tie_same_scale_ranges`).
* ``scale_weight``: the name of the weight when the layer computes ``x * weight`` per
  channel (last axis); before QAT it folds into a conv or dense layer it alone reads
  (:func:`vision_core.quant.fold.fold_for_int8`).

:mod:`vision_core.quant.qat` turns the declaration into a TF-MOT ``QuantizeConfig``.
Every custom layer also round-trips through ``get_config`` (TF-MOT clones the model)
and is registered as serializable in the ``vision`` package.
"""

from __future__ import annotations

from vision_core.backend import is_keras3, keras


def serializable(cls):
    """Register ``cls`` with Keras' serialization under the ``vision`` package."""
    if is_keras3():
        return keras.saving.register_keras_serializable(package="vision")(cls)
    return keras.utils.register_keras_serializable(package="vision")(cls)


CUSTOM_LAYERS: dict[str, type] = {}


def custom_layer(cls):
    """Class decorator: serializable, and listed for QAT's scope."""
    CUSTOM_LAYERS[cls.__name__] = cls
    return serializable(cls)


class QuantizableLayer(keras.layers.Layer):
    quantized_weights: tuple[str, ...] = ()
    quantize_output: bool = True
    qat_options: dict = {}
    scale_weight: str | None = None

    def input_grid_ranges(self) -> list:
        return []
