"""3D convolutions with int8 TFLite ops: a volume's slices folded into the batch, 2D convolutions over them.

TFLite's ``CONV_3D`` has no int8 kernel: a full-int8 conversion keeps it float32 between DEQUANTIZE and
QUANTIZE, which the op audit rejects (``benchmarks/conv3d_int8_probe.py``). So a volume network here runs on
its slices: a tensor ``[B, D, H, W, C]`` is held as ``[B*D, H, W, C]`` (the ``D`` slices of each volume
one after another in the batch), a ``1 x kh x kw`` convolution is a ``Conv2D`` on that, and a kernel that
reaches across slices (``kd x kh x kw``, ``kd > 1``, or a depth stride) first gathers, for every output
slice, the ``kd`` input slices it reads into its channels (:class:`DepthUnfold`), then a ``Conv2D`` of
``kd * C`` input channels computes exactly ``Conv3D``: its kernel is the ``Conv3D`` kernel with the depth
axis moved into the input channels (:func:`conv3d_kernel_as_conv2d`). Every op is a reshape, pad,
strided slice, concatenation or ``CONV_2D``, all int8 builtins, and the batch norm after each ``Conv2D``
folds as in any 2D network.

One measured quirk of the TFLite int8 quantizer (TF 2.21): a :class:`DepthUnfold` of ``kernel_size=1`` (plain
depth striding) feeding a ``Conv2D`` whose result joins a residual ``Add`` leaves that branch float32; striding
after the conv and its batch norm instead (the same values: a ``1x1x1`` conv acts on each slice alone) converts
to int8, which is how :mod:`vision_core.backbones.resnet3d` strides its shortcuts.

The layers only move values (no weights, no arithmetic), so QAT gives them no fake quantization of
their own: their int8 outputs keep their input's scale. The folded batch's volume count is ``B`` and its
slice count the ``depth`` the layer is told (a static setting: the model's depth at that point).
"""

from __future__ import annotations

import numpy as np

from vision_core.backend import tf
from vision_core.layers.quantizable import QuantizableLayer, custom_layer


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """``(before, after)`` padding of TensorFlow's ``"same"`` along one axis of ``size`` (``ceil(size /
    stride)`` outputs; the odd one of an uneven total after, as ``Conv3D(padding="same")`` pads)."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def conv3d_kernel_as_conv2d(kernel: np.ndarray) -> np.ndarray:
    """A ``Conv3D`` kernel ``[kd, kh, kw, C, F]`` as the ``Conv2D`` kernel ``[kh, kw, kd * C, F]`` that computes
    the same after :class:`DepthUnfold` (input channel ``i * C + c`` is channel ``c`` of depth tap ``i``)."""
    kernel = np.asarray(kernel)
    depth, height, width, channels, filters = kernel.shape
    return kernel.transpose(1, 2, 0, 3, 4).reshape(height, width, depth * channels, filters)


@custom_layer
class SlicesToBatch(QuantizableLayer):
    """A volume ``[B, H, W, D]`` (its ``D`` slices as channels, slices last as NIfTI arrays hold them) ->
    its slices ``[B*D, H, W, 1]``, each volume's slices in order."""

    quantize_output = False

    def call(self, x):
        _, height, width, depth = x.shape
        return tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (-1, height, width, 1))

    def compute_output_shape(self, input_shape):
        batch, height, width, depth = input_shape
        return (None if batch is None else batch * depth, height, width, 1)


@custom_layer
class DepthUnfold(QuantizableLayer):
    """Slices ``[B*D, H, W, C]`` -> ``[B*D', H, W, kernel_size * C]``: output slice ``j`` holds input slices
    ``j * strides - before + i`` for ``i < kernel_size`` (zeros outside), tap ``i`` in channels ``i*C .. i*C+C-1``.

    ``D' = ceil(depth / strides)``; ``before`` is the ``"same"`` padding (:func:`same_padding`). With
    ``kernel_size=1`` it keeps every ``strides``-th slice (a ``1 x 1 x 1`` conv's depth stride).
    """

    quantize_output = False

    def __init__(self, depth: int, kernel_size: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        if depth < 1 or kernel_size < 1 or strides < 1:
            raise ValueError(f"depth {depth}, kernel_size {kernel_size}, strides {strides}: each must be 1 or more")
        self.depth, self.kernel_size, self.strides = int(depth), int(kernel_size), int(strides)

    @property
    def output_depth(self) -> int:
        return -(-self.depth // self.strides)

    def call(self, x):
        _, height, width, channels = x.shape
        rows = tf.reshape(x, (-1, self.depth, height * width, channels))  # one row of voxels per slice
        before, after = same_padding(self.depth, self.kernel_size, self.strides)
        if before or after:
            rows = tf.pad(rows, ((0, 0), (before, after), (0, 0), (0, 0)))
        span = (self.output_depth - 1) * self.strides + 1
        taps = [rows[:, i : i + span : self.strides] for i in range(self.kernel_size)]
        rows = taps[0] if len(taps) == 1 else tf.concat(taps, axis=-1)
        return tf.reshape(rows, (-1, height, width, self.kernel_size * channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        volumes = None if batch is None else batch // self.depth
        return (
            None if volumes is None else volumes * self.output_depth,
            height,
            width,
            None if channels is None else channels * self.kernel_size,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "depth": self.depth,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
        }


@custom_layer
class SlicesToRows(QuantizableLayer):
    """Slices ``[B*D, H, W, C]`` -> ``[B, D, H*W, C]`` (the same values in the same order): one row of voxels
    per slice, so a ``GlobalAveragePooling2D`` after it averages each volume over all its voxels."""

    quantize_output = False

    def __init__(self, depth: int, **kwargs):
        super().__init__(**kwargs)
        if depth < 1:
            raise ValueError(f"depth {depth}: must be 1 or more")
        self.depth = int(depth)

    def call(self, x):
        _, height, width, channels = x.shape
        return tf.reshape(x, (-1, self.depth, height * width, channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (None if batch is None else batch // self.depth, self.depth, height * width, channels)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}
