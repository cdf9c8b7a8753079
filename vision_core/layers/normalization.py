"""Normalization layers that convert to accurate all-int8 TFLite graphs, and batch-norm momentum.

* :class:`LayerNorm`: Keras 3's ``LayerNormalization`` lowers to a float ``NEG`` that the
  int8 converter leaves behind silently, so the suite normalises with explicit mean /
  variance ops (MEAN, SUB, MUL, ADD, RSQRT), each of which has an int8 TFLite kernel.
  Its QAT clone fake-quantizes the centred tensor on the input's own int8 grid, so the
  converted SUB is exact instead of rounding every value again to a range of its own, and
  an NHWC norm scales and shifts with one DEPTHWISE_CONV_2D (QAT folds the two into a 1x1
  conv or dense layer that reads the norm: :mod:`vision_core.quant.fold`).
* :class:`PreNormBatchNorm`: a batch norm that does not follow a conv (a block's pre-norm
  on the residual stream). Keras' batch norm lowers to MUL + ADD by per-channel constants,
  and the int8 converter (TF 2.21) gives the MUL's input the MUL's output range when that
  input comes from an ADD or an activation: a residual stream of range +-0.05 feeding a
  batch norm that scales by ~100 is quantized with a step of 0.13, i.e. to all zeros
  (measured in trained EMOv2-1M: int8 top-1 71.75 % against 99.75 % float). This layer
  computes the same function as one 1x1 DEPTHWISE_CONV_2D with bias at inference, which
  the converter quantizes per channel with the input's own range.
"""

from __future__ import annotations

from vision_core.backend import keras, tf
from vision_core.layers.quantizable import QuantizableLayer, custom_layer


def set_batch_norm_momentum(model, momentum: float) -> None:
    """Give every batch norm of ``model`` (a functional model; layers at the top level) ``momentum``."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


@custom_layer
class LayerNorm(QuantizableLayer):
    """Normalise over the last (channel) axis of an NHWC or (B, N, C) tensor, then scale and shift."""

    quantized_weights = ()
    quantize_output = True
    # The converter gives the mean of int8 values their scale, so ``x - mean`` quantized
    # with the input's range is exact; a calibrated range of its own rounds every value again
    # (trained RevCol-S, QAT int8: mean per-norm error 2.58 -> 2.46 %, output rounding alone 1.3 %).
    qat_options = {"quantize_centred": True}

    def __init__(self, epsilon: float = 1e-6, scale_and_shift: bool = True, quantize_centred: bool = False, **kwargs):
        """``scale_and_shift=False``: no ``gamma`` / ``beta`` (folded into the next layer,
        :func:`vision_core.quant.fold.fold_for_int8`). ``quantize_centred`` (QAT's
        clone): fake-quantize ``x - mean`` to ``centred_min`` / ``centred_max``, which QAT sets
        to the input's range (:meth:`input_grid_ranges`)."""
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.scale_and_shift = scale_and_shift
        self.quantize_centred = quantize_centred

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.scale_and_shift:
            self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
            self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        if self.quantize_centred:  # QAT ties both to the input's range (tie_same_scale_ranges)
            self.centred_min = self.add_weight(name="centred_min", shape=(), initializer="zeros", trainable=False)
            self.centred_max = self.add_weight(name="centred_max", shape=(), initializer="zeros", trainable=False)
        super().build(input_shape)

    def input_grid_ranges(self) -> list:
        return [(self.centred_min, self.centred_max)] if self.quantize_centred else []

    def call(self, x):
        centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        if self.quantize_centred:
            centred = tf.quantization.fake_quant_with_min_max_vars(centred, self.centred_min, self.centred_max)
        # Not tf.square: before a conv the converter fuses it into SQUARED_DIFFERENCE and gives
        # ``centred`` the output's int8 range, leaving small inputs about two levels.
        variance = tf.reduce_mean(centred * centred, axis=-1, keepdims=True)
        normalised = centred * tf.math.rsqrt(variance + self.epsilon)
        if not self.scale_and_shift:
            return normalised
        if len(normalised.shape) != 4:
            return normalised * self.gamma + self.beta
        # One per-channel 1x1 depthwise conv with bias: int8 rounds once where MUL then ADD round
        # twice, and each channel's single weight is exact in per-channel int8.
        kernel = tf.reshape(self.gamma, (1, 1, -1, 1))
        return tf.nn.depthwise_conv2d(normalised, kernel, (1, 1, 1, 1), "VALID") + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "scale_and_shift": self.scale_and_shift,
            "quantize_centred": self.quantize_centred,
        }


@custom_layer
class PreNormBatchNorm(keras.layers.BatchNormalization):
    """Keras' batch norm (same variables, training and momentum) whose inference is a 1x1 depthwise conv.

    For NHWC inputs normalised over the last axis; a batch norm right after a conv should
    stay a plain ``BatchNormalization``, which the converter folds into the conv.
    """

    def call(self, inputs, training=None):
        if training and self.trainable:
            return super().call(inputs, training=True)
        scale = tf.math.rsqrt(tf.cast(self.moving_variance, tf.float32) + self.epsilon)
        if self.scale:
            scale = scale * tf.cast(self.gamma, tf.float32)
        shift = -tf.cast(self.moving_mean, tf.float32) * scale
        if self.center:
            shift = shift + tf.cast(self.beta, tf.float32)
        kernel = tf.cast(tf.reshape(scale, (1, 1, -1, 1)), inputs.dtype)
        return tf.nn.depthwise_conv2d(inputs, kernel, (1, 1, 1, 1), "VALID") + tf.cast(shift, inputs.dtype)
