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
from vision_core.quant.int8_check import write_qat_spec
from vision_core.storage.weights import load_npz, weights_by_path

pytestmark = pytest.mark.slow


def _fine_tune(
    work, builder: str, float_weights: dict, x, labels, data: dict | None = None, **spec_options
) -> tuple[dict, dict]:
    """3 QAT steps (batch 8, 1e-3) of ``tiny_models.<builder>`` from ``float_weights``, with ``data``
    added to the job's data; (result, QAT weights)."""
    spec = qat_job.QATJobSpec(f"tiny_models:{builder}", {}, steps=3, batch_size=8, learning_rate=1e-3, **spec_options)
    spec_path = spec.write(work, float_weights, {"calibration": x[:8], "train_x": x, "train_y": labels, **(data or {})})
    return qat_job.launch(spec_path, timeout=600), load_npz(work / "qat" / "qat.weights.npz")


def test_eager_and_traced_fine_tunes_give_the_same_losses_and_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}:{ROOT}")  # the child builds tiny_models' classifier
    images, labels = shapes(16, seed=3)
    x = normalize(images)
    float_weights = weights_by_path(tiny_classifier(train_steps=5))
    results, weights = {}, {}
    for eager in (True, False):
        work = tmp_path / ("eager" if eager else "traced")
        results[eager], weights[eager] = _fine_tune(work, "tiny_classifier", float_weights, x, labels, eager=eager)
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
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        jit_compile=False,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    for _ in range(3):  # moves every batch-norm variable off its initial value
        model.train_on_batch(x, labels)
    float_weights = weights_by_path(model)
    results, weights = {}, {}
    for freeze in (True, False):
        work = tmp_path / ("frozen" if freeze else "trained")
        options = {} if freeze else {"freeze_batch_norm": False}  # frozen is the default
        results[freeze], weights[freeze] = _fine_tune(work, "tiny_bn_classifier", float_weights, x, labels, **options)
    assert results[True]["frozen_batch_norms"] == 2  # stem_bn (folded into the conv) and post_bn
    assert "frozen_batch_norms" not in results[False]
    for freeze, qat_weights in weights.items():
        assert not np.array_equal(qat_weights["quant_stem/kernel"], float_weights["stem/kernel"])
        for bn in ("stem_bn", "post_bn"):
            for variable in BATCH_NORM_VARIABLES:
                kept = np.array_equal(qat_weights[f"quant_{bn}/{bn}/{variable}"], float_weights[f"{bn}/{variable}"])
                assert kept == freeze, (freeze, bn, variable)


def test_the_distillation_loss_is_the_kl_divergence_from_the_float_logits():
    loss = qat_job._loss("distillation_kl_from_logits")
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(2, 5, 4)).astype(np.float32) * 3
    p = np.exp(teacher) / np.exp(teacher).sum(-1, keepdims=True)
    q = np.exp(student) / np.exp(student).sum(-1, keepdims=True)
    expected = np.mean(np.sum(p * np.log(p / q), -1))
    np.testing.assert_allclose(float(loss({"teacher_logits": teacher}, {"predictions": student})), expected, rtol=1e-5)
    assert abs(float(loss({"teacher_logits": teacher}, {"predictions": teacher}))) < 1e-6
    # shifting every logit of an image leaves its probabilities, so the loss too
    assert abs(float(loss({"teacher_logits": teacher}, {"predictions": teacher + 7.0}))) < 1e-5


def test_an_unknown_loss_names_the_known_ones():
    with pytest.raises(ValueError, match="distillation_kl_from_logits"):
        qat_job._loss("focal")


def test_a_distilling_job_takes_the_float_logits_from_the_data_or_computes_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}:{ROOT}")  # the child builds tiny_models' classifier
    images, labels = shapes(16, seed=5)
    x = normalize(images)
    classifier = tiny_classifier(train_steps=2)
    float_weights, logits = weights_by_path(classifier), np.asarray(classifier(x, training=False))
    teachers = {
        "computed": None,
        "given": {"target.teacher_logits": logits},
        "other": {"target.teacher_logits": 5 * np.eye(4, dtype=np.float32)[(labels + 1) % 4]},
    }
    losses = {}
    for name, data in teachers.items():
        result, _ = _fine_tune(
            tmp_path / name, "tiny_classifier", float_weights, x, labels, data, loss="distillation_kl_from_logits"
        )
        losses[name] = result["losses"]
    np.testing.assert_allclose(losses["computed"], losses["given"], rtol=1e-4)
    assert losses["computed"][0] < 0.05 < losses["other"][0]  # student and teacher start as one model


def test_a_distilling_spec_names_the_loss_and_leaves_the_logits_to_the_job(tmp_path):
    images, labels = shapes(8, seed=5)
    classifier = tiny_classifier(train_steps=2)
    spec_path = write_qat_spec(
        tmp_path,
        classifier,
        "tiny",
        32,
        normalize(images),
        labels,
        normalize(images[:2]),
        steps=4,
        distill=True,
        freeze_batch_norm=False,
    )
    spec = json.loads(spec_path.read_text())
    assert (spec["loss"], spec["freeze_batch_norm"]) == ("distillation_kl_from_logits", False)
    data = load_npz(tmp_path / spec["data"])
    assert "target.teacher_logits" not in data and data["train_y"].tolist() == labels.tolist()
