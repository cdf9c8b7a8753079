"""Why four-column RevCol-T does not learn the shapes task: its features' variation between images (JSON out).

Trains a RevCol-T classifier (64 px shapes, 8000 images, batch 32, Adam with a 10 % warm-up then
cosine decay, as the backbone int8 benchmark) and every 25 steps records, on 128 held-out shapes,
the between-image standard deviation of each column's pooled C5 (level 3) and of the logits, the
features' mean magnitude, the between-image std along column 0 (the stem, then each level's
down-sampling norm and last block: where the variation is lost), the held-out loss and accuracy.
A collapse shows as the between-image std falling while the magnitude grows: every image gets the
same features and the loss stays at ln 4. ``--supervision`` adds the official training-only
intermediate supervision (:mod:`vision_core.backbones.revcol_supervision`): a classifier on each
earlier column weighted 0.175 / 0.35 / 0.525 and a ConvNeXt decoder per column reconstructing
the image with BCE weighted 3 / 2 / 1.
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

from vision_core.atomic import write_atomic
from vision_core.backend import keras
from vision_core.backbones.int8_check import shapes_data
from vision_core.backbones.revcol import CONFIGS, RevColConfig, revcol
from vision_core.backbones.revcol_supervision import (column_c5_names, supervised_model, supervision_losses,
                                                      supervision_targets)
from vision_core.backbones.shapes_training import warmup_cosine
from vision_core.data.synthetic import SHAPE_CLASSES

PROBE_EVERY = 25
BATCH_SIZE = 32


def column0_path_names(config: RevColConfig) -> list[str]:
    """Column 0 from the stem to C5: the stem, then each level's down-sampling norm and last block."""
    names = ["stem_norm"]
    for level, blocks in enumerate(config.blocks):
        if level:
            names.append(f"column0_level{level}_down_norm")
        names.append(f"column0_level{level}_block{blocks - 1}_add")
    return names


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
            c5s, path = features[:self.columns], features[self.columns:]
            loss = keras.losses.sparse_categorical_crossentropy(self.labels, logits, from_logits=True)
            self.write("probes", {
                "step": self.step,
                "heldout_loss": round(float(np.mean(loss)), 4),
                "heldout_accuracy": float(np.mean(logits.argmax(axis=1) == self.labels)),
                "logits_between_image_std": round(float(logits.std(axis=0).mean()), 4),
                "c5_between_image_std": [between_image_std(c5) for c5 in c5s],
                "c5_mean_magnitude": [round(float(np.abs(c5).mean()), 3) for c5 in c5s],
                "column0_between_image_std": {n: between_image_std(f) for n, f in zip(self.path_names, path)},
            })
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        self.write("epochs", {"epoch": epoch + 1, **{k: round(float(v), 4) for k, v in logs.items()}})

    def write(self, key: str, entry: dict):
        print(json.dumps(entry), flush=True)
        self.record[key].append(entry)
        write_atomic(self.out, json.dumps(self.record, indent=1, default=str).encode())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--columns", type=int, default=4, help="RevCol-T's channels and blocks with this many "
                        "columns (4: RevCol-T itself)")
    parser.add_argument("--layer-scale", type=float, default=1.0, help="ConvNeXt layer scale init (official 1e-6)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of 250 steps")
    parser.add_argument("--clipnorm", type=float, default=None, help="global gradient norm clip (none when not given)")
    parser.add_argument("--supervision", action="store_true",
                        help="add the official intermediate classifiers and image decoders (a multiple of 4 columns)")
    parser.add_argument("--seed", type=int, default=7, help="weights and training data seed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/revcol_collapse.json"),
                        help="JSON record, rewritten after every probe")
    args = parser.parse_args(argv)
    if args.supervision and args.columns % 4:
        parser.error("--supervision supervises one column in every quarter: use a multiple of 4 columns")

    keras.utils.set_random_seed(args.seed)
    x, labels = shapes_data(8000, 64, seed=args.seed)
    held_out, held_out_labels = shapes_data(128, 64, seed=99)
    base = CONFIGS["revcol_t"]
    config = RevColConfig(base.channels, base.blocks, args.columns)
    classifier = revcol((64, 64, 3), config, "revcol_t", len(SHAPE_CLASSES), layer_scale_init=args.layer_scale)
    if args.supervision:
        model = supervised_model(classifier, config)
        (losses, weights), targets = supervision_losses(), supervision_targets(x, labels)
    else:
        model, weights, targets = classifier, None, labels
        losses = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    schedule = warmup_cosine(args.epochs * (len(x) // BATCH_SIZE), args.lr)
    model.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=args.clipnorm), loss=losses,
                  loss_weights=weights, jit_compile=False)
    probe = CollapseProbe(classifier, config, held_out, held_out_labels, vars(args), args.out)
    model.fit(x, targets, batch_size=BATCH_SIZE, epochs=args.epochs, callbacks=[probe], verbose=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
