"""The superres app's losses: pixel MSE (the paper's), in the trainer and in the QAT fine-tune."""

from __future__ import annotations


def qat_mse(targets: dict, outputs: dict):
    """The QAT job's loss (:mod:`vision_core.quant.qat_job`): mean squared error of the model's only output
    against the high-resolution patches (``targets["label"]``, the fine-tune data's ``train_y``)."""
    from vision_core.backend import tf

    prediction = next(iter(outputs.values()))
    return tf.reduce_mean(tf.square(tf.cast(prediction, tf.float32) - tf.cast(targets["label"], tf.float32)))
