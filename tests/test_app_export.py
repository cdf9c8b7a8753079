"""The framework's shipping on a trained toy run: qat, export of every form, the every-form table, bench."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT
from toy_task import ToyTask, images

from tflite.audit import require_int8
from tflite.metadata import read_metadata
from tflite.runtime import TFLiteModel
from vision_core.app import runs
from vision_core.app.cli import main
from vision_core.app.ship import expand_forms
from vision_core.backend import tf
from vision_core.errors import AppError


def test_format_groups_expand_in_a_fixed_order_and_unknown_forms_are_named():
    assert expand_forms(["onnx", "tflite"]) == ["float32", "float16", "int8", "int16x8", "onnx"]
    assert expand_forms(["all"], offered=("float32", "int8", "saved_model")) == ["float32", "int8", "saved_model"]
    with pytest.raises(AppError, match="unknown export format 'int4'"):
        expand_forms(["int4"])


@pytest.mark.slow
@pytest.mark.xdist_group("app_export")
def test_qat_then_export_ship_every_form_scored_by_one_evaluator(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}:{ROOT}")  # the QAT child builds the toy model
    assert main(ToyTask(), ["train", "--project", str(tmp_path), "--epochs", "1"]) == 0
    run = tmp_path / "exp"
    capsys.readouterr()

    assert main(ToyTask(), ["qat", "--run", str(run)]) == 0
    qat = json.loads(capsys.readouterr().out)
    assert qat["steps"] == 3 and qat["qat_int8"] == str(run / "qat" / "qat_int8.tflite")
    assert [row["form"] for row in qat["forms"]] == ["float keras", "qat_int8.tflite"]
    require_int8((run / "qat" / "qat_int8.tflite").read_bytes(), source="toy QAT")

    served = tmp_path / "served"
    assert main(ToyTask(), ["export", "--run", str(run), "--format", "all", "--saved-models", str(served)]) == 0
    result = json.loads(capsys.readouterr().out)
    exports = run / "exports"
    assert result["files"] == {
        "float32": str(exports / "toy_float32.tflite"),
        "float16": str(exports / "toy_float16.tflite"),
        "int8": str(exports / "toy_int8.tflite"),
        "int16x8": str(exports / "toy_int16x8.tflite"),
        "int8_qat": str(exports / "toy_int8_qat.tflite"),
        "saved_model": str(served / "toy_exp" / "1"),
        "models_config": str(served / "models.config"),
        "onnx": str(exports / "toy.onnx"),
        "int8_onnx": str(exports / "toy_int8.onnx"),
    }
    for form in ("int8", "int8_qat"):
        require_int8((exports / f"toy_{form}.tflite").read_bytes(), source=form)
        assert read_metadata(exports / f"toy_{form}.tflite").labels == ["dark", "bright"]

    model = runs.load_model(ToyTask(), ToyTask.presets["small"], runs.weights_path(run, "best"))
    x = images(2, 3)[0]
    signatures = tf.saved_model.load(str(served / "toy_exp" / "1")).signatures
    np.testing.assert_allclose(signatures["serving_default"](image=x)["logits"], model(x), atol=1e-6)
    float_file = TFLiteModel(str(exports / "toy_float32.tflite"))
    probabilities = np.asarray(tf.nn.softmax(model(x[:1])))
    np.testing.assert_allclose(float_file(x[:1])["probabilities"], probabilities, atol=1e-5)

    rows = json.loads((exports / "forms.json").read_text())
    assert result["forms"] == rows
    assert [row["form"] for row in rows] == [
        "float keras",
        "toy_float32.tflite",
        "toy_float16.tflite",
        "toy_int8.tflite",
        "toy_int16x8.tflite",
        "toy_int8_qat.tflite",
        "toy.onnx",
        "toy_int8.onnx",
    ]
    assert rows[0]["accuracy_delta"] == 0.0 and all(row["samples"] == 32 for row in rows)
    float_forms = {row["form"]: row for row in rows if row["form"] in ("toy_float32.tflite", "toy.onnx")}
    assert all(row["accuracy"] == rows[0]["accuracy"] for row in float_forms.values())

    assert main(ToyTask(), ["bench", "--run", str(run), "--runs", "3", "--warmup", "1"]) == 0
    bench = json.loads((run / "bench.json").read_text())
    assert bench["keras"]["input_shape"] == [1, 16, 16, 1] and bench["keras"]["p50_ms"] > 0
    assert sorted(bench["tflite"]) == [
        "toy_float16.tflite",
        "toy_float32.tflite",
        "toy_int16x8.tflite",
        "toy_int8.tflite",
        "toy_int8_qat.tflite",
    ]
