"""Why four-column RevCol-T does not learn the shapes task: its features' variation between images (JSON out).

Trains a RevCol-T classifier (64 px shapes, 8000 images, batch 32, Adam with a 10 % warm-up then
cosine decay, as the backbone int8 benchmark) and every 25 steps records, on 128 held-out shapes,
the between-image standard deviation of each column's pooled C5 (level 3) and of the logits, the
features' mean magnitude, the between-image std along column 0 (the stem, then each level's
down-sampling norm and last block: where the variation is lost), the held-out loss and accuracy.
A collapse shows as the between-image std falling while the magnitude grows: every image gets the
same features and the loss stays at ln 4. ``--supervision`` adds the official training-only
intermediate supervision (``models/revcol.py`` ``_forward_intermediate_supervision``, ``loss.py``
``compound_loss``): a classifier on each earlier column weighted 0.175 / 0.35 / 0.525 and a
ConvNeXt decoder per column reconstructing the image with BCE weighted 3 / 2 / 1.
Records are rewritten after every probe.

    python benchmarks/revcol_collapse.py [--columns 4] [--layer-scale 1.0] [--lr 3e-4] [--epochs 4]
        [--clipnorm 1.0] [--supervision] [--out benchmarks/results/revcol_collapse.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vision_core.app.schedules import WarmupDecay
from vision_core.backbones.revcol import (
    CONFIGS,
    LN_EPSILON,
    RevColConfig,
    convnext_block,
    revcol,
)
from vision_core.backend import keras, tf
from vision_core.data.synthetic import SHAPE_CLASSES
from vision_core.layers.normalization import LayerNorm
from vision_core.quant.int8_check import shapes_data
from vision_core.storage.atomic import write_atomic

PROBE_EVERY = 25
BATCH_SIZE = 32
INIT = keras.initializers.TruncatedNormal(stddev=0.02)  # the official init of every conv and linear layer
CLASSIFIER_WEIGHTS = (0.175, 0.35, 0.525)  # columns 0-2; the last column's classifier weighs 1
DECODER_WEIGHTS = (3.0, 2.0, 1.0)


def column0_path_names(config: RevColConfig) -> list[str]:
    """Column 0 from the stem to C5: the stem, then each level's down-sampling norm and last block."""
    names = ["stem_norm"]
    for level, blocks in enumerate(config.blocks):
        if level:
            names.append(f"column0_level{level}_down_norm")
        names.append(f"column0_level{level}_block{blocks - 1}_add")
    return names


def column_c5_names(config: RevColConfig) -> list[str]:
    """Each column's C5: column 0's last level-3 block, then each later column's reversible sum."""
    return column0_path_names(config)[-1:] + [f"column{c}_level3_reversible_add" for c in range(1, config.columns)]


def decoder(c5, channels: tuple[int, ...], name: str):
    """The official image decoder: three (1x1 conv, LayerNorm, GELU, x2 up, ConvNeXt block) stages,
    then a 1x1 conv to 48 channels and a depth-to-space by 4: image logits at full resolution."""
    x = c5
    for stage, width in enumerate(reversed(channels[:-1]), start=1):
        x = keras.layers.Conv2D(width, 1, kernel_initializer=INIT, name=f"{name}_proj{stage}")(x)
        x = LayerNorm(epsilon=LN_EPSILON, name=f"{name}_norm{stage}")(x)
        x = keras.layers.Activation("gelu", name=f"{name}_gelu{stage}")(x)
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{stage}")(x)
        x = convnext_block(x, 3, 1e-6, 0.0, f"{name}_block{stage}")
    x = keras.layers.Conv2D(4 * 4 * 3, 1, kernel_initializer=INIT, name=f"{name}_projback")(x)
    return keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 4), name=f"{name}_image")(x)


def supervised_model(classifier, config: RevColConfig):
    """``classifier`` with a classifier and an image decoder on each of columns 0-2 (official layout
    for four columns); outputs: the three extra logits, the classifier's logits, three image logits."""
    c5s = [classifier.get_layer(n).output for n in column_c5_names(config)]
    heads = []
    for column in range(3):
        pooled = keras.layers.GlobalAveragePooling2D(name=f"column{column}_head_pool")(c5s[column])
        pooled = LayerNorm(epsilon=LN_EPSILON, name=f"column{column}_head_norm")(pooled)
        heads.append(
            keras.layers.Dense(len(SHAPE_CLASSES), kernel_initializer=INIT, name=f"column{column}_predictions")(pooled)
        )
    images = [decoder(c5s[column], config.channels, f"column{column}_decoder") for column in range(3)]
    return keras.Model(classifier.input, heads + [classifier.output] + images)


