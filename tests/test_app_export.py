"""The default export and bench commands on a trained toy run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_app_task import ToyTask, images
from tflite.runtime import TFLiteModel
from vision_core.app import runs
from vision_core.app.cli import main
from vision_core.backend import tf


@pytest.mark.slow
@pytest.mark.xdist_group("app_export")
def test_export_writes_a_savedmodel_and_tflite_that_match_keras_and_bench_times_them(tmp_path, capsys):
    assert main(ToyTask(), ["train", "--project", str(tmp_path), "--epochs", "1"]) == 0
    run = tmp_path / "exp"
    capsys.readouterr()
    assert main(ToyTask(), ["export", "--run", str(run), "--format", "saved_model", "tflite"]) == 0
    assert json.loads(capsys.readouterr().out) == {"saved_model": str(run / "exports/saved_model"),
                                                   "tflite": str(run / "exports/toy_float32.tflite")}
    model = runs.load_model(ToyTask(), ToyTask.presets["small"], runs.weights_path(run, "best"))
    x = images(2, 3)[0]
    served = tf.saved_model.load(str(run / "exports/saved_model")).signatures["serving_default"](image=x)
    np.testing.assert_allclose(served["logits"], model(x), atol=1e-6)
    tflite = TFLiteModel(str(run / "exports/toy_float32.tflite"))
    np.testing.assert_allclose(tflite(x[:1])["logits"], np.asarray(model(x[:1])), atol=1e-5)

    assert main(ToyTask(), ["bench", "--run", str(run), "--runs", "3", "--warmup", "1"]) == 0
    bench = json.loads((run / "bench.json").read_text())
    assert bench["keras"]["input_shape"] == [1, 16, 16, 1] and bench["keras"]["p50_ms"] > 0
    assert list(bench["tflite"]) == ["toy_float32.tflite"] and bench["tflite"]["toy_float32.tflite"][0]["threads"] == 1
