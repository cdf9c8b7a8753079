"""Layer normalization that converts to an all-int8 TFLite graph.

Keras 3's ``LayerNormalization`` lowers to a float ``NEG`` that the int8 converter leaves
behind silently, so the suite normalises with explicit mean / variance ops (MEAN, SUB,
MUL, ADD, RSQRT), each of which has an int8 TFLite kernel.
"""

from __future__ import annotations

from vision_core.backend import keras, tf
from vision_core.layers.quantizable import QuantizableLayer, custom_layer


@custom_layer
class LayerNorm(QuantizableLayer):
    """Normalise over the last (channel) axis of an NHWC or (B, N, C) tensor, then scale and shift."""

    quantized_weights = ()
    quantize_output = True

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        # Not tf.square: before a conv the converter fuses it into SQUARED_DIFFERENCE and gives
        # ``centred`` the output's int8 range, leaving small inputs about two levels.
        variance = tf.reduce_mean(centred * centred, axis=-1, keepdims=True)
        return centred * tf.math.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
