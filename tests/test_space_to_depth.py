"""The space-to-depth rewrite of int8 convolutions with few input channels is exact and selective."""

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tflite.peak import ConvShape, conv_model
from tflite.runtime import TFLiteModel
from tflite.space_to_depth import block_kernel, space_to_depth_convs


def _ops(data: bytes) -> list[str]:
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if name.isupper()}
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return [names[codes[op.opcodeIndex]] for op in model.subgraphs[0].operators]


def _model(shape: ConvShape, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    kernel = (shape.out_channels, shape.kernel, shape.kernel, shape.in_channels)
    return conv_model(shape, "int8", rng.normal(0, 0.3, kernel), rng.normal(0, 0.5, shape.out_channels))


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_rewritten_convolution_computes_the_same_integers(kernel, in_channels):
    original = _model(ConvShape(8, 10, in_channels, 6, kernel), seed=kernel * 10 + in_channels)
    rewritten, count = space_to_depth_convs(original)
    assert count == 1
    assert _ops(rewritten) == ["SPACE_TO_DEPTH", "CONV_2D", "DEPTH_TO_SPACE"]
    before, after = TFLiteModel(original), TFLiteModel(rewritten)
    x = np.random.default_rng(1).integers(-128, 128, (1, 8, 10, in_channels)).astype(np.int8)
    expected, got = before.run_raw(x), after.run_raw(x)
    assert list(got) == list(expected)
    for name in expected:
        assert got[name].dtype == np.int8
        np.testing.assert_array_equal(got[name], expected[name])


def test_block_kernel_is_the_convolution_on_pixel_blocks():
    """Float check of the index arithmetic: conv(x, k) == depth_to_space(conv_blocks(space_to_depth(x)))."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(2, 5, 5, 1))
    image = rng.normal(size=(6, 8, 1))

    def conv_same(x, k):  # OHWI kernel, SAME zero padding, stride 1
        pad = k.shape[1] // 2
        padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
        h, w = x.shape[:2]
        windows = np.stack(
            [padded[y : y + h, xx : xx + w] for y in range(k.shape[1]) for xx in range(k.shape[2])], axis=2
        )  # [h, w, k*k, C_in]
        return np.einsum("hwtc,otc->hwo", windows, k.reshape(k.shape[0], -1, k.shape[3]))

    blocks = image.reshape(3, 2, 4, 2, 1).transpose(0, 2, 1, 3, 4).reshape(3, 4, 4)
    blocked = block_kernel(kernel)
    assert blocked.shape == (8, 3, 3, 4)
    out_blocks = conv_same(blocks, blocked).reshape(3, 4, 2, 2, 2)
    pixels = out_blocks.transpose(0, 2, 1, 3, 4).reshape(6, 8, 2)
    np.testing.assert_allclose(pixels, conv_same(image, kernel), atol=1e-12)


@pytest.mark.parametrize(
    "shape",
    [
        ConvShape(7, 10, 1, 6, 5),  # odd height
        ConvShape(8, 10, 8, 6, 3),  # more input channels than XNNPACK pads away
        ConvShape(8, 10, 1, 6, 1),  # a 1x1 kernel reads no neighbours
    ],
    ids=["odd-height", "eight-channels", "pointwise"],
)
def test_ineligible_convolutions_are_left_as_they_are(shape):
    original = _model(shape, seed=3)
    rewritten, count = space_to_depth_convs(original)
    assert count == 0
    assert rewritten is original
