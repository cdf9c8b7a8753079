"""The Conv2D input gradient that vision_core.training.conv_backprop registers equals TensorFlow's own kernels."""

import numpy as np
import pytest
from conftest import last_json_line, run_python

from vision_core.backend import tf
from vision_core.training import conv_backprop

# (batch, height, width, in channels, out channels, kernel height, kernel width, padding)
STRIDE_1 = [
    (2, 5, 7, 3, 4, 3, 3, "SAME"),
    (2, 5, 7, 3, 4, 3, 3, "VALID"),
    (1, 6, 6, 2, 5, 2, 2, "SAME"),
    (1, 6, 6, 2, 5, 4, 4, "SAME"),
    (3, 4, 9, 5, 2, 1, 3, "SAME"),
    (2, 8, 8, 4, 4, 1, 1, "VALID"),
    (2, 2, 2, 8, 6, 3, 3, "SAME"),
    (1, 7, 5, 3, 3, 5, 2, "VALID"),
]


def _random(shape, seed):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _gradients(x, kernel, upstream, strides=1, padding="SAME", eager=True):
    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = tf.nn.conv2d(x, kernel, strides, padding)
            loss = tf.reduce_sum(y * upstream)
        return tape.gradient(loss, [x, kernel])

    return [g.numpy() for g in (grads(x) if eager else tf.function(grads)(x))]


def _tensorflow_kernels(x, kernel, upstream, strides=1, padding="SAME"):
    attrs = {"strides": [1, strides, strides, 1], "padding": padding}
    return [
        tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=upstream, **attrs).numpy(),
        tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=upstream, **attrs).numpy(),
    ]


def test_it_is_installed_by_the_backend():
    assert conv_backprop.installed()


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "traced"])
@pytest.mark.parametrize("shape", STRIDE_1, ids=lambda s: "x".join(map(str, s[:-1])) + s[-1])
def test_stride_1_gradients_equal_tensorflows_kernels(shape, eager):
    n, h, w, cin, cout, kh, kw, padding = shape
    x, kernel = _random((n, h, w, cin), 0), _random((kh, kw, cin, cout), 1)
    upstream = _random(tf.nn.conv2d(x, kernel, 1, padding).shape, 2)
    ours = _gradients(x, kernel, upstream, padding=padding, eager=eager)
    reference = _tensorflow_kernels(x, kernel, upstream, padding=padding)
    assert ours[0].shape == (n, h, w, cin)
    for got, expected in zip(ours, reference):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_strided_convolutions_keep_tensorflows_gradient():
    x, kernel = _random((2, 9, 9, 3), 0), _random((3, 3, 3, 4), 1)
    upstream = _random(tf.nn.conv2d(x, kernel, 2, "SAME").shape, 2)
    for got, expected in zip(_gradients(x, kernel, upstream, 2), _tensorflow_kernels(x, kernel, upstream, 2)):
        np.testing.assert_array_equal(got, expected)


def _input_gradient_ops(input_shape, dilations=1):
    kernel = _random((3, 3, 2, 2), 1)

    @tf.function(input_signature=[tf.TensorSpec(input_shape)])
    def input_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilations))
        return tape.gradient(loss, x)

    return {op.type for op in input_gradient.get_concrete_function().graph.get_operations()}


def test_dilated_or_unknown_size_convolutions_keep_tensorflows_gradient():
    assert "Conv2DBackpropInput" not in _input_gradient_ops((1, 5, 6, 2))
    assert "Conv2DBackpropInput" in _input_gradient_ops((1, None, None, 2))
    assert "Conv2DBackpropInput" in _input_gradient_ops((1, 5, 6, 2), dilations=2)


def test_the_tf_keras_flavour_installs_it_too():
    result = run_python(
        "import json, numpy as np\n"
        "from vision_core.training import conv_backprop\n"
        "from vision_core.backend import keras, tf\n"
        "layer = keras.layers.Conv2D(4, 3, padding='same', use_bias=False)\n"
        "x = tf.constant(np.random.default_rng(0).normal(size=(1, 4, 4, 2)).astype('float32'))\n"
        "with tf.GradientTape() as tape:\n"
        "    tape.watch(x)\n"
        "    loss = tf.reduce_sum(layer(x) ** 2)\n"
        "grad = tape.gradient(loss, x)\n"
        "upstream = 2 * layer(x)\n"
        "reference = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=layer.kernel,\n"
        "    out_backprop=upstream, strides=[1, 1, 1, 1], padding='SAME')\n"
        "print(json.dumps({'keras': keras.__name__, 'installed': conv_backprop.installed(),\n"
        "                  'error': float(np.abs(grad - reference).max())}))\n",
        flavour="tf_keras",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = last_json_line(result.stdout)
    assert outcome["keras"] == "tf_keras" and outcome["installed"]
    assert outcome["error"] < 1e-5
