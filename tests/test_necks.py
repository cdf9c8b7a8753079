"""Detection necks (FPN, RCNet): registry, pyramid shapes, exact parameter counts, the tf_keras
twin, int8 post-training quantization and QAT.

The slow checks share one module-scoped run per neck: ResNet-18 + neck at 128x128, 32
channels, briefly trained on built-in shapes (see ``_trained_pyramid``). One QAT job per neck
(a tf_keras child process) builds the twin, probes it, quantizes it with TF-MOT and converts
it to int8. Each neck is one xdist group, so its run happens once, on one worker.
"""

import math

import numpy as np
import pytest

from tflite.audit import require_int8
from tflite.runtime import TFLiteModel
from vision_core.backbones import build_backbone
from vision_core.backend import keras
from vision_core.data.synthetic import SHAPE_CLASSES
from vision_core.necks import (
    PYRAMID_LEVELS,
    PYRAMID_STRIDES,
    build_neck,
    build_pyramid,
    list_necks,
)
from vision_core.necks.cross_scale_shift import SHIFT_DIVISOR, pool_factor
from vision_core.quant import qat_job
from vision_core.quant.agreement import output_agreement
from vision_core.quant.convert import convert
from vision_core.quant.int8_check import shapes_data
from vision_core.storage.weights import assign_by_path, load_npz, weights_by_path
from vision_core.training.fused_adam import FusedAdam

NECKS = ["fpn", "rcnet"]
RESNET18 = (128, 256, 512)  # channels of C3, C4, C5
RESNET50 = (512, 1024, 2048)
SIZE, CHANNELS = 128, 32


def _ceil_levels(height: int, width: int) -> dict[str, tuple[int, int]]:
    return {k: (math.ceil(height / s), math.ceil(width / s)) for k, s in PYRAMID_STRIDES.items()}


