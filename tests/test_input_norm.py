"""Pretrained weights get the source's input normalisation folded into the stem: our backbone on ``x/127.5-1``
computes what the source computes on its own normalised input (exactly where the stem conv does not read its
zero padding), and the log says what was folded. No downloads: random-weight sources written in tmp and the
tiny PyTorch fixtures of tests/fixtures/pretrained/."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from torch_reference_cases import CASES, FIXTURES, load_converted

from vision_core.app.task import BackboneSpec
from vision_core.app.transfer import read_backbone_weights
from vision_core.backbones import build_backbone
from vision_core.backbones.input_norm import (
    CAFFE,
    DETECTRON2,
    HALF_MEAN_STD,
    IMAGENET_MEAN_STD,
    OURS,
    source_input_norm,
)
from vision_core.backend import keras
from vision_core.storage.weights import variables_by_path

SIZE = 64
CROP = 2  # the border of the stem output, C2 and C3 that the stem conv's padding reaches, each side (64 px input)
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def pixels(seed: int) -> np.ndarray:
    """Random RGB pixels 0-255, shape (2, SIZE, SIZE, 3)."""
    return np.random.default_rng(seed).uniform(0, 255, (2, SIZE, SIZE, 3))


def ours(image: np.ndarray) -> np.ndarray:
    return (image / 127.5 - 1).astype(np.float32)


def assign(model, weights) -> None:
    for path, variable in variables_by_path(model).items():
        variable.assign(weights[path])


def layer_output(model, name: str, x) -> np.ndarray:
    return np.asarray(keras.Model(model.inputs, model.get_layer(name).output)(x, training=False))


def max_relative_error(ours_out, reference) -> float:
    return float(np.abs(np.asarray(ours_out) - reference).max() / max(1.0, np.abs(reference).max()))


def interior_and_border_errors(pairs: dict) -> dict[str, str]:
    """The feature maps ``{name: (ours, reference)}`` whose interior (CROP pixels off each side) is not the
    reference's to 1e-4 of its largest magnitude, or whose border is (the stem's padding must show there)."""
    problems = {}
    for name, (got, reference) in pairs.items():
        got, reference = np.asarray(got), np.asarray(reference)
        interior = (slice(None), slice(CROP, -CROP), slice(CROP, -CROP))
        error = max_relative_error(got[interior], reference[interior])
        if error > 1e-4:
            problems[name] = f"interior error {error:.2e}"
        elif max_relative_error(got, reference) < 1e-3:
            problems[name] = "the border too is the reference's: the test would not see a wrong fold there"
    return problems


def randomise(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for v in model.weights:
        values = rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else rng.normal(0, 0.05, v.shape)
        v.assign(values.astype("float32"))


def test_keras_resnet50_gets_caffe_bgr_mean_subtraction_folded_into_its_conv_bias(tmp_path, caplog):
    source = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    randomise(source)
    source.save_weights(tmp_path / "resnet50.weights.h5")
    spec = BackboneSpec("resnet50", (SIZE, SIZE, 3), {"variant": "keras"})
    with caplog.at_level(logging.INFO):
        _, weights = read_backbone_weights(str(tmp_path / "resnet50.weights.h5"), spec, download=False)
    assert (
        "folded the source's input normalisation (caffe: BGR 0-255 minus (103.939, 116.779, 123.68)) into "
        "conv1_conv/kernel and conv1_conv/bias; our inputs stay x/127.5-1, exact except at the stem's zero-padded "
        "border"
    ) in caplog.text
    model = build_backbone("resnet50", (SIZE, SIZE, 3), variant="keras")
    assign(model, weights)
    preprocess = keras.applications.resnet50.preprocess_input  # keras' own caffe preprocessing: the reference

    image = pixels(1)
    normalised = preprocess(image.copy()).astype(np.float32)
    features = model(ours(image), training=False)
    pairs = {
        "conv1_conv": (layer_output(model, "conv1_conv", ours(image)), layer_output(source, "conv1_conv", normalised)),
        "C2": (features["C2"], layer_output(source, "conv2_block3_out", normalised)),
        "C3": (features["C3"], layer_output(source, "conv3_block4_out", normalised)),
    }
    assert interior_and_border_errors(pairs) == {}


def timm_mobilenet(classes=None, channels: int = 3):
    build = CASES["timm_mobilenet_v2"][2]
    if channels == 3:
        return build(classes)
    spec = tiny_mobilenet_spec(channels)
    return build_backbone(spec.name, spec.input_shape, classes, **spec.options)


def tiny_mobilenet_spec(channels: int = 3) -> BackboneSpec:
    options = dict(alpha=0.35, depth_multiplier=0.25, last_channels=64, bn_epsilon=1e-5, torch_padding=True)
    return BackboneSpec("mobilenet_v2", (SIZE, SIZE, channels), options)


def test_timm_mobilenet_v2_gets_imagenet_mean_std_folded_into_its_stem_batch_norm(caplog):
    path = FIXTURES / "timm_mobilenet_v2.safetensors"
    with caplog.at_level(logging.INFO):
        _, weights = read_backbone_weights(str(path), tiny_mobilenet_spec())
    assert (
        f"{path}: folded the source's input normalisation (RGB [0, 1], ImageNet mean (0.485, 0.456, 0.406) std "
        "(0.229, 0.224, 0.225)) into Conv1/kernel and bn_Conv1/moving_mean; our inputs stay x/127.5-1, exact except "
        "at the stem's zero-padded border"
    ) in caplog.text
    backbone, options, _, _ = CASES["timm_mobilenet_v2"]
    source = timm_mobilenet()  # the converted checkpoint, which computes what timm computes (test_torch_checkpoints)
    load_converted(source, backbone, options, path)
    model = timm_mobilenet()
    assign(model, weights)

    def normalised(image):
        return ((image / 255 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)

    image = pixels(3)
    expected = source(normalised(image), training=False)
    got = model(ours(image), training=False)
    pairs = {
        "bn_Conv1": (layer_output(model, "bn_Conv1", ours(image)), layer_output(source, "bn_Conv1", normalised(image))),
        "C2": (got["C2"], expected["C2"]),
        "C3": (got["C3"], expected["C3"]),
    }
    assert interior_and_border_errors(pairs) == {}


def test_a_grey_model_gets_the_stem_kernel_summed_over_the_sources_channels(caplog):
    path = str(FIXTURES / "timm_mobilenet_v2.safetensors")
    _, rgb_weights = read_backbone_weights(path, tiny_mobilenet_spec())
    with caplog.at_level(logging.INFO):
        _, grey_weights = read_backbone_weights(path, tiny_mobilenet_spec(channels=1))
    assert "into Conv1/kernel and bn_Conv1/moving_mean, summed over the source's channels for 1-channel input" in (
        caplog.text
    )
    assert grey_weights["Conv1/kernel"].shape == rgb_weights["Conv1/kernel"].shape[:2] + (1, 16)
    rgb, grey = timm_mobilenet(), timm_mobilenet(channels=1)
    assign(rgb, rgb_weights)
    assign(grey, grey_weights)
    image = np.random.default_rng(5).uniform(0, 255, (2, SIZE, SIZE, 1))
    expected = rgb(ours(np.repeat(image, 3, axis=-1)), training=False)  # a grey image repeated to RGB
    got = grey(ours(image), training=False)
    assert {name: e for name in got if (e := max_relative_error(got[name], np.asarray(expected[name]))) > 1e-5} == {}


@pytest.mark.parametrize(
    "backbone, kind, path, names, expected",
    [
        ("resnet50", "keras", None, (), CAFFE),
        ("mobilenet_v2", "keras", None, (), OURS),
        ("resnet50", "torch", "resnet50.tv_in1k/model.safetensors", ("conv1.weight",), IMAGENET_MEAN_STD),
        ("emov2_1m", "torch", "EMOv2_1M_224.pth", ("stage0.0.conv.weight",), IMAGENET_MEAN_STD),
        (
            "ese_vovnet57",
            "torch",
            "hub/models--timm--ese_vovnet57b.ra4_e3600_r256_in1k/snapshots/x/model.safetensors",
            ("stem.0.conv.weight",),
            HALF_MEAN_STD,
        ),
        (
            "ese_vovnet39",
            "torch",
            "vovnet39_ese_detectron2.pth",
            ("stem.stem_1/conv.weight", "stage2.OSA2_1.x"),
            DETECTRON2,
        ),
    ],
)
def test_each_source_has_its_input_normalisation(backbone, kind, path, names, expected):
    assert source_input_norm(backbone, kind, path, names) == expected


def test_the_normalisations_in_our_terms():
    # x' = scale * x + shift with x = pixel / 127.5 - 1
    np.testing.assert_allclose(IMAGENET_MEAN_STD.scale, 0.5 / IMAGENET_STD)
    np.testing.assert_allclose(IMAGENET_MEAN_STD.shift, (0.5 - IMAGENET_MEAN) / IMAGENET_STD)
    assert CAFFE.order == (2, 1, 0) and CAFFE.scale == (127.5,) * 3
    np.testing.assert_allclose(CAFFE.shift, 127.5 - np.array([103.939, 116.779, 123.68]))
    assert HALF_MEAN_STD.is_ours() and OURS.is_ours() and not DETECTRON2.is_ours()
