"""Several trained classifiers as one Keras model: their probabilities averaged (``mean``) or voted (``vote``).

:func:`ensemble_model` takes member classifiers of one input shape, each ``(B, H, W, C)`` float32 ->
logits float32 ``[B, K]`` with the same K, and builds one flat functional model over one shared input:

* each member's layers are cloned with the prefix ``member<i>_`` (:func:`member_prefix`), so layer names and
  variable paths stay unique (``member0_conv1_conv/kernel``): a member's weights enter the ensemble by path
  (:func:`member_weights`);
* each member's logits become probabilities in a ``Softmax`` (single-label) or a sigmoid (multi-label) named
  ``member<i>_probabilities``;
* ``mean``: an ``Average`` of them; ``vote``: :class:`MajorityVote`. Either is named ``probabilities``, so the
  output is read as probabilities everywhere (the evaluator, the TFLite export, MediaPipe).

Every op of either converts to int8 TFLite (the vote: REDUCE_MAX, GREATER_EQUAL, FULLY_CONNECTED, SELECT_V2,
ADD, MUL).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import numpy as np

from vision_core.backend import keras
from vision_core.layers.quantizable import QuantizableLayer, custom_layer

COMBINES = ("mean", "vote")
TIE_WEIGHT = 0.5  # < 1: the mean probability orders classes of equal votes and never overturns a vote


def member_prefix(index: int) -> str:
    """The prefix of member ``index``'s layer names and variable paths in the ensemble: ``member<index>_``."""
    return f"member{index}_"


def member_weights(weights: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """A member's weights by variable path (``weights_by_path``, a run's ``.weights.npz``) as the ensemble's."""
    return {member_prefix(index) + path: value for path, value in weights.items()}


@custom_layer
class MajorityVote(QuantizableLayer):
    """Majority vote of M members' class probabilities, ``[B, K]`` each -> ``[B, K]``.

    Single-label: each member votes for its top class (the first on ties, as ``argmax``); multi-label: for
    every class it gives a probability of at least 0.5. The output is ``(votes + w * mean probability) /
    (M + w)`` with ``w = tie_weight`` < 1: a class with more votes always ranks higher and classes of equal
    votes are ranked by their mean probability, so ROC curves see a graded score. A single-label row sums
    to 1; a multi-label score exceeds 0.5 exactly when most members vote for the class, or half of them do
    and the mean probability exceeds 0.5.
    """

    def __init__(self, multi_label: bool = False, tie_weight: float = TIE_WEIGHT, **kwargs):
        super().__init__(**kwargs)
        if not 0 < tie_weight < 1:
            raise ValueError(f"tie_weight {tie_weight}: must be between 0 and 1 (a vote outweighs any probability)")
        self.multi_label = multi_label
        self.tie_weight = tie_weight

    def call(self, members):
        votes = functools.reduce(operator.add, [self._votes(probabilities) for probabilities in members])
        mean = functools.reduce(operator.add, members) / len(members)
        return (votes + self.tie_weight * mean) / (len(members) + self.tie_weight)

    def _votes(self, probabilities):
        ops = keras.ops
        if self.multi_label:
            return ops.where(probabilities >= 0.5, 1.0, 0.0)
        at_top = ops.where(probabilities >= ops.max(probabilities, axis=-1, keepdims=True), 1.0, 0.0)
        classes = probabilities.shape[-1]
        before = np.triu(np.ones((classes, classes), np.float32), k=1)  # [j, k] = 1 when class j precedes k
        tops_before = ops.matmul(at_top, before)
        return ops.where(tops_before < 0.5, at_top, 0.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "multi_label": self.multi_label, "tie_weight": self.tie_weight}


def ensemble_model(
    members: Sequence[keras.Model], combine: str = "mean", multi_label: bool = False, name: str = "ensemble"
) -> keras.Model:
    """One model of ``members`` (see the module docstring): float32 images -> ``probabilities`` float32 [B, K].

    ``combine``: ``mean`` or ``vote`` (:class:`MajorityVote`); ``multi_label``: members' logits become
    probabilities through a sigmoid instead of a softmax. ValueError when fewer than two members are given or
    their input shapes or class counts differ (naming the member).
    """
    if combine not in COMBINES:
        raise ValueError(f"combine {combine!r}: expected one of {', '.join(COMBINES)}")
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    shape, classes = tuple(members[0].inputs[0].shape[1:]), members[0].outputs[0].shape[-1]
    for index, member in enumerate(members):
        if tuple(member.inputs[0].shape[1:]) != shape or member.outputs[0].shape[-1] != classes:
            raise ValueError(
                f"member {index} ({member.name}) takes {tuple(member.inputs[0].shape[1:])} and gives "
                f"{member.outputs[0].shape[-1]} classes; member 0 ({members[0].name}) {shape} and {classes}"
            )
    image = keras.Input(shape, name=members[0].layers[0].name)
    probabilities = []
    for index, member in enumerate(members):
        prefix = member_prefix(index)

        def renamed(layer, prefix=prefix):
            return layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})

        logits = keras.models.clone_model(member, input_tensors=image, clone_function=renamed).outputs[0]
        activation = (
            keras.layers.Activation("sigmoid", name=f"{prefix}probabilities")
            if multi_label
            else keras.layers.Softmax(name=f"{prefix}probabilities")
        )
        probabilities.append(activation(logits))
    if combine == "mean":
        combined = keras.layers.Average(name="probabilities")(probabilities)
    else:
        combined = MajorityVote(multi_label, name="probabilities")(probabilities)
    return keras.Model(image, combined, name=name)
