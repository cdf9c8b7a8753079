"""Every backbone builds identically in tf_keras; the backbones whose full chain runs here also
train, convert to an all-int8 TFLite that agrees with them, and quantize with TF-MOT to an
all-int8 TFLite.

One module-scoped run per backbone (64x64 input, built-in shapes) feeds its tests; each
backbone is one xdist group, so its run happens once, on one worker. The heaviest
backbones come first so the two workers finish together.

The full chain runs here for one backbone of each block type: RevCol-T, ese-VoVNet-39 (the
eSE, identity and non-depthwise OSA modules), ese-VoVNet-19-slim (depthwise OSA), ResNet-50
(bottleneck), EMOv2-1M and MobileNetV2. The others repeat a sibling's blocks with other repeat
counts and widths, which the build and parameter tests check; here they get the twin check
only, on seeded random weights (every variable moved off its initialiser, so a swapped scale
and offset shows), and their training and both int8 conversions run in
``benchmarks/backbone_int8.py``: RevCol-S and -B (RevCol-T's columns; on a 2-core CPU their
chain takes 11 and ~25 minutes), ResNet-101 (ResNet-50's blocks), ResNet-18 and -34 (the basic
block, which ships through post-training and QAT int8 with the all-int8 audit in the demo's
test, ``tests/test_backbones_cli.py``), VoVNet-39 and -57 (ese-VoVNet-39's OSA modules without
eSE and identity), ese-VoVNet-19 and -57, and EMOv2-2M and -5M. This keeps the suite well under
30 minutes.
"""

import numpy as np
import pytest
from test_backbones import REQUIRED

from tflite.audit import require_int8
from vision_core.backbones import FEATURE_NAMES, build_backbone
from vision_core.data.synthetic import SHAPE_CLASSES
from vision_core.quant import qat_job
from vision_core.quant.int8_check import (
    ptq_feature_agreement,
    shapes_data,
    train_briefly,
    write_qat_spec,
)
from vision_core.storage.weights import load_npz, weights_by_path

pytestmark = pytest.mark.slow
SIZE = 64
CONVERSIONS_IN_BENCHMARK = [
    "revcol_b",
    "revcol_s",
    "resnet101",
    "ese_vovnet57",
    "vovnet57",
    "vovnet39",
    "emov2_5m",
    "emov2_2m",
    "resnet34",
    "resnet18",
    "ese_vovnet19",
]
FULL_CHAIN = ["revcol_t", "ese_vovnet39", "resnet50", "emov2_1m", "mobilenet_v2", "ese_vovnet19_slim"]


def _one_group_each(names):
    return [pytest.param(name, marks=pytest.mark.xdist_group(name), id=name) for name in names]


# FULL_CHAIN first in both lists: pytest groups tests by a module-scoped fixture's param
# *index*, so equal indices keep each backbone's run alive across its tests (different
# indices interleave the backbones and rebuild every run for every test).
every_backbone = pytest.mark.parametrize(
    "trained", _one_group_each(FULL_CHAIN + CONVERSIONS_IN_BENCHMARK), indirect=True
)
full_chain = pytest.mark.parametrize("trained", _one_group_each(FULL_CHAIN), indirect=True)


def test_the_lists_cover_every_required_backbone_once():
    assert sorted(CONVERSIONS_IN_BENCHMARK + FULL_CHAIN) == sorted(REQUIRED)


def _with_random_weights(name: str):
    """``name``'s classifier with every variable moved off its initialiser by seeded noise of +-0.05
    (batch-norm variances stay positive), and the training images and labels."""
    classifier = build_backbone(name, (SIZE, SIZE, 3), num_classes=len(SHAPE_CLASSES))
    rng = np.random.default_rng(5)
    for variable in classifier.weights:
        variable.assign(np.asarray(variable) + rng.uniform(-0.05, 0.05, variable.shape).astype("float32"))
    x, labels = shapes_data(16, SIZE, seed=11)
    return classifier, x, labels


@pytest.fixture(scope="module")
def trained(request, tmp_path_factory):
    name = request.param
    if name in FULL_CHAIN:  # 5 steps move the weights far enough from initialisation for the int8 checks
        classifier, losses, x, labels = train_briefly(name, SIZE, steps=5)
    else:
        classifier, x, labels = _with_random_weights(name)
        losses = None
    probe, _ = shapes_data(4, SIZE, seed=99)
    spec = write_qat_spec(
        tmp_path_factory.mktemp(name), classifier, name, SIZE, x, labels, probe, steps=0, quantize=name in FULL_CHAIN
    )
    return {"name": name, "classifier": classifier, "losses": losses, "x": x, "probe": probe, "spec": spec}


@pytest.fixture(scope="module")
def qat_result(trained):
    return qat_job.launch(trained["spec"], timeout=1200)


@full_chain
def test_a_few_training_steps_lower_the_loss(trained):
    losses = trained["losses"]
    assert min(losses[1:]) < losses[0], losses


@every_backbone
def test_tf_keras_twin_has_the_same_variable_paths_and_outputs(trained, qat_result):
    twin = load_npz(trained["spec"].parent / "qat" / "probe.npz")["output"]
    reference = np.asarray(trained["classifier"](trained["probe"], training=False))
    np.testing.assert_allclose(twin, reference, atol=1e-4 * max(1.0, np.abs(reference).max()))


@full_chain
def test_int8_ptq_is_all_int8_and_features_agree_with_float(trained):
    cosines, flatbuffer = ptq_feature_agreement(
        trained["name"], SIZE, weights_by_path(trained["classifier"]), trained["x"][:32], trained["probe"]
    )
    require_int8(flatbuffer)
    assert sorted(cosines) == sorted(FEATURE_NAMES)
    assert min(cosines.values()) >= 0.98, cosines


# RevCol-T: each ConvNeXt block's norm (into pwconv1) and layer scale (after pwconv2), 10 blocks x 4
# columns, and the head norm; EMOv2-1M: the norms before each stage's first (expanding) 1x1 conv
FOLDED = {"revcol_t": {"layer_norms": 41, "channel_scales": 40}, "emov2_1m": {"layer_norms": 2, "channel_scales": 0}}


@full_chain
def test_qat_folds_the_per_channel_scales_next_to_linear_layers(trained, qat_result):
    assert qat_result["folded"] == FOLDED.get(trained["name"], {"layer_norms": 0, "channel_scales": 0})


@full_chain
def test_qat_model_converts_to_all_int8(trained, qat_result):
    assert qat_result["calibrated_ranges"] > 0
    require_int8(str(trained["spec"].parent / "qat" / "qat_int8.tflite"))