def reconstruction_loss(normalized_image, image_logits):
    """BCE of the decoded image against the input in [0.01, 0.99] (official: the denormalised, clamped image)."""
    target = tf.clip_by_value((normalized_image + 1.0) / 2.0, 0.01, 0.99)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(target, image_logits))


def between_image_std(features: np.ndarray) -> float:
    """Standard deviation over images of the spatially pooled ``(B, H, W, C)`` features, averaged over channels."""
    return round(float(features.mean(axis=(1, 2)).std(axis=0).mean()), 3)


class CollapseProbe(keras.callbacks.Callback):
    def __init__(self, classifier, config: RevColConfig, images, labels, settings: dict, out: Path):
        super().__init__()
        c5s = [classifier.get_layer(n).output for n in column_c5_names(config)]
        self.path_names = column0_path_names(config)
        path = [classifier.get_layer(n).output for n in self.path_names]
        self.probe = keras.Model(classifier.input, [classifier.output] + c5s + path)
        self.columns = config.columns
        self.images, self.labels, self.out = images, labels, out
        self.record = {"settings": settings, "probes": [], "epochs": []}
        self.step = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.step % PROBE_EVERY == 0:
            logits, *features = (t.numpy() for t in self.probe(self.images, training=False))
            c5s, path = features[: self.columns], features[self.columns :]
            loss = keras.losses.sparse_categorical_crossentropy(self.labels, logits, from_logits=True)
            self.write(
                "probes",
                {
                    "step": self.step,
                    "heldout_loss": round(float(np.mean(loss)), 4),
                    "heldout_accuracy": float(np.mean(logits.argmax(axis=1) == self.labels)),
                    "logits_between_image_std": round(float(logits.std(axis=0).mean()), 4),
                    "c5_between_image_std": [between_image_std(c5) for c5 in c5s],
                    "c5_mean_magnitude": [round(float(np.abs(c5).mean()), 3) for c5 in c5s],
                    "column0_between_image_std": {n: between_image_std(f) for n, f in zip(self.path_names, path)},
                },
            )
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        self.write("epochs", {"epoch": epoch + 1, **{k: round(float(v), 4) for k, v in logs.items()}})

    def write(self, key: str, entry: dict):
        print(json.dumps(entry), flush=True)
        self.record[key].append(entry)
        write_atomic(self.out, json.dumps(self.record, indent=1, default=str).encode())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--columns",
        type=int,
        default=4,
        help="RevCol-T's channels and blocks with this many columns (4: RevCol-T itself)",
    )
    parser.add_argument("--layer-scale", type=float, default=1.0, help="ConvNeXt layer scale init (official 1e-6)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of 250 steps")
    parser.add_argument("--clipnorm", type=float, default=None, help="global gradient norm clip (none when not given)")
    parser.add_argument(
        "--supervision",
        action="store_true",
        help="add the official intermediate classifiers and image decoders (four columns only)",
    )
    parser.add_argument("--seed", type=int, default=7, help="weights and training data seed")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/revcol_collapse.json"),
        help="JSON record, rewritten after every probe",
    )
    args = parser.parse_args(argv)
    if args.supervision and args.columns != 4:
        parser.error("--supervision builds the four-column layout; use --columns 4")

    keras.utils.set_random_seed(args.seed)
    x, labels = shapes_data(8000, 64, seed=args.seed)
    held_out, held_out_labels = shapes_data(128, 64, seed=99)
    base = CONFIGS["revcol_t"]
    config = RevColConfig(base.channels, base.blocks, args.columns)
    classifier = revcol((64, 64, 3), config, "revcol_t", len(SHAPE_CLASSES), layer_scale_init=args.layer_scale)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if args.supervision:
        model = supervised_model(classifier, config)
        losses, weights = [ce] * 4 + [reconstruction_loss] * 3, [*CLASSIFIER_WEIGHTS, 1.0, *DECODER_WEIGHTS]
        targets = [labels] * 4 + [x] * 3
    else:
        model, losses, weights, targets = classifier, ce, None, labels
    steps = args.epochs * (len(x) // BATCH_SIZE)
    schedule = WarmupDecay(args.lr, steps, warmup_steps=steps // 10)  # the shapes recipes' warm-up, cosine to 0
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, global_clipnorm=args.clipnorm),
        loss=losses,
        loss_weights=weights,
        jit_compile=False,
    )
    probe = CollapseProbe(classifier, config, held_out, held_out_labels, vars(args), args.out)
    model.fit(x, targets, batch_size=BATCH_SIZE, epochs=args.epochs, callbacks=[probe], verbose=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
