"""Which form a model comes in: the one dispatch every task's runner loader uses."""

import pytest

from vision_core.backend import keras
from vision_core.export.forms import model_form


def test_each_form_is_told_apart_and_its_source_kept(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert model_form(model) == ("keras", model)
    assert model_form(b"TFL3") == ("tflite", b"TFL3")
    for suffix, form in ((".keras", "keras"), (".tflite", "tflite"), (".onnx", "onnx")):
        path = tmp_path / f"m{suffix}"
        path.write_bytes(b"")
        assert model_form(str(path)) == (form, path)


def test_a_bad_model_is_named_with_its_problem(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"m\.pt: unknown detector format '\.pt': expected \.keras, \.tflite, \.onnx"):
        model_form(tmp_path / "m.pt", "detector")
    with pytest.raises(FileNotFoundError, match=r"missing\.tflite: no such model file"):
        model_form(tmp_path / "missing.tflite")
    with pytest.raises(TypeError, match="cannot run int"):
        model_form(3)
