"""Multi-head self-attention inside non-overlapping windows, as one int8-convertible layer.

EMOv2's hybrid expanded-window attention (the official ``EW_MHSA_Hybrid``) attends inside
two kinds of windows that share one ``qk`` and one ``v`` projection and sums the results:

* ``"local"``: contiguous ``window x window`` patches (Swin-style, "close" in the code);
* ``"dilated"``: ``window x window`` pixels strided by the number of windows per side, so
  each window spans the whole map ("remote" in the code, the paper's spanning attention).

Everything is static-shape: the input size is fixed when the layer is built, windows are
cut with RESHAPE / TRANSPOSE (4-D at most), attention is two BATCH_MATMULs and a SOFTMAX,
and the ``1 / sqrt(key_dim)`` scale is a constant multiply, so the layer lowers to int8
TFLite builtins. Maps whose sides are not a multiple of the window are zero-padded at the
bottom / right before the projections (padded tokens take part, as in the official code)
and cropped afterwards.
"""

from __future__ import annotations

from vision_core.backend import keras, tf
from vision_core.layers.quantizable import QuantizableLayer, custom_layer

WINDOW_KINDS = ("local", "dilated")


@custom_layer
class WindowAttention(QuantizableLayer):
    """``(B, H, W, C) -> (B, H, W, value_channels)`` attention inside fixed windows.

    ``qk``: 1x1 conv ``C -> 2 * num_heads * key_dim`` (queries then keys, head-major);
    ``v``: 1x1 conv ``C -> value_channels`` followed by ``value_activation``; each head
    attends with ``key_dim`` query/key channels over ``value_channels / num_heads`` value
    channels, and the outputs of every kind in ``kinds`` are summed.
    """

    quantized_weights = ("qk.kernel", "v.kernel")
    quantize_output = True

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_channels: int,
        window_size: int = 7,
        kinds=WINDOW_KINDS,
        use_bias: bool = True,
        value_activation: str | None = "gelu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        unknown = [k for k in kinds if k not in WINDOW_KINDS]
        if unknown or not kinds:
            raise ValueError(f"{self.name}: window kinds must be a non-empty subset of {WINDOW_KINDS}, got {kinds}")
        if value_channels % num_heads:
            raise ValueError(f"{self.name}: value_channels {value_channels} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_channels = value_channels
        self.window_size = window_size
        self.kinds = tuple(kinds)
        self.use_bias = use_bias
        self.value_activation = value_activation
        self.scale = key_dim**-0.5
        self.qk = keras.layers.Conv2D(2 * num_heads * key_dim, 1, use_bias=use_bias, name="qk")
        self.v = keras.layers.Conv2D(value_channels, 1, use_bias=use_bias, activation=value_activation, name="v")

    def build(self, input_shape):
        self.height, self.width = int(input_shape[1]), int(input_shape[2])
        window = self.window_size
        self.pad_bottom = -self.height % window
        self.pad_right = -self.width % window
        self.grid = ((self.height + self.pad_bottom) // window, (self.width + self.pad_right) // window)
        super().build(input_shape)

    def _partition(self, x, kind: str, head_dim: int):
        """``(B, Hp, Wp, heads * head_dim)`` -> 4-D ``(..., N, head_dim)`` with N = window**2.

        ``local``: ``(B * windows, heads, N, head_dim)``; ``dilated``: ``(B, windows * heads, N, head_dim)``.
        """
        window, (rows, cols) = self.window_size, self.grid
        if kind == "local":
            # Row index = grid_row * window + offset: windows are contiguous patches.
            x = tf.reshape(x, (-1, window, cols, window * self.num_heads * head_dim))
            x = tf.transpose(x, (0, 2, 1, 3))
            x = tf.reshape(x, (-1, window * window, self.num_heads, head_dim))
        else:
            # Row index = offset * rows + grid_row: a window takes every rows-th pixel.
            x = tf.reshape(x, (-1, rows, window, cols * self.num_heads * head_dim))
            x = tf.transpose(x, (0, 2, 1, 3))
            x = tf.reshape(x, (-1, window * window, rows * cols * self.num_heads, head_dim))
        return tf.transpose(x, (0, 2, 1, 3))

    def _merge(self, x, kind: str, head_dim: int):
        """Inverse of :meth:`_partition`: back to ``(B, Hp, Wp, heads * head_dim)``."""
        window, (rows, cols) = self.window_size, self.grid
        channels = self.num_heads * head_dim
        x = tf.transpose(x, (0, 2, 1, 3))
        if kind == "local":
            x = tf.reshape(x, (-1, cols, window, window * channels))
        else:
            x = tf.reshape(x, (-1, window, rows, cols * channels))
        x = tf.transpose(x, (0, 2, 1, 3))
        return tf.reshape(x, (-1, rows * window, cols * window, channels))

    def _attend(self, q, k, v, kind: str):
        value_dim = self.value_channels // self.num_heads
        q = self._partition(q, kind, self.key_dim)
        k = self._partition(k, kind, self.key_dim)
        v = self._partition(v, kind, value_dim)
        weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * self.scale, axis=-1)
        return self._merge(tf.matmul(weights, v), kind, value_dim)

    def call(self, x):
        if self.pad_bottom or self.pad_right:
            x = tf.pad(x, ((0, 0), (0, self.pad_bottom), (0, self.pad_right), (0, 0)))
        q, k = tf.split(self.qk(x), 2, axis=-1)
        v = self.v(x)
        if self.grid == (1, 1):
            # One window covers the map, so every kind gives the same attention: compute it once.
            out = self._attend(q, k, v, "local")
            out = out * float(len(self.kinds)) if len(self.kinds) > 1 else out
        else:
            outs = [self._attend(q, k, v, kind) for kind in self.kinds]
            out = sum(outs[1:], outs[0])  # chained ADD: ADD_N has no int8 kernel
        if self.pad_bottom or self.pad_right:
            out = out[:, : self.height, : self.width, :]
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_channels": self.value_channels,
            "window_size": self.window_size,
            "kinds": list(self.kinds),
            "use_bias": self.use_bias,
            "value_activation": self.value_activation,
        }
