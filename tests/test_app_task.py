"""The Task contract's defaults, on the toy task (``tests/toy_task.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from toy_task import SIZE, ToyTask, images

from vision_core.app.task import Task
from vision_core.errors import NotSupported


def test_toy_task_is_a_task_with_headline_in_its_evaluation():
    task = ToyTask()
    config = task.presets["small"]
    metrics = task.evaluate(task.build_model(config), config)
    assert isinstance(task, Task) and task.headline_metric in metrics and metrics["samples"] == 32


def test_a_task_missing_an_abstract_method_cannot_be_built():
    class Incomplete(Task):
        name = "incomplete"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_default_predict_and_shipping_hooks_say_the_task_does_not_support_them(tmp_path):
    class Plain(ToyTask):
        model_info = Task.model_info
        qat_builder = Task.qat_builder

    task, config = Plain(), ToyTask.presets["small"]
    with pytest.raises(NotSupported, match="task 'toy' does not implement predict"):
        task.predict(None, [], config, tmp_path)
    with pytest.raises(NotSupported, match="task 'toy' does not implement qat"):
        task.qat(None, config, tmp_path)
    with pytest.raises(NotSupported, match="task 'toy' does not describe its exports"):
        task.export(None, config, tmp_path, ["tflite"])


def test_default_check_data_counts_batches_and_samples():
    assert ToyTask().check_data(ToyTask.presets["small"]) == {
        "train": {"batches": 4, "samples": 64},
        "val": {"batches": 2, "samples": 32},
    }


def test_default_representative_data_is_float32_val_batches():
    batches = list(ToyTask().representative_data(ToyTask.presets["small"], batches=3))
    assert [b.shape for b in batches] == [(16, SIZE, SIZE, 1), (16, SIZE, SIZE, 1)]
    assert all(b.dtype == np.float32 for b in batches)


def test_the_default_shipped_model_is_the_trained_one_and_qat_data_are_the_first_training_images():
    task, config = ToyTask(), ToyTask.presets["small"]
    model = task.build_model(config)
    assert task.inference_model(model, config) is model
    data = task.qat_data(config, 5)
    assert sorted(data) == ["train_x", "train_y"]
    assert data["train_x"].shape == (5, SIZE, SIZE, 1) and data["train_y"].shape == (5,)
    x, y = images(64, 7)  # the training images; the shuffle draws them in another order
    rows = {x[i].tobytes(): y[i] for i in range(64)}
    assert [rows[image.tobytes()] for image in data["train_x"]] == data["train_y"].tolist()
