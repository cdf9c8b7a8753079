"""RevCol's training-only intermediate supervision (official ``models/revcol.py``
``_forward_intermediate_supervision`` and ``loss.py`` ``compound_loss``).

Three earlier columns, one every ``columns / 4`` (RevCol-T: columns 0, 1, 2; -S: 1, 3, 5; -B: 3,
7, 11), each get a classifier (global average pool, LayerNorm, Dense) weighted 0.175 / 0.35 /
0.525 against the model's own head on the last column (1.0), and an
image decoder (three stages of 1x1 conv, LayerNorm, GELU, x2 up-sampling and a ConvNeXt block,
then a 1x1 conv to 48 channels and a depth-to-space by 4) reconstructing the input with binary
cross-entropy weighted 3 / 2 / 1. The decoders keep the columns' information: without them a
RevCol-T collapses on the built-in shapes (every image gets the same features; see
the README and ``benchmarks/revcol_collapse.py``). The extra heads exist only in the training
model: the classifier it wraps is the one that is exported.
"""

from __future__ import annotations

import numpy as np

from vision_core.backend import keras, tf
from vision_core.backbones.revcol import LN_EPSILON, RevColConfig, convnext_block
from vision_core.layers.normalization import LayerNorm

SUPERVISED_COLUMNS = 3  # earlier columns with a classifier and a decoder
CLASSIFIER_WEIGHTS = (0.175, 0.35, 0.525)  # columns 0-2; the last column's classifier weighs 1
DECODER_WEIGHTS = (3.0, 2.0, 1.0)
PATCH = 4  # the decoders' depth-to-space factor: the stem's stride
INIT = keras.initializers.TruncatedNormal(stddev=0.02)  # the official init of every conv and linear layer


def column_c5_names(config: RevColConfig) -> list[str]:
    """The layers giving each column's C5: column 0's last level-3 block, then each later column's reversible sum."""
    first = f"column0_level3_block{config.blocks[3] - 1}_add"
    return [first] + [f"column{c}_level3_reversible_add" for c in range(1, config.columns)]


def decoder(c5, channels: tuple[int, ...], name: str):
    """Image logits at full resolution from one column's C5."""
    x = c5
    for stage, width in enumerate(reversed(channels[:-1]), start=1):
        x = keras.layers.Conv2D(width, 1, kernel_initializer=INIT, name=f"{name}_proj{stage}")(x)
        x = LayerNorm(epsilon=LN_EPSILON, name=f"{name}_norm{stage}")(x)
        x = keras.layers.Activation("gelu", name=f"{name}_gelu{stage}")(x)
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{stage}")(x)
        x = convnext_block(x, 3, 1e-6, 0.0, f"{name}_block{stage}")
    x = keras.layers.Conv2D(PATCH * PATCH * 3, 1, kernel_initializer=INIT, name=f"{name}_projback")(x)
    return keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, PATCH), name=f"{name}_image")(x)


def supervised_columns(config: RevColConfig) -> list[int]:
    """The earlier columns that get a classifier and a decoder: one every ``columns / 4`` (official)."""
    if config.columns % (SUPERVISED_COLUMNS + 1):
        raise ValueError(f"the official intermediate supervision needs a multiple of 4 columns, not {config.columns}")
    interval = config.columns // (SUPERVISED_COLUMNS + 1)
    return [interval * (k + 1) - 1 for k in range(SUPERVISED_COLUMNS)]


def supervised_model(classifier, config: RevColConfig):
    """``classifier`` (a RevCol classifier of ``config``, logits) with the extra heads; its outputs:
    the three columns' logits, the classifier's logits, the three image logits (RGB input only)."""
    try:
        columns = supervised_columns(config)
    except ValueError as error:
        raise ValueError(f"{classifier.name}: {error}") from None
    num_classes = classifier.output.shape[-1]
    c5s = column_c5_names(config)
    heads, images = [], []
    for column in columns:
        c5 = classifier.get_layer(c5s[column]).output
        pooled = keras.layers.GlobalAveragePooling2D(name=f"column{column}_head_pool")(c5)
        pooled = LayerNorm(epsilon=LN_EPSILON, name=f"column{column}_head_norm")(pooled)
        heads.append(keras.layers.Dense(num_classes, kernel_initializer=INIT,
                                        name=f"column{column}_predictions")(pooled))
        images.append(decoder(c5, config.channels, f"column{column}_decoder"))
    return keras.Model(classifier.input, heads + [classifier.output] + images, name=f"{classifier.name}_supervised")


def reconstruction_loss(normalized_image, image_logits):
    """BCE of the decoded image against the input mapped from [-1, 1] to [0.01, 0.99]
    (official: the de-normalised image, clamped)."""
    target = tf.clip_by_value((normalized_image + 1.0) / 2.0, 0.01, 0.99)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(target, image_logits))


def supervision_losses() -> tuple[list, list[float]]:
    """``(losses, weights)`` for :func:`supervised_model`'s outputs, in order."""
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return [ce] * (SUPERVISED_COLUMNS + 1) + [reconstruction_loss] * SUPERVISED_COLUMNS, \
        [*CLASSIFIER_WEIGHTS, 1.0, *DECODER_WEIGHTS]


def supervision_targets(images: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The targets of :func:`supervised_model`'s outputs: the labels for every classifier, the images for every decoder."""
    return [labels] * (SUPERVISED_COLUMNS + 1) + [images] * SUPERVISED_COLUMNS
