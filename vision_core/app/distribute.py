"""``--strategy`` and ``--mixed-precision``: the tf.distribute strategy and Keras dtype policy of a run.

Strategies are TensorFlow's own: ``default`` (one device), ``mirrored`` (all local GPUs),
``multi_worker`` (MultiWorkerMirroredStrategy; the cluster comes from ``TF_CONFIG``), ``tpu``
(TPUStrategy; the TPU from ``TPU_NAME`` or the local one). ``auto`` picks mirrored with two
or more GPUs, else default. Models and optimizers must be built inside ``strategy.scope()``.
Only the chief writes the run folder; other workers write theirs under ``worker<index>/``.

Keras 3.15's ``fit`` does not run under MultiWorkerMirroredStrategy as shipped
(keras-team/keras#20585): its pre-fit build and its per-step reduction call
``strategy.reduce("MEAN", scalar, axis=0)``. :func:`patch_keras_multi_worker_reduce` and
:func:`prebuild_for_multi_worker` work around both, for that strategy only.
"""

from __future__ import annotations

import json
import os
from typing import Any

from vision_core.backend import keras, tf
from vision_core.logs import get_logger

log = get_logger()
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called ``name`` (one of :data:`STRATEGIES`); ``ValueError`` for a misconfigured one."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multi_worker needs TF_CONFIG (cluster and this worker's task) in the environment"
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
        patch_keras_multi_worker_reduce()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This process's worker index in a multi-worker cluster (0 elsewhere)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() if resolver else {})
    return task_type == "worker" and not has_chief and worker_index(strategy) == 0


def dtype_policy(mode: str, strategy: tf.distribute.Strategy) -> str:
    """The Keras dtype policy for ``--mixed-precision`` ``mode`` (auto/on/off) on this hardware.

    ``on`` and ``auto`` give ``mixed_float16`` on GPUs and ``mixed_bfloat16`` on TPUs; on CPU only,
    ``auto`` gives ``float32`` and ``on`` is an error (mixed precision is slower there).
    """
    if mode == "off":
        return "float32"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    if mode == "on":
        raise ValueError("--mixed-precision on needs a GPU or TPU; none is visible (use auto or off)")
    return "float32"


def set_dtype_policy(mode: str, strategy: tf.distribute.Strategy) -> str:
    """Set Keras's global dtype policy for ``mode``; returns the policy name."""
    policy = dtype_policy(mode, strategy)
    keras.mixed_precision.set_global_policy(policy)
    if policy != "float32":
        log.info("mixed precision: %s", policy)
    return policy


def patch_keras_multi_worker_reduce() -> None:
    """Make Keras's per-step ``mean`` reduction of scalars (losses, metrics) work across workers.

    Keras reduces every step output with ``strategy.reduce("MEAN", value, axis=0)`` under
    MultiWorkerMirroredStrategy, which fails on scalars; scalars are reduced with ``axis=None``
    (the cross-worker mean) instead. Idempotent; other strategies and reductions are unchanged.
    """
    keras_tf_trainer = keras.src.backend.tensorflow.trainer

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "vision_core_patch", False):
        return

    def reduce_per_replica(values: Any, strategy: tf.distribute.Strategy, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(values, strategy, reduction)

        def mean(value: Any) -> tf.Tensor:
            local = strategy.experimental_local_results(value)[0]
            return strategy.reduce("MEAN", value, axis=None if local.shape.rank == 0 else 0)

        return tf.nest.map_structure(mean, values)

    reduce_per_replica.vision_core_patch = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def prebuild_for_multi_worker(model: keras.Model, strategy: tf.distribute.Strategy, batch: tuple[Any, Any]) -> None:
    """Build the compiled loss and metrics from one local batch, then skip Keras's own pre-fit build.

    Keras's pre-fit build of a model made under a strategy reduces one distributed batch with
    ``strategy.reduce``, which fails under MultiWorkerMirroredStrategy; building from a local
    ``batch`` (``(inputs, targets)``) first makes that step unnecessary. No-op for other strategies.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None
