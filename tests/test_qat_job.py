"""The QAT job's fine-tune: eager and traced steps are the same computation, and batch norms
keep the float model's statistics, scale and offset unless asked to train.

Short fine-tunes run eagerly (tracing costs about 20 steps), longer ones as a tf.function; the
tests elsewhere run a few steps, so the first test pins the traced path to the eager one.
"""

import json

import numpy as np
import pytest

from conftest import ROOT
from tiny_models import shapes, tiny_bn_classifier, tiny_classifier
from vision_core.backend import keras
from vision_core.data.synthetic import normalize
from vision_core.quant import qat_job
from vision_core.weights import load_npz, save_npz, weights_by_path

pytestmark = pytest.mark.slow


def test_eager_and_traced_fine_tunes_give_the_same_losses_and_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}:{ROOT}")  # the child builds tiny_models' classifier
    images, labels = shapes(16, seed=3)
    x = normalize(images)
    float_weights = weights_by_path(tiny_classifier(train_steps=5))
    results, weights = {}, {}
    for eager in (True, False):
        work = tmp_path / ("eager" if eager else "traced")
        work.mkdir()
        save_npz(float_weights, work / "float.npz")
        save_npz({"calibration": x[:8], "train_x": x, "train_y": labels}, work / "data.npz")
        spec = {"builder": "tiny_models:tiny_classifier", "kwargs": {}, "weights": "float.npz", "data": "data.npz",
                "steps": 3, "batch_size": 8, "learning_rate": 1e-3, "eager": eager, "out_dir": "qat"}
        (work / "spec.json").write_text(json.dumps(spec))
        results[eager] = qat_job.launch(work / "spec.json", timeout=600)
        weights[eager] = load_npz(work / "qat" / "qat.weights.npz")
    assert (results[True]["eager"], results[False]["eager"]) == (True, False)
    assert len(results[True]["losses"]) == 3
    np.testing.assert_allclose(results[False]["losses"], results[True]["losses"], rtol=1e-5)
    assert results[True]["losses"][2] != results[True]["losses"][0]  # the steps moved the weights
    assert sorted(weights[False]) == sorted(weights[True])
    for path, value in weights[True].items():
        np.testing.assert_allclose(weights[False][path], value, rtol=1e-4, atol=1e-6, err_msg=path)


BATCH_NORM_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def test_the_fine_tune_freezes_batch_norms_unless_told_to_train_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}:{ROOT}")  # the child builds tiny_models' classifier
    images, labels = shapes(16, seed=3)
    x = normalize(images)
    model = tiny_bn_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for _ in range(3):  # moves every batch-norm variable off its initial value
        model.train_on_batch(x, labels)
    float_weights = weights_by_path(model)
    results, weights = {}, {}
    for freeze in (True, False):
        work = tmp_path / ("frozen" if freeze else "trained")
        work.mkdir()
        save_npz(float_weights, work / "float.npz")
        save_npz({"calibration": x[:8], "train_x": x, "train_y": labels}, work / "data.npz")
        spec = {"builder": "tiny_models:tiny_bn_classifier", "kwargs": {}, "weights": "float.npz",
                "data": "data.npz", "steps": 3, "batch_size": 8, "learning_rate": 1e-3, "out_dir": "qat"}
        if not freeze:
            spec["freeze_batch_norm"] = False
        (work / "spec.json").write_text(json.dumps(spec))
        results[freeze] = qat_job.launch(work / "spec.json", timeout=600)
        weights[freeze] = load_npz(work / "qat" / "qat.weights.npz")
    assert results[True]["frozen_batch_norms"] == 2  # stem_bn (folded into the conv) and post_bn
    assert "frozen_batch_norms" not in results[False]
    for freeze, qat_weights in weights.items():
        assert not np.array_equal(qat_weights["quant_stem/kernel"], float_weights["stem/kernel"])
        for bn in ("stem_bn", "post_bn"):
            for variable in BATCH_NORM_VARIABLES:
                kept = np.array_equal(qat_weights[f"quant_{bn}/{bn}/{variable}"], float_weights[f"{bn}/{variable}"])
                assert kept == freeze, (freeze, bn, variable)
