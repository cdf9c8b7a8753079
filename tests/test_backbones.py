"""Registry, output contract and parameter counts of every backbone."""

import pytest

from vision_core.backbones import FEATURE_STRIDES, build_backbone, list_backbones
from vision_core.backbones.report import PARAM_TOLERANCE, REFERENCES, count_parameters

REQUIRED = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "mobilenet_v2",
    "vovnet39",
    "vovnet57",
    "ese_vovnet19_slim",
    "ese_vovnet19",
    "ese_vovnet39",
    "ese_vovnet57",
    "emov2_1m",
    "emov2_2m",
    "emov2_5m",
    "revcol_t",
    "revcol_s",
    "revcol_b",
]


def test_every_required_backbone_is_registered():
    assert set(REQUIRED) <= set(list_backbones())


def test_unknown_backbone_error_lists_the_registered_names():
    with pytest.raises(KeyError, match="unknown backbone 'resnet9'.*resnet18"):
        build_backbone("resnet9", (64, 64, 3))


# Each backbone is built twice (features at 128, 1000-class classifier at 64) and shared by
# the checks below, which run together on one xdist worker.
each_backbone = pytest.mark.parametrize(
    "built", [pytest.param(n, marks=pytest.mark.xdist_group(f"build-{n}"), id=n) for n in REQUIRED], indirect=True
)


@pytest.fixture(scope="module")
def built(request):
    name = request.param
    return name, build_backbone(name, (128, 128, 3)), build_backbone(name, (64, 64, 3), num_classes=1000)


@each_backbone
def test_features_are_named_c2_to_c5_at_strides_4_to_32(built):
    _, features, _ = built
    shapes = {k: tuple(v.shape[1:3]) for k, v in features.output.items()}
    assert shapes == {k: (128 // s, 128 // s) for k, s in FEATURE_STRIDES.items()}


@each_backbone
def test_parameter_count_matches_the_reference(built):
    name, _, classifier = built
    reference_m = REFERENCES[name][0]
    params = count_parameters(classifier)
    assert abs(params / 1e6 / reference_m - 1) <= PARAM_TOLERANCE, f"{name}: {params / 1e6:.2f}M vs {reference_m}M"


@each_backbone
def test_every_layer_has_a_unique_name(built):
    names = [layer.name for layer in built[2].layers]
    assert len(names) == len(set(names))


@each_backbone
def test_no_lambda_layers(built):
    from vision_core.backend import keras

    for model in built[1:]:
        assert not [layer.name for layer in model.layers if isinstance(layer, keras.layers.Lambda)]


def test_every_required_backbone_has_a_reference():
    assert set(REQUIRED) <= set(REFERENCES)


@pytest.mark.parametrize("name, expected", [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_resnet_parameter_counts_equal_torchvision_exactly(name, expected):
    assert count_parameters(build_backbone(name, (64, 64, 3), num_classes=1000)) == expected


@pytest.mark.parametrize(
    "variant, extra_layers",
    [
        ("d", {"stem1_conv", "stem3_conv", "conv3_block1_0_pool"}),
        ("rs", {"stem1_conv", "pool1_conv", "conv3_block1_0_pool", "conv3_block1_se_excite"}),
    ],
)
def test_resnet_d_and_rs_options_change_the_layout(variant, extra_layers):
    names = {layer.name for layer in build_backbone("resnet50", (64, 64, 3), variant=variant).layers}
    assert extra_layers <= names
    assert "conv1_conv" not in names


def test_resnet_v15_puts_the_stride_on_the_3x3_conv():
    model = build_backbone("resnet50", (64, 64, 3))
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_2_conv").use_bias is False


@pytest.mark.parametrize("alpha, expected", [(0.35, 1_691_208), (1.0, 3_538_984), (1.4, 6_156_712)])
def test_mobilenet_v2_width_multiplier(alpha, expected):
    model = build_backbone("mobilenet_v2", (96, 96, 3), num_classes=1000, alpha=alpha)
    assert model.count_params() == expected


def test_mobilenet_v2_rejects_alpha_out_of_range():
    with pytest.raises(ValueError, match="alpha must be in"):
        build_backbone("mobilenet_v2", (96, 96, 3), alpha=2.0)
