import numpy as np
import pytest

from vision_core.backend import keras
from vision_core.storage.weights import (
    assign_by_path,
    load_npz,
    save_npz,
    weights_by_path,
)


def _model(width=4):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(width, 3, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    return keras.Model(inputs, x, name="tiny")


def test_paths_name_the_owning_layers():
    assert sorted(weights_by_path(_model())) == [
        "stem_bn/beta",
        "stem_bn/gamma",
        "stem_bn/moving_mean",
        "stem_bn/moving_variance",
        "stem_conv/bias",
        "stem_conv/kernel",
    ]


def test_copy_by_path_reproduces_outputs(tmp_path):
    source, target = _model(), _model()
    for v in source.weights:
        v.assign(np.random.default_rng(0).normal(size=v.shape).astype("float32") ** 2)
    save_npz(weights_by_path(source), tmp_path / "w.npz")
    assert assign_by_path(target, load_npz(tmp_path / "w.npz")) == []
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(source(x), target(x))


def test_mismatch_names_every_offending_path():
    weights = weights_by_path(_model(width=4))
    weights["extra/kernel"] = np.zeros(1)
    del weights["stem_bn/beta"]
    with pytest.raises(ValueError) as error:
        assign_by_path(_model(width=5), weights)
    message = str(error.value)
    assert "missing in weights: stem_bn/beta" in message
    assert "not in model: extra/kernel" in message
    assert "stem_conv/kernel: model (3, 3, 3, 5) vs weights (3, 3, 3, 4)" in message


def test_non_strict_copy_returns_the_paths_left_untouched():
    weights = weights_by_path(_model())
    del weights["stem_conv/bias"]
    assert assign_by_path(_model(), weights, strict=False) == ["stem_conv/bias"]


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_npz({"a/kernel": np.ones(3, np.float32)}, tmp_path / "w.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]
    np.testing.assert_array_equal(load_npz(tmp_path / "w.npz")["a/kernel"], np.ones(3))
