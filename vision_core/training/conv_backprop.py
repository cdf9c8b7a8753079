"""A faster input gradient for stride-1 2-D convolutions on CPU.

TensorFlow's CPU kernel for ``Conv2DBackpropInput`` (the gradient of a ``Conv2D`` with
respect to its input) is much slower than a forward convolution of the same size, most of
all at the small feature maps of a network's deep stages: for a 3x3 conv with 512 channels
on 2x2 maps, batch 32, it takes ~290 ms where the equivalent forward convolution takes
~23 ms, and a ResNet-18 training step at 64 px spends ~1.1 of its 1.6 s in the five such
convolutions of its last stage (``benchmarks/conv_backprop.py`` measures this).

For stride 1 that gradient *is* a forward convolution: the output gradient, padded by
``k - 1`` minus the forward padding on each side, convolved (VALID) with the kernel
flipped in space and with its input and output channels swapped. :func:`install` makes
that the registered gradient of the ``Conv2D`` op for NHWC, stride-1, undilated convolutions
with SAME or VALID padding and a known input size; every other ``Conv2D`` (strided, dilated,
explicit padding, NCHW, unknown spatial size) keeps TensorFlow's own gradient. Forward
graphs, and so every export, are untouched: only gradients change, by float rounding.

The op's gradient registry is private TensorFlow API (``ops._gradient_registry``): public
``tf.RegisterGradient`` refuses a second gradient for an op type. Importing this module
installs it; :mod:`vision_core.backend` imports it once per process, in both Keras flavours,
after it has set up TensorFlow's environment (this module takes ``tf`` from it).
"""

from __future__ import annotations

# After the backend, which sets TensorFlow's environment before TensorFlow is first imported.
from tensorflow.python.framework import ops  # noqa: E402, I001

from vision_core.backend import tf

_REGISTRY = ops._gradient_registry._registry  # noqa: SLF001  (no public way to replace a gradient)
OP_TYPE = "Conv2D"
TENSORFLOW_GRADIENT = _REGISTRY[OP_TYPE]["type"]  # kept for the convolutions it still serves


def forward_padding(padding: str, kernel_size: int) -> tuple[int, int]:
    """Zeros a stride-1 conv adds before and after the input along one axis (TensorFlow's SAME rule)."""
    if padding == "VALID":
        return 0, 0
    before = (kernel_size - 1) // 2
    return before, kernel_size - 1 - before


def input_gradient(output_gradient, kernel, padding: str):
    """d(loss)/d(input) of a stride-1, undilated NHWC ``conv2d(input, kernel, padding)``."""
    pads = [[0, 0]]
    for kernel_size in kernel.shape[:2]:
        before, after = forward_padding(padding, kernel_size)
        pads.append([kernel_size - 1 - before, kernel_size - 1 - after])
    pads.append([0, 0])
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
    return tf.nn.conv2d(tf.pad(output_gradient, pads), flipped, 1, "VALID")


def _serves(op) -> bool:
    kernel_size = op.inputs[1].shape[:2]
    return (
        op.get_attr("data_format") == b"NHWC"
        and list(op.get_attr("strides")) == [1, 1, 1, 1]
        and list(op.get_attr("dilations")) == [1, 1, 1, 1]
        and op.get_attr("padding") in (b"SAME", b"VALID")
        and kernel_size.is_fully_defined()
        and op.inputs[0].shape[1:3].is_fully_defined()
    )


def conv2d_gradient(op, grad):
    """The ``Conv2D`` gradient: :func:`input_gradient` where it applies, else TensorFlow's."""
    if not _serves(op):
        return TENSORFLOW_GRADIENT(op, grad)
    inputs, kernel = op.inputs
    kernel_gradient = tf.raw_ops.Conv2DBackpropFilter(
        input=inputs,
        filter_sizes=tf.shape(kernel),
        out_backprop=grad,
        strides=op.get_attr("strides"),
        padding=op.get_attr("padding"),
        use_cudnn_on_gpu=op.get_attr("use_cudnn_on_gpu"),
        data_format=op.get_attr("data_format"),
        dilations=op.get_attr("dilations"),
    )
    return input_gradient(grad, kernel, op.get_attr("padding").decode()), kernel_gradient


def install() -> None:
    """Register :func:`conv2d_gradient` for ``Conv2D`` in this process."""
    _REGISTRY[OP_TYPE]["type"] = conv2d_gradient


def uninstall() -> None:
    """Give ``Conv2D`` TensorFlow's own gradient again (to measure the difference)."""
    _REGISTRY[OP_TYPE]["type"] = TENSORFLOW_GRADIENT


def installed() -> bool:
    return _REGISTRY[OP_TYPE]["type"] is conv2d_gradient


install()
