"""Keras 3 Adam whose per-variable update is TensorFlow's fused ``ResourceApplyAdam`` kernel.

Keras' Adam updates each variable with about ten Keras ops. Run eagerly, every op pays
Python dispatch, so a short eager fine-tune of a large graph spends most of its time in the
optimizer: one RevCol-B step at 64 px, batch 8, took 32 s, 18 s of them in 1448 Adam updates
(12.5 ms each); with the fused kernel the step takes 13 s (``tests/test_fused_adam.py``
checks the weights against Keras' Adam). The update rule is the same (Kingma & Ba with
Keras' epsilon outside the square root): ``alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``,
``m += (g - m)(1 - beta1)``, ``v += (g^2 - v)(1 - beta2)``, ``w -= alpha m / (sqrt(v) + eps)``;
results differ from Keras' by float32 rounding only. Gradient clipping, weight decay, EMA and
learning-rate schedules stay with Keras' base optimizer. Keras 3 flavour only.
"""

from __future__ import annotations

from vision_core.backend import is_keras3, keras, tf


class FusedAdam(keras.optimizers.Adam):
    """:class:`keras.optimizers.Adam` (no AMSGrad) with one fused kernel per float32 variable."""

    def __init__(self, *args, **kwargs):
        if not is_keras3():
            raise RuntimeError("FusedAdam is a Keras 3 optimizer; the tf_keras flavour has its own Adam")
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("FusedAdam has no AMSGrad variant: use keras.optimizers.Adam(amsgrad=True)")
        self._step_scalars: dict | None = None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.constant(self.beta_1, tf.float32), tf.constant(self.beta_2, tf.float32)
        self._step_scalars = {
            "beta1_power": tf.pow(beta_1, step),
            "beta2_power": tf.pow(beta_2, step),
            "lr": tf.cast(learning_rate, tf.float32),
            "beta1": beta_1,
            "beta2": beta_2,
            "epsilon": tf.constant(self.epsilon, tf.float32),
        }
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        if tf.as_dtype(variable.dtype) != tf.float32:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            grad=tf.cast(gradient, tf.float32),
            **self._step_scalars,
        )