def _feature_inputs(c3: int, c4: int, c5: int) -> dict:
    """Symbolic C3..C5 of a 128x128 image: parameter counts do not depend on the size."""
    return {
        name: keras.Input((128 // stride, 128 // stride, c), name=name)
        for name, stride, c in (("C3", 8, c3), ("C4", 16, c4), ("C5", 32, c5))
    }


def _neck_parameters(name: str, channels: tuple[int, int, int], width: int, **options) -> int:
    features = _feature_inputs(*channels)
    return keras.Model(features, build_neck(name, features, width, **options)).count_params()


# -- registry -------------------------------------------------------------------------------


def test_fpn_and_rcnet_are_the_registered_necks():
    assert list_necks() == ["fpn", "rcnet"]


def test_unknown_neck_error_lists_the_registered_names():
    with pytest.raises(KeyError, match=r"unknown neck 'bifpn'; registered: fpn, rcnet"):
        build_neck("bifpn", _feature_inputs(*RESNET18))


@pytest.mark.parametrize("neck", NECKS)
def test_missing_c3_is_a_value_error_naming_it(neck):
    features = _feature_inputs(*RESNET18)
    del features["C3"]
    with pytest.raises(ValueError, match=r"missing \['C3'\]"):
        build_neck(neck, features)


def test_rcnet_needs_one_channel_per_shift_group():
    with pytest.raises(ValueError, match="groups of C / 16 channels; got C = 8"):
        build_neck("rcnet", _feature_inputs(*RESNET18), SHIFT_DIVISOR // 2)


# -- shapes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_features():
    """ResNet-18 feature models by input shape, built once."""
    cache = {}

    def get(shape):
        if shape not in cache:
            cache[shape] = build_backbone("resnet18", shape)
        return cache[shape]

    return get


# (80, 80) and (64, 160) need pools of 4 between levels 4 and 6 (5 -> 2 rows) and a pool of
# widths only (1x3 -> 1x2): the pool size is not the rounded ratio of the sizes.
@pytest.mark.parametrize("neck", NECKS)
@pytest.mark.parametrize(
    "shape, channels", [((128, 128, 3), 48), ((100, 132, 3), 32), ((80, 80, 3), 64), ((64, 160, 3), 16)]
)
def test_pyramid_levels_are_ceil_of_size_over_stride_with_the_requested_channels(
    resnet18_features, neck, shape, channels
):
    pyramid = build_neck(neck, resnet18_features(shape).output, channels)
    assert list(pyramid) == list(PYRAMID_LEVELS)
    expected = {k: (*hw, channels) for k, hw in _ceil_levels(*shape[:2]).items()}
    assert {k: tuple(v.shape[1:]) for k, v in pyramid.items()} == expected


def test_pool_factor_joins_every_pair_of_pyramid_levels():
    for height in range(1, 300):
        for width in (height, 2 * height + 1, max(1, height // 3)):
            levels = [(math.ceil(height / 2**i), math.ceil(width / 2**i)) for i in range(3, 8)]
            for low, size in enumerate(levels):
                for high in range(low + 1, len(levels)):
                    if size == levels[high]:
                        continue
                    factor = pool_factor(size, levels[high])
                    assert factor <= 2 ** (high - low)
                    assert (math.ceil(size[0] / factor), math.ceil(size[1] / factor)) == levels[high]


def test_two_necks_share_one_graph_with_prefixed_unique_layer_names(resnet18_features):
    backbone = resnet18_features((128, 128, 3))
    outputs = {}
    for prefix, neck in (("fpn", "fpn"), ("rcnet", "rcnet"), ("second_fpn", "fpn")):
        outputs.update({f"{prefix}_{k}": v for k, v in build_neck(neck, backbone.output, 32, prefix=prefix).items()})
    model = keras.Model(backbone.input, outputs)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    backbone_names = {layer.name for layer in backbone.layers}
    neck_names = [n for n in names if n not in backbone_names]
    assert neck_names and all(n.startswith(("fpn_", "rcnet_", "second_fpn_")) for n in neck_names)
    assert not [layer.name for layer in model.layers if isinstance(layer, keras.layers.Lambda)]


def test_a_saved_backbone_loads_into_the_pyramid_by_path():
    keras.utils.set_random_seed(3)
    backbone = build_backbone("resnet18", (64, 64, 3))
    pyramid = build_pyramid("resnet18", "rcnet", (64, 64, 3), channels=32)
    untouched = assign_by_path(pyramid, weights_by_path(backbone), strict=False)
    assert untouched and all(path.startswith("rcnet_") for path in untouched)
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    features = keras.Model(pyramid.input, [pyramid.get_layer("conv5_block2_out").output])(x)
    np.testing.assert_array_equal(np.asarray(features), np.asarray(backbone(x)["C5"]))


# -- parameter counts -----------------------------------------------------------------------


def fpn_parameters(c3: int, c4: int, c5: int, width: int, p6_from: str = "C5") -> int:
    """RetinaNet's FPN: 1x1 laterals, three 3x3 outputs, P6 3x3/2 on C5 (or P5), P7 3x3/2; all with bias."""

    def conv(kernel, inputs):
        return kernel * kernel * inputs * width + width

    laterals = conv(1, c3) + conv(1, c4) + conv(1, c5)
    p6 = conv(3, c5 if p6_from == "C5" else width)
    return laterals + 3 * conv(3, width) + p6 + conv(3, width)


def rcnet_parameters(c3: int, c4: int, c5: int, width: int) -> int:
    """RCNet as in :mod:`vision_core.necks.rcnet`, counting BN's moving statistics as Keras does."""
    batch_norm = 4 * width  # gamma, beta, moving mean, moving variance

    def conv_bn(kernel, inputs):  # conv without bias + BN
        return kernel * kernel * inputs * width + batch_norm

    laterals = conv_bn(1, c3) + conv_bn(1, c4) + conv_bn(1, c5)
    extra = 2 * conv_bn(1, width)  # L6, L7 (1x1 conv + BN, then a 2x2 max pool)
    guided = (9 * 2 * width + 1) + 1  # 3x3 conv 2C -> 1 with bias, temperature
    gate = 2 * width + 1  # 1x1 conv on concat(GAP a, GAP b), with bias
    fusion = conv_bn(3, width)  # ReLU -> 3x3 conv -> BN
    revfp = (
        (guided + gate + fusion)  # P3: pre-fusion only
        + 3 * (guided + 2 * gate + 2 * fusion)  # P4..P6: pre- and post-fusion
        + (gate + fusion)
    )  # P7: no upsampled input
    group = width // SHIFT_DIVISOR
    shift = 5 * (conv_bn(1, width + 4 * group) + width * width + width)  # reduce + BN, aggregate with bias
    context = 2 * ((width + 1) + (width * width + width))  # spatial and scale: logits, transform
    return laterals + extra + revfp + shift + context


@pytest.mark.parametrize(
    "channels, width, p6_from",
    [
        (RESNET50, 256, "C5"),
        (RESNET50, 256, "P5"),
        (RESNET18, 64, "C5"),
        (RESNET18, 48, "P5"),
    ],
)
def test_fpn_parameter_count_follows_the_formula(channels, width, p6_from):
    assert _neck_parameters("fpn", channels, width, p6_from=p6_from) == fpn_parameters(*channels, width, p6_from)


@pytest.mark.parametrize("channels, width", [(RESNET50, 256), (RESNET18, 64), (RESNET18, 48)])
def test_rcnet_parameter_count_follows_the_formula(channels, width):
    assert _neck_parameters("rcnet", channels, width) == rcnet_parameters(*channels, width)


def test_rcnet_outweighs_fpn_but_not_retinanets_p6_conv_on_a_2048_channel_c5():
    """At equal width RCNet has more weights than FPN's fusion; RetinaNet's P6 3x3/2 conv on
    ResNet-50's C5 alone (2048 -> 256, 4.7M) makes that FPN the heavier neck."""
    assert rcnet_parameters(*RESNET50, 256) == 6_678_802
    assert fpn_parameters(*RESNET50, 256, "P5") == 3_868_672
    assert fpn_parameters(*RESNET50, 256, "C5") == 7_997_440
    assert rcnet_parameters(*RESNET18, 256) == 5_990_674 > fpn_parameters(*RESNET18, 256, "C5") == 3_770_368


# -- both Keras flavours, int8 --------------------------------------------------------------


def _trained_pyramid(neck: str):
    """``(pyramid, training losses, calibration [16], probe [4])``: ResNet-18 + ``neck`` after
    5 Adam steps (3e-4) of a 4-class shapes classifier on its levels, as the backbone tests
    train theirs; input in [-1, 1].

    RCNet's attention and gate kernels start at zero (uniform attention, gates 0.5) and 5
    steps hardly move them, so they are drawn from N(0, 0.1) first to exercise those paths.
    """
    keras.utils.set_random_seed(11)
    pyramid = build_pyramid("resnet18", neck, (SIZE, SIZE, 3), channels=CHANNELS)
    rng = np.random.default_rng(5)
    for weight in pyramid.weights:
        if weight.path.endswith("kernel") and not np.any(weight.numpy()):
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
    images, labels = shapes_data(24, SIZE, seed=21)
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"head_pool_{k}")(v) for k, v in pyramid.output.items()]
    logits = keras.layers.Dense(len(SHAPE_CLASSES), name="head_logits")(
        keras.layers.Concatenate(name="head_concat")(pooled)
    )
    classifier = keras.Model(pyramid.input, logits)
    classifier.compile(
        optimizer=FusedAdam(3e-4),
        jit_compile=False,
        run_eagerly=True,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    losses = [float(classifier.train_on_batch(images[:8], labels[:8])) for _ in range(5)]
    return pyramid, losses, images[:16], images[16:20]


def _write_qat_spec(work, pyramid, neck: str, calibration, probe):
    spec = qat_job.QATJobSpec(
        "vision_core.necks:build_pyramid",
        {"backbone": "resnet18", "neck": neck, "input_shape": [SIZE, SIZE, 3], "channels": CHANNELS},
        batch_size=len(calibration),
    )
    return spec.write(work, weights_by_path(pyramid), {"calibration": calibration, "probe_x": probe})


each_neck = pytest.mark.parametrize(
    "run",
    [pytest.param(n, marks=[pytest.mark.slow, pytest.mark.xdist_group(f"neck-{n}")], id=n) for n in NECKS],
    indirect=True,
)


@pytest.fixture(scope="module")
def run(request, tmp_path_factory):
    neck = request.param
    pyramid, losses, calibration, probe = _trained_pyramid(neck)
    reference = {k: np.asarray(v) for k, v in pyramid(probe, training=False).items()}
    spec = _write_qat_spec(tmp_path_factory.mktemp(neck), pyramid, neck, calibration, probe)
    return {
        "neck": neck,
        "pyramid": pyramid,
        "losses": losses,
        "calibration": calibration,
        "probe": probe,
        "reference": reference,
        "spec": spec,
    }


@pytest.fixture(scope="module")
def qat_result(run):
    return qat_job.launch(run["spec"], timeout=900)


@each_neck
def test_a_few_training_steps_lower_the_loss_and_leave_every_level_alive(run):
    assert min(run["losses"][1:]) < run["losses"][0], run["losses"]
    for level, value in run["reference"].items():
        assert np.isfinite(value).all() and value.std() > 0.1, level


@each_neck
def test_tf_keras_twin_has_the_same_variable_paths_and_outputs(run, qat_result):
    # The job loads the float weights with assign_by_path(strict=True): any path missing on
    # either side, or a shape mismatch, fails it.
    twin = load_npz(run["spec"].parent / "qat" / "probe.npz")
    assert sorted(twin) == sorted(PYRAMID_LEVELS)
    for level, reference in run["reference"].items():
        assert np.abs(twin[level] - reference).max() < 1e-4, level


@each_neck
def test_int8_ptq_is_all_int8_and_every_level_agrees_with_float(run, record_property):
    flatbuffer = convert(run["pyramid"], "int8", [run["calibration"][i : i + 8] for i in range(0, 16, 8)])
    require_int8(flatbuffer)
    cosines = output_agreement(run["reference"], TFLiteModel(flatbuffer)(run["probe"]))
    record_property("cosines", cosines)
    assert sorted(cosines) == sorted(PYRAMID_LEVELS)
    assert min(cosines.values()) >= 0.98, cosines


@each_neck
def test_qat_model_converts_to_all_int8_and_follows_float(run, qat_result, record_property):
    assert qat_result["calibrated_ranges"] > 0
    path = run["spec"].parent / "qat" / "qat_int8.tflite"
    require_int8(str(path))
    # Not fine-tuned: TF-MOT's model with calibrated activation ranges, converted. Kernels
    # quantized on TF-MOT's initial +-6 ranges would give cosines near 0.4.
    cosines = output_agreement(run["reference"], TFLiteModel(str(path))(run["probe"]))
    record_property("cosines", cosines)
    assert min(cosines.values()) >= 0.98, cosines
