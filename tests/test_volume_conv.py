"""The slice-folded 3D convolution (vision_core.layers.volume) computes keras Conv3D, and the volume ResNets
built on it have the reference architectures' weights."""

from __future__ import annotations

import numpy as np
import pytest

from vision_core.backbones.resnet3d import build_volume_resnet, mid_channels
from vision_core.backend import keras
from vision_core.layers.volume import (
    DepthUnfold,
    SlicesToBatch,
    SlicesToRows,
    conv3d_kernel_as_conv2d,
    same_padding,
)


def folded_conv3d(volumes: np.ndarray, kernel: np.ndarray, strides: tuple[int, int, int]) -> np.ndarray:
    """``[B, D, H, W, C]`` through DepthUnfold + Conv2D with the Conv3D ``kernel``, back to ``[B, D', H', W', F]``."""
    batch, depth, height, width, channels = volumes.shape
    kd, kh, kw, _, filters = kernel.shape
    sd, sh, sw = strides
    assert sh == sw
    slices = volumes.reshape(batch * depth, height, width, channels)
    unfold = DepthUnfold(depth, kd, sd)
    conv = keras.layers.Conv2D(filters, (kh, kw), sh, padding="same", use_bias=False)
    conv.build((None, height, width, kd * channels))
    conv.set_weights([conv3d_kernel_as_conv2d(kernel)])
    out = np.asarray(conv(unfold(slices)))
    return out.reshape(batch, unfold.output_depth, *out.shape[1:])


@pytest.mark.parametrize(
    ("depth", "kernel", "strides"),
    [
        (6, (3, 3, 3), (1, 1, 1)),
        (7, (3, 3, 3), (2, 2, 2)),  # odd depth: "same" pads one slice before and one after
        (6, (3, 3, 3), (2, 2, 2)),  # even depth: the uneven padding goes after, as Conv3D's
        (5, (3, 7, 7), (1, 2, 2)),  # the stem
        (6, (3, 1, 1), (2, 1, 1)),  # a (2+1)D depth conv
        (6, (1, 1, 1), (2, 2, 2)),  # a strided shortcut
        (4, (1, 3, 3), (1, 2, 2)),  # MC3's 2D convs
    ],
)
def test_folded_conv_equals_keras_conv3d(depth, kernel, strides):
    rng = np.random.default_rng(0)
    volumes = rng.normal(size=(2, depth, 9, 10, 3)).astype(np.float32)
    conv3d = keras.layers.Conv3D(4, kernel, strides, padding="same", use_bias=False)
    expected = np.asarray(conv3d(volumes))
    got = folded_conv3d(volumes, np.asarray(conv3d.get_weights()[0]), strides)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)


def test_same_padding_matches_tensorflow():
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(6, 3, 2) == (0, 1)
    assert same_padding(6, 3, 1) == (1, 1)
    assert same_padding(6, 1, 2) == (0, 0)


def test_slices_to_batch_and_rows_keep_voxel_order():
    volume = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # [B, H, W, D]
    slices = np.asarray(SlicesToBatch()(volume))
    assert slices.shape == (10, 3, 4, 1)
    np.testing.assert_array_equal(slices[1 * 5 + 2, ..., 0], volume[1, :, :, 2])
    rows = np.asarray(SlicesToRows(5)(slices))
    assert rows.shape == (2, 5, 12, 1)
    np.testing.assert_array_equal(rows[1, 2, :, 0], volume[1, :, :, 2].reshape(-1))


def test_mid_channels_is_the_papers():
    assert mid_channels(64, 64) == 144  # 27*64*64 / (9*64 + 3*64)
    assert mid_channels(64, 128) == 230
    assert mid_channels(3, 64, spatial=7) == 83


@pytest.mark.parametrize(
    ("name", "params"),
    # torchvision's r3d_18 and mc3_18 (Kinetics, 3 input channels, 400 classes) hold 33,371,472 and 11,695,440
    # weights; with one input channel and 2 classes: 64*3*49*2 fewer stem weights and 512*398+398 fewer in the head.
    [("r3d_18", 33_371_472 - 18_816 - 204_174), ("mc3_18", 11_695_440 - 18_816 - 204_174)],
)
def test_parameter_counts_match_torchvision(name, params):
    model = build_volume_resnet(name, (8, 32, 32), num_classes=2)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == params  # PyTorch counts no BN statistics


def test_volume_resnets_take_slices_last_volumes():
    for name in ("r3d_18", "mc3_18", "r2plus1d_18"):
        model = build_volume_resnet(name, (8, 32, 32), num_classes=3, width=0.125)
        assert tuple(model.inputs[0].shape) == (None, 32, 32, 8)
        assert np.asarray(model(np.zeros((2, 32, 32, 8), np.float32))).shape == (2, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_volume_resnets_convert_all_int8(name):
    from tflite.runtime import TFLiteModel
    from vision_core.quant.convert import convert

    model = build_volume_resnet(name, (4, 16, 16), num_classes=2, width=0.125)
    rng = np.random.default_rng(1)
    volumes = [rng.uniform(-1, 1, size=(2, 16, 16, 4)).astype(np.float32) for _ in range(4)]
    flatbuffer = convert(model, "int8", volumes, io_dtype="int8")  # raises FloatOpError on a float op
    int8 = TFLiteModel(flatbuffer)(volumes[0])["logits"]
    np.testing.assert_allclose(int8, np.asarray(model(volumes[0])), atol=0.05)
