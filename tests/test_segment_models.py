"""The segment app's models: every head on a backbone's features, logits at the input size, layers named."""

from __future__ import annotations

import pytest

from apps.segment.models import build_segmenter, with_probabilities
from vision_core.backend import keras


@pytest.mark.parametrize(
    "architecture, backbone, output_stride, head_size",
    [
        ("ffnet", "resnet18", 4, 16),
        ("ffnet", "resnet18", 8, 8),
        ("lraspp", "mobilenet_v2", 8, 8),
        ("deeplabv3plus", "resnet18", 4, 16),
    ],
)
def test_each_head_predicts_at_its_output_stride_resized_to_the_input(architecture, backbone, output_stride, head_size):
    model = build_segmenter(
        5,
        architecture=architecture,
        backbone=backbone,
        backbone_alpha=0.35,
        input_size=64,
        output_stride=output_stride,
        head_width=0.25,
        lraspp_channels=16,
        aspp_channels=16,
    )
    assert model.name == f"{architecture}_{backbone}"
    assert tuple(model.output.shape) == (None, 64, 64, 5)
    logits = model.get_layer("logits")
    assert isinstance(logits, keras.layers.Resizing)
    assert tuple(logits.input.shape) == (None, head_size, head_size, 5)


def test_ffnet_head_types_have_the_official_widths():
    def widths(model, names):
        return {n: model.get_layer(f"ffnet_{n}").filters for n in names}

    model = build_segmenter(3, architecture="ffnet", backbone="resnet18", input_size=64, ffnet_head="A")
    names = ("adapter2_conv", "adapter5_conv", "smooth3_conv", "seg_conv0", "seg_conv3")
    assert widths(model, names) == dict(zip(names, (64, 512, 128, 512, 512)))
    assert model.get_layer("ffnet_classifier").kernel_size == (1, 1)
    mobile = build_segmenter(
        3, architecture="ffnet", backbone="resnet18", input_size=64, ffnet_head="B", head_width=0.5
    )
    names = ("adapter4_conv", "smooth2_conv", "smooth5_conv", "seg_conv0")
    assert widths(mobile, names) == dict(zip(names, (64, 48, 16, 128)))
    assert mobile.get_layer("ffnet_classifier").kernel_size == (3, 3)
    # the concatenation of the four branches is one conv per branch, summed (no Concatenate for TF-MOT to reorder)
    assert not any(isinstance(layer, keras.layers.Concatenate) for layer in mobile.layers)
    assert [mobile.get_layer(f"ffnet_seg_conv{i}").input.shape[-1] for i in range(4)] == [48, 48, 32, 16]


def test_deeplab_has_one_dilated_branch_per_rate_and_an_image_pooling_branch():
    model = build_segmenter(3, architecture="deeplabv3plus", backbone="resnet18", input_size=64, aspp_rates=(2, 4))
    assert [model.get_layer(f"deeplab_aspp_atrous{r}_conv").dilation_rate for r in (2, 4)] == [(2, 2), (4, 4)]
    assert tuple(model.get_layer("deeplab_aspp_pool_resize").output.shape) == (None, 2, 2, 256)


def test_the_shipped_model_ends_in_a_softmax_named_masks():
    model = build_segmenter(4, architecture="lraspp", backbone="mobilenet_v2", backbone_alpha=0.35, input_size=64)
    shipped = with_probabilities(model)
    probabilities = shipped(keras.random.uniform((1, 64, 64, 3)))["masks"]
    assert tuple(probabilities.shape) == (1, 64, 64, 4)
    assert float(keras.ops.max(keras.ops.abs(keras.ops.sum(probabilities, -1) - 1.0))) < 1e-5


def test_unknown_settings_are_errors():
    with pytest.raises(ValueError, match="output_stride must be 4 or 8, got 16"):
        build_segmenter(3, input_size=64, output_stride=16)
    with pytest.raises(ValueError, match="unknown FFNet head 'D'"):
        build_segmenter(3, input_size=64, ffnet_head="D")


@pytest.mark.slow
def test_every_head_keeps_its_float_outputs_under_tf_mot_fake_quantization():
    """The QAT model (tf_keras, TF-MOT, calibrated, before any fine-tune) of each head follows the float one: a
    Concatenate here had its inputs reordered by TF-MOT (cosine 0.26), which conv_over_concat avoids."""
    from conftest import last_json_line, run_python

    code = """
import json, numpy as np
from vision_core.backend import keras
from apps.segment.models import build_segmenter
from vision_core.quant.fold import fold_for_int8
from vision_core.quant.qat import calibrate_ranges, quantize_model
from vision_core.data.synthetic import normalize, segmentation_scene
rng = np.random.default_rng(0)
x = normalize(np.stack([segmentation_scene(rng, 64, 3)[0] for _ in range(4)]))
cosines = {}
for arch in ("ffnet", "deeplabv3plus", "lraspp"):
    keras.utils.set_random_seed(0)
    model = build_segmenter(
        5, architecture=arch, backbone="resnet18", input_size=64, head_width=0.25, aspp_channels=32, lraspp_channels=32
    )
    model, _ = fold_for_int8(model)
    qat = quantize_model(model)
    calibrate_ranges(qat, model, [x[:2], x[2:]], "batch_mean")
    a, b = np.asarray(model(x, training=False)), np.asarray(qat(x, training=False))
    cosines[arch] = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
print(json.dumps(cosines))
"""
    result = run_python(code, flavour="tf_keras")
    assert result.returncode == 0, result.stderr[-3000:]
    cosines = last_json_line(result.stdout)
    assert set(cosines) == {"ffnet", "deeplabv3plus", "lraspp"}
    assert min(cosines.values()) > 0.99, cosines
