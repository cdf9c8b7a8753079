"""FusedAdam follows Keras' Adam to float32 rounding, eagerly and traced, with one fused kernel per variable."""

import numpy as np
import pytest

from vision_core.backend import keras, tf
from vision_core.training.fused_adam import FusedAdam


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    # No conv bias: before a batch norm its gradient is zero up to rounding, which Adam would
    # scale up to learning-rate-sized steps that differ between any two implementations.
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def _trained(optimizer, run_eagerly: bool, steps: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 3)).astype(np.float32), rng.integers(0, 3, 16)
    model = _model()
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
        run_eagerly=run_eagerly,
    )
    for _ in range(steps):
        model.train_on_batch(x, y)
    return [w.numpy() for w in model.weights]


@pytest.mark.parametrize("run_eagerly", [True, False])
@pytest.mark.parametrize(
    "options",
    [
        {"learning_rate": 1e-2},
        {
            "learning_rate": keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.5),
            "beta_1": 0.8,
            "epsilon": 1e-4,
            "global_clipnorm": 0.5,
        },
    ],
    ids=["constant", "schedule-clipnorm"],
)
def test_weights_follow_keras_adam_to_rounding(options, run_eagerly):
    ours = _trained(FusedAdam(**options), run_eagerly)
    theirs = _trained(keras.optimizers.Adam(**options), run_eagerly)
    initial = [w.numpy() for w in _model().weights]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert max(np.abs(a - start).max() for a, start in zip(ours, initial)) > 0.01  # the weights did move


def test_each_variable_is_updated_by_one_fused_kernel():
    model = _model()
    optimizer = FusedAdam(1e-3)
    variables = model.trainable_variables
    optimizer.build(variables)
    apply = tf.function(lambda grads: optimizer.apply(grads, variables))
    graph = apply.get_concrete_function([tf.TensorSpec(v.shape, tf.float32) for v in variables]).graph
    ops = [op.type for op in graph.get_operations()]
    assert (
        ops.count("ResourceApplyAdam") == len(variables) == 5
    )  # conv kernel, bn scale and offset, dense kernel and bias


def test_amsgrad_is_refused():
    with pytest.raises(ValueError, match="no AMSGrad"):
        FusedAdam(1e-3, amsgrad=True)
