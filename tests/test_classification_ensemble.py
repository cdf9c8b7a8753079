"""Classifiers combined into one Keras model: the mean of the members' probabilities or their majority vote
(ties broken by the mean probability), with every member's layers renamed and its weights moved by path, and
an int8 TFLite form that passes the op audit."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import calibration, tiny_classifier

from tflite.audit import require_int8
from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.classification.ensemble import TIE_WEIGHT, MajorityVote, ensemble_model, member_weights
from vision_core.quant.convert import convert
from vision_core.storage.weights import assign_by_path, weights_by_path


def _vote(members, multi_label=False):
    layer = MajorityVote(multi_label)
    return np.asarray(layer([keras.ops.convert_to_tensor(np.asarray(m, np.float32)) for m in members]))


def test_each_member_votes_for_its_top_class_and_votes_outrank_probabilities():
    members = [[[0.5, 0.3, 0.2]], [[0.1, 0.6, 0.3]], [[0.05, 0.45, 0.5]]]  # votes: class 0, 1, 2 once each
    out = _vote(members)
    mean = np.mean(members, axis=0)
    np.testing.assert_allclose(out, (1 + TIE_WEIGHT * mean) / (3 + TIE_WEIGHT), rtol=1e-6)
    assert out.argmax() == 1  # equal votes: the highest mean probability (0.45) wins
    members = [[[0.34, 0.33, 0.33]], [[0.34, 0.33, 0.33]], [[0.0, 1.0, 0.0]]]  # class 0 twice, class 1 once
    out = _vote(members)
    np.testing.assert_allclose(out, ([2, 1, 0] + TIE_WEIGHT * np.mean(members, axis=0)) / (3 + TIE_WEIGHT), rtol=1e-6)
    assert out.argmax() == 0 and out.sum() == pytest.approx(1.0)  # two weak votes beat one certain one


def test_a_member_tied_between_classes_votes_for_the_first_as_argmax_does():
    out = _vote([[[0.4, 0.4, 0.2]], [[0.2, 0.4, 0.4]]])  # votes: class 0 and class 1, never two per member
    mean = np.array([0.3, 0.4, 0.3])
    np.testing.assert_allclose(out[0], ([1, 1, 0] + TIE_WEIGHT * mean) / (2 + TIE_WEIGHT), rtol=1e-6)
    assert out.sum() == pytest.approx(1.0)


def test_a_multi_label_vote_is_above_one_half_exactly_for_the_labels_most_members_call():
    members = [[[0.9, 0.6, 0.1, 0.49]], [[0.8, 0.2, 0.2, 0.51]], [[0.1, 0.7, 0.3, 0.52]]]
    out = _vote(members, multi_label=True)[0]
    np.testing.assert_allclose(out, ([2, 2, 0, 2] + TIE_WEIGHT * np.mean(members, axis=0)[0]) / 3.5, rtol=1e-6)
    assert (out > 0.5).tolist() == [True, True, False, True]
    even = _vote([[[0.9, 0.6]], [[0.2, 0.3]]], multi_label=True)[0]  # one vote each of two: the mean decides
    assert (even > 0.5).tolist() == [True, False]


def test_the_tie_weight_must_leave_a_vote_outweighing_any_probability():
    with pytest.raises(ValueError, match="between 0 and 1"):
        MajorityVote(tie_weight=1.0)


@pytest.fixture(scope="module")
def members():
    return [tiny_classifier(train_steps=3, seed=0), tiny_classifier(train_steps=3, seed=5)]


def _ensemble(members, combine, multi_label=False):
    model = ensemble_model(members, combine, multi_label)
    weights = {}
    for index, member in enumerate(members):
        weights.update(member_weights(weights_by_path(member), index))
    assert assign_by_path(model, weights) == []  # every variable found, by its prefixed path
    return model


def test_the_mean_ensemble_is_one_flat_model_averaging_the_members_softmaxes(members):
    model = _ensemble(members, "mean")
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names)) and "member0_stem" in names and "member1_logits" in names
    assert model.output_names == ["probabilities"] and not any(isinstance(layer, keras.Model) for layer in model.layers)
    images = calibration(8)[0]
    expected = np.mean([keras.ops.softmax(member(images)) for member in members], axis=0)
    np.testing.assert_allclose(model(images), expected, atol=1e-6)


def test_a_multi_label_ensemble_turns_each_member_s_logits_into_sigmoids(members):
    images = calibration(8)[0]
    sigmoids = [keras.ops.sigmoid(member(images)) for member in members]
    np.testing.assert_allclose(_ensemble(members, "mean", multi_label=True)(images), np.mean(sigmoids, 0), atol=1e-6)
    voted = np.asarray(_ensemble(members, "vote", multi_label=True)(images))
    np.testing.assert_allclose(voted, _vote(sigmoids, multi_label=True), atol=1e-6)


def test_members_of_other_input_shapes_or_class_counts_are_named(members):
    inputs = keras.Input((24, 24, 3), name="image")
    other = keras.Model(inputs, keras.layers.Dense(4, name="logits")(keras.layers.Flatten(name="f")(inputs)))
    with pytest.raises(ValueError, match=r"member 1 \(.*\) takes \(24, 24, 3\)"):
        ensemble_model([members[0], other])
    with pytest.raises(ValueError, match="at least two members"):
        ensemble_model(members[:1])


def test_the_int8_vote_ensemble_passes_the_audit_and_keeps_the_decided_votes(members):
    model = _ensemble(members, "vote")
    data = calibration(32)
    flatbuffer = convert(model, "int8", data)
    ops = {record.op for record in require_int8(flatbuffer)}
    assert {"GREATER_EQUAL", "SELECT_V2", "SOFTMAX"} <= ops
    runtime, images = TFLiteModel(flatbuffer), np.concatenate(data)
    float_scores = np.asarray(model(images))
    int8_scores = np.concatenate([runtime(image[None])["probabilities"] for image in images])
    top2 = np.sort(float_scores, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 0.1
    assert decided.sum() >= 8
    assert (float_scores.argmax(1) == int8_scores.argmax(1))[decided].all()
