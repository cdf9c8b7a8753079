"""How much faster the suite's stride-1 Conv2D input gradient is than TensorFlow's CPU kernel (JSON out).

Two measurements, each alternating the two gradients so load drift hits both alike:

* ``shapes``: one input gradient of a 3x3 or 1x1 stride-1 SAME convolution (batch, size,
  channels below), TensorFlow's ``Conv2DBackpropInput`` kernel against
  :func:`vision_core.training.conv_backprop.input_gradient`, each a traced function; median of
  ``--repeats`` calls, after one untimed call, and the largest difference between the two.
* ``models``: the gradient of the classification loss of each backbone (``--backbones``,
  64 px input, batch 32, training mode) with respect to all its weights, traced, once with
  TensorFlow's ``Conv2D`` gradient and once with the suite's (the registry is switched and
  the function traced again); median of ``--repeats`` calls.

    python benchmarks/conv_backprop.py [--backbones resnet18 resnet50 vovnet39 mobilenet_v2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from machine import machine_info

from vision_core.backbones.registry import build_backbone
from vision_core.backend import keras, tf
from vision_core.storage.atomic import write_atomic
from vision_core.training import conv_backprop

# (batch, height = width, channels in = out, kernel size): deep-stage maps of the tests' 32-64 px
# models, then the ResNet stages at 224 px
SHAPES = [
    (32, 2, 512, 3),
    (32, 4, 256, 3),
    (32, 8, 128, 3),
    (32, 16, 64, 3),
    (8, 7, 512, 3),
    (8, 14, 256, 3),
    (8, 28, 128, 3),
    (8, 56, 64, 3),
    (8, 14, 1024, 1),
]


def median_ms(function, *args, repeats: int) -> float:
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 2)


def alternate(tensorflow_ms, suite_ms, rounds: int = 2) -> dict:
    """The faster of ``rounds`` alternating measurements of each side (callables returning ms), and the speed-up."""
    times = {"tensorflow_ms": [], "suite_ms": []}
    for _ in range(rounds):
        times["tensorflow_ms"].append(tensorflow_ms())
        times["suite_ms"].append(suite_ms())
    row = {key: min(values) for key, values in times.items()}
    return {**row, "speedup": round(row["tensorflow_ms"] / row["suite_ms"], 2)}


def measure_shape(batch: int, size: int, channels: int, kernel_size: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, channels, channels)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(batch, size, size, channels)).astype(np.float32))
    kernels = tf.function(
        lambda g: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=[batch, size, size, channels],
            filter=kernel,
            out_backprop=g,
            strides=[1, 1, 1, 1],
            padding="SAME",
        )
    )
    ours = tf.function(lambda g: conv_backprop.input_gradient(g, kernel, "SAME"))
    difference = float(np.abs(kernels(upstream).numpy() - ours(upstream).numpy()).max())
    times = alternate(
        lambda: median_ms(kernels, upstream, repeats=repeats), lambda: median_ms(ours, upstream, repeats=repeats)
    )
    return {
        "batch": batch,
        "size": size,
        "channels": channels,
        "kernel_size": kernel_size,
        **times,
        "max_abs_difference": difference,
    }


def measure_backbone(name: str, repeats: int, size: int = 64, batch: int = 32) -> dict:
    keras.utils.set_random_seed(0)
    model = build_backbone(name, (size, size, 3), num_classes=4)
    images = tf.constant(np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32))
    labels = tf.constant(np.arange(batch) % 4)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients(x):
        with tf.GradientTape() as tape:
            value = loss(labels, model(x, training=True))
        return tape.gradient(value, model.trainable_weights)

    def measure(switch):
        switch()
        return median_ms(tf.function(gradients), images, repeats=repeats)

    times = alternate(lambda: measure(conv_backprop.uninstall), lambda: measure(conv_backprop.install))
    return {"backbone": name, "input_size": size, "batch": batch, **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbones",
        nargs="*",
        default=["resnet18", "resnet50", "vovnet39", "mobilenet_v2"],
        help="backbones whose whole training gradient is timed (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (default: 5)")
    parser.add_argument("--out", default="benchmarks/results/conv_backprop.json", help="JSON output file")
    args = parser.parse_args()
    result = {"machine": machine_info(), "shapes": [], "models": []}
    for shape in SHAPES:
        result["shapes"].append(measure_shape(*shape, repeats=args.repeats))
        print(json.dumps(result["shapes"][-1]), flush=True)
    for name in args.backbones:
        result["models"].append(measure_backbone(name, args.repeats))
        print(json.dumps(result["models"][-1]), flush=True)
    write_atomic(args.out, json.dumps(result, indent=2).encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
