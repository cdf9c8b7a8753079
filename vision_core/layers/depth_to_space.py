"""Depth-to-space (the sub-pixel convolution's pixel shuffle) as a named, quantizable Keras layer.

``[B, H, W, r*r*C] -> [B, H*r, W*r, C]`` by ``tf.nn.depth_to_space`` (TensorFlow's channel order: the
``r x r`` block of output pixels reads channels ``(dy * r + dx) * C + c``). It converts to TFLite's
``DEPTH_TO_SPACE``, which keeps its input's int8 scale (a reordering of values), so QAT adds no
fake quantization of its own (``quantize_output = False``).
"""

from __future__ import annotations

from vision_core.backend import tf
from vision_core.layers.quantizable import QuantizableLayer, custom_layer


@custom_layer
class DepthToSpace(QuantizableLayer):
    quantize_output = False

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        if block_size < 2:
            raise ValueError(f"block_size must be 2 or more, got {block_size}")
        self.block_size = int(block_size)

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        r = self.block_size
        return (
            batch,
            None if height is None else height * r,
            None if width is None else width * r,
            channels // (r * r),
        )

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}
