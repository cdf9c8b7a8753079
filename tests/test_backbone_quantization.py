"""Every backbone trains, converts to an all-int8 TFLite that agrees with it, builds
identically in tf_keras, and quantizes with TF-MOT to an all-int8 TFLite.

One module-scoped run per backbone (64x64 input, built-in shapes) feeds the tests.
"""

import json

import numpy as np
import pytest

from tflite.audit import require_int8
from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.backbones import FEATURE_NAMES, build_backbone
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set, normalize
from vision_core.quant import qat_job
from vision_core.quant.convert import convert
from vision_core.weights import assign_by_path, load_npz, save_npz, weights_by_path
from test_backbones import REQUIRED

pytestmark = pytest.mark.slow
SIZE = 64
TRAIN_STEPS = 6


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.fixture(scope="module", params=REQUIRED)
def trained(request, tmp_path_factory):
    name = request.param
    work = tmp_path_factory.mktemp(name)
    keras.utils.set_random_seed(7)
    images, labels = classification_set(96, SIZE, seed=11)
    x = normalize(images)
    classifier = build_backbone(name, (SIZE, SIZE, 3), num_classes=len(SHAPE_CLASSES))
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = [float(classifier.train_on_batch(x[:16], labels[:16])) for _ in range(TRAIN_STEPS)]
    weights = weights_by_path(classifier)
    save_npz(weights, work / "float.npz")
    probe = normalize(classification_set(4, SIZE, seed=99)[0])
    save_npz({"calibration": x[:32], "train_x": x, "train_y": labels, "probe_x": probe}, work / "data.npz")
    spec = {
        "builder": "vision_core.backbones:build_backbone",
        "kwargs": {"name": name, "input_shape": [SIZE, SIZE, 3], "num_classes": len(SHAPE_CLASSES)},
        "weights": "float.npz", "data": "data.npz", "steps": 2, "batch_size": 8, "out_dir": "qat",
    }
    (work / "spec.json").write_text(json.dumps(spec))
    return {"name": name, "work": work, "classifier": classifier, "weights": weights, "x": x,
            "probe": probe, "losses": losses, "spec": work / "spec.json"}


def test_a_few_training_steps_lower_the_loss(trained):
    losses = trained["losses"]
    assert losses[-1] < losses[0], losses


def test_int8_ptq_is_all_int8_and_features_agree_with_float(trained):
    features = build_backbone(trained["name"], (SIZE, SIZE, 3))
    assign_by_path(features, trained["weights"], strict=False)
    x = trained["x"]
    flatbuffer = convert(features, "int8", [x[i:i + 8] for i in range(0, 32, 8)])
    require_int8(flatbuffer)
    int8 = TFLiteModel(flatbuffer)(trained["probe"])
    reference = features(trained["probe"], training=False)
    cosines = {k: _cosine(reference[k], int8[k]) for k in FEATURE_NAMES}
    assert min(cosines.values()) >= 0.98, cosines


@pytest.fixture(scope="module")
def qat_result(trained):
    return qat_job.launch(trained["spec"], timeout=1200)


def test_tf_keras_twin_has_the_same_variable_paths_and_outputs(trained, qat_result):
    twin = load_npz(trained["work"] / "qat" / "probe.npz")["output"]
    reference = np.asarray(trained["classifier"](trained["probe"], training=False))
    np.testing.assert_allclose(twin, reference, atol=1e-4 * max(1.0, np.abs(reference).max()))


def test_qat_model_converts_to_all_int8(trained, qat_result):
    assert qat_result["calibrated_ranges"] > 0
    require_int8(str(trained["work"] / "qat" / "qat_int8.tflite"))
    assert all(np.isfinite(qat_result["losses"]))
