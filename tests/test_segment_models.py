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
    model = build_segmenter(3, architecture="ffnet", backbone="resnet18", input_size=64, ffnet_head="A")
    widths = {
        name: model.get_layer(f"ffnet_{name}_conv").filters for name in ("adapter2", "adapter5", "smooth3", "seg")
    }
    assert widths == {"adapter2": 64, "adapter5": 512, "smooth3": 128, "seg": 512}
    assert model.get_layer("ffnet_classifier").kernel_size == (1, 1)
    mobile = build_segmenter(
        3, architecture="ffnet", backbone="resnet18", input_size=64, ffnet_head="B", head_width=0.5
    )
    widths = {n: mobile.get_layer(f"ffnet_{n}_conv").filters for n in ("adapter4", "smooth2", "smooth5", "seg")}
    assert widths == {"adapter4": 64, "smooth2": 48, "smooth5": 16, "seg": 128}
    assert mobile.get_layer("ffnet_classifier").kernel_size == (3, 3)


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
