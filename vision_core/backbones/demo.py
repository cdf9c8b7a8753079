"""The backbone demo: train a small classifier on built-in shapes, ship it as int8, compare.

Trains ``backbone`` with a 4-class head on procedurally generated shapes, converts it to
a full-int8 TFLite file (post-training quantization, calibrated on training images,
op audit enforced), and scores the Keras model and the TFLite file on the same
validation images. Everything lands in ``out_dir``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from tflite.runtime import TFLiteModel
from vision_core.atomic import write_atomic
from vision_core.backend import keras
from vision_core.backbones.registry import build_backbone
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set, normalize
from vision_core.quant.convert import convert

log = logging.getLogger("vision_core")


def run_demo(out_dir: str | Path, backbone: str = "resnet18", input_size: int = 64, train_images: int = 2000,
             val_images: int = 400, epochs: int = 6, seed: int = 0) -> dict:
    """Train, convert to int8, and evaluate; returns (and writes) the metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    train_x, train_y = classification_set(train_images, input_size, seed=seed)
    val_x, val_y = classification_set(val_images, input_size, seed=seed + 1)
    train_x, val_x = normalize(train_x), normalize(val_x)
    model = build_backbone(backbone, (input_size, input_size, 3), num_classes=len(SHAPE_CLASSES))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  jit_compile=False)  # XLA trains 7-8x slower on CPU
    log.info("training %s on %d built-in shape images (%s)", backbone, train_images, ", ".join(SHAPE_CLASSES))
    model.fit(train_x, train_y, batch_size=32, epochs=epochs, validation_data=(val_x, val_y), verbose=2)
    float_logits = model.predict(val_x, batch_size=64, verbose=0)
    log.info("converting to full-int8 TFLite (calibration: 200 training images)")
    flatbuffer = convert(model, "int8", [train_x[i:i + 20] for i in range(0, 200, 20)])
    tflite_path = out_dir / f"{backbone}_int8.tflite"
    write_atomic(tflite_path, flatbuffer)
    int8_logits = TFLiteModel(tflite_path)(val_x)["predictions"]
    metrics = {
        "backbone": backbone,
        "input_size": input_size,
        "float_accuracy": float(np.mean(float_logits.argmax(1) == val_y)),
        "int8_accuracy": float(np.mean(int8_logits.argmax(1) == val_y)),
        "top1_agreement": float(np.mean(float_logits.argmax(1) == int8_logits.argmax(1))),
        "tflite": str(tflite_path),
        "tflite_bytes": len(flatbuffer),
    }
    write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
    return metrics
