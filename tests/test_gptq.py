"""GPTQ rounds weights onto the converter's own int8 grid with less output error than nearest rounding."""

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from vision_core.backend import keras
from vision_core.quant.convert import convert
from vision_core.quant.gptq import LEVELS, channel_steps, gptq_round, gptq_rounded


def _correlated_inputs(rng, rows: int, depth: int) -> np.ndarray:
    """Rows whose covariance has a decaying spectrum, as neighbouring pixels of images have."""
    basis, _ = np.linalg.qr(rng.normal(size=(depth, depth)))
    return (rng.normal(size=(rows, depth)) * 0.7 ** np.arange(depth) * 3) @ basis.T + rng.normal(size=depth)


def test_gptq_weights_are_on_each_channels_grid_with_its_step_kept():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(40, 6))
    inputs = _correlated_inputs(rng, 2000, 40)
    rounded = gptq_round(weights, inputs.T @ inputs / len(inputs))
    steps = channel_steps(weights)
    integers = rounded / steps
    np.testing.assert_allclose(integers, np.round(integers), atol=1e-9)
    assert np.abs(np.round(integers)).max() == LEVELS
    np.testing.assert_array_equal(np.abs(np.round(integers)).max(axis=0), np.full(6, LEVELS))  # the step is kept
    np.testing.assert_allclose(channel_steps(rounded), steps)


def test_gptq_output_error_is_far_below_nearest_roundings():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(72, 8))
    inputs = _correlated_inputs(rng, 4000, 72)
    hessian = inputs.T @ inputs / len(inputs)
    steps = channel_steps(weights)
    nearest = np.clip(np.round(weights / steps), -LEVELS, LEVELS) * steps

    def output_error(rounded):
        return float(np.mean((inputs @ (weights - rounded)) ** 2))

    assert output_error(gptq_round(weights, hessian)) < 0.2 * output_error(nearest)


def test_an_input_that_is_always_zero_gets_zero_weights_and_no_nan():
    rng = np.random.default_rng(2)
    inputs = _correlated_inputs(rng, 500, 10)
    inputs[:, 3] = 0.0
    rounded = gptq_round(rng.normal(size=(10, 4)), inputs.T @ inputs / len(inputs))
    assert np.isfinite(rounded).all()
    np.testing.assert_array_equal(rounded[3], np.zeros(4))


def _conv_int8_kernel(flatbuffer: bytes) -> np.ndarray:
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    subgraph = model.subgraphs[0]
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CONV_2D:
            kernel = subgraph.tensors[op.inputs[1]]
            return np.frombuffer(bytes(model.buffers[kernel.buffer].data), np.int8).reshape(kernel.shape)
    raise AssertionError("no CONV_2D")


def test_the_converter_keeps_the_gptq_integers_of_a_conv_and_a_batch_norm_after_it():
    rng = np.random.default_rng(3)
    inputs = keras.Input((12, 12, 8), batch_size=1)
    x = keras.layers.Conv2D(5, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.ReLU()(x))
    model.get_layer("bn").set_weights(
        [rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.normal(size=5), rng.uniform(0.5, 2, 5)]
    )
    batches = [rng.normal(size=(2, 12, 12, 8)).astype(np.float32) for _ in range(3)]
    before = np.asarray(model.get_layer("conv").kernel).copy()
    rounded, report = gptq_rounded(model, batches, progress=False)
    assert report["conv"]["gptq"] < report["conv"]["nearest"]
    kernel = np.asarray(rounded.get_layer("conv").kernel)  # HWIO
    expected = np.round(kernel / channel_steps(kernel)).astype(np.int8).transpose(3, 0, 1, 2)  # OHWI
    # batch-norm folding scales each output channel, and its step with it: the integers stay
    np.testing.assert_array_equal(_conv_int8_kernel(convert(rounded, "int8", batches)), expected)
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv").kernel), before)  # the model is left as it was
    assert not np.array_equal(kernel, before)


@pytest.mark.parametrize(
    "padding, strides, dilation", [("same", 1, 1), ("same", 2, 1), ("valid", 1, 2), ("same", 1, 2)]
)
def test_sampled_rows_are_the_convolutions_im2col_patches(padding, strides, dilation):
    from vision_core.backend import tf
    from vision_core.quant.gptq import _rows

    layer = keras.layers.Conv2D(2, 3, strides=strides, dilation_rate=dilation, padding=padding)
    inputs = np.random.default_rng(4).normal(size=(2, 9, 11, 3)).astype(np.float32)
    layer.build(inputs.shape)
    rows = _rows(layer, inputs, 10**6, np.random.default_rng(0))  # every position, in order
    patches = tf.image.extract_patches(
        inputs, [1, 3, 3, 1], [1, strides, strides, 1], [1, dilation, dilation, 1], padding.upper()
    ).numpy()
    np.testing.assert_array_equal(rows, patches.reshape(-1, 27))
    kernel = np.asarray(layer.kernel).reshape(27, 2)
    np.testing.assert_allclose(rows @ kernel, np.asarray(layer(inputs)).reshape(-1, 2), atol=1e-5)
