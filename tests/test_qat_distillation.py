"""Distilling QAT fine-tunes: a multi-label (sigmoid) classifier is distilled label by label with the binary KL
of the float model's sigmoids, a single-label one with the softmax KL; the task chooses, the job computes the
float logits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import ROOT
from tiny_models import shapes, tiny_classifier
from toy_task import ToyTask

from apps.classify.config import PRESETS
from apps.classify.task import ClassifyTask
from vision_core.app import ship
from vision_core.backend import tf
from vision_core.data.synthetic import normalize
from vision_core.quant import qat_job
from vision_core.storage.weights import weights_by_path


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_the_binary_distillation_loss_is_the_mean_bernoulli_kl_of_each_label():
    loss = qat_job._loss("distillation_binary_kl_from_logits")
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(2, 5, 4)).astype(np.float32) * 3
    p, q = _sigmoid(teacher.astype(np.float64)), _sigmoid(student.astype(np.float64))
    expected = np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))
    np.testing.assert_allclose(float(loss({"teacher_logits": teacher}, {"logits": student})), expected, rtol=1e-5)
    assert abs(float(loss({"teacher_logits": teacher}, {"logits": teacher}))) < 1e-6
    # unlike a softmax KL, shifting every label's logit changes each label's probability: not a match
    assert float(loss({"teacher_logits": teacher}, {"logits": teacher + 2.0})) > 0.1


def test_its_gradient_is_the_binary_cross_entropy_one_on_the_teacher_probabilities():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(3, 4)).astype(np.float32)
    student = tf.Variable(rng.normal(size=(3, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        value = qat_job.distillation_binary_kl(teacher, student)
    expected = (_sigmoid(student.numpy()) - _sigmoid(teacher)) / student.numpy().size
    np.testing.assert_allclose(tape.gradient(value, student).numpy(), expected, rtol=1e-4, atol=1e-7)


def test_the_classify_task_distills_a_sigmoid_head_per_label_and_a_softmax_head_by_softmax_kl():
    task, config = ClassifyTask(), PRESETS["fundus_resnet18"]
    sigmoid = dataclasses.replace(config, model=dataclasses.replace(config.model, head="sigmoid"))
    assert task.qat_distillation_loss(config) == "distillation_kl_from_logits"
    assert task.qat_distillation_loss(sigmoid) == "distillation_binary_kl_from_logits"
    assert ToyTask().qat_distillation_loss(ToyTask.presets["small"]) == "distillation_kl_from_logits"


class _Launched(Exception):
    pass


@pytest.mark.parametrize("target", ["distillation", "task"])
def test_qat_hands_the_job_the_task_s_distillation_loss(tmp_path, monkeypatch, target):
    class MultiLabelToy(ToyTask):
        def qat_distillation_loss(self, config):
            return "distillation_binary_kl_from_logits"

    specs = []

    def launch(spec_path):
        specs.append(qat_job.QATJobSpec.read(spec_path))
        raise _Launched

    monkeypatch.setattr(qat_job, "launch", launch)
    task = MultiLabelToy()
    config = task.presets["small"]
    config = dataclasses.replace(config, qat=dataclasses.replace(config.qat, fine_tune_target=target))
    with pytest.raises(_Launched):
        ship.run_qat(task, task.build_model(config), config, tmp_path)
    expected = "distillation_binary_kl_from_logits" if target == "distillation" else task.qat_loss(config)[0]
    assert specs[0].loss == expected


@pytest.mark.slow
def test_a_binary_distilling_job_computes_the_float_logits_and_starts_at_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}:{ROOT}")  # the child builds tiny_models' classifier
    images, labels = shapes(16, seed=5)
    x = normalize(images)
    classifier = tiny_classifier(train_steps=2)
    float_weights, logits = weights_by_path(classifier), np.asarray(classifier(x, training=False))
    losses = {}
    for name, data in {"computed": {}, "given": {"target.teacher_logits": logits}}.items():
        spec = qat_job.QATJobSpec(
            "tiny_models:tiny_classifier", {}, steps=3, batch_size=8, loss="distillation_binary_kl_from_logits"
        )
        spec_path = spec.write(tmp_path / name, float_weights, {"calibration": x[:8], "train_x": x, **data})
        losses[name] = qat_job.launch(spec_path, timeout=600)["losses"]
    np.testing.assert_allclose(losses["computed"], losses["given"], rtol=1e-4)
    assert 0 <= losses["computed"][0] < 0.01  # student and teacher start as one model: only int8 noise
