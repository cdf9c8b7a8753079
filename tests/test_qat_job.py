"""The QAT job's fine-tune: eager and traced steps are the same computation.

Short fine-tunes run eagerly (tracing costs about 20 steps), longer ones as a tf.function; the
tests elsewhere run a few steps, so this test pins the traced path to the eager one.
"""

import json

import numpy as np
import pytest

from conftest import ROOT
from tiny_models import shapes, tiny_classifier
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
