"""Training throughput (images/s) of the suite's RetinaNet-ResNet-50-FPN beside keras-cv's RetinaNet (JSON out).

Both models train on one fixed synthetic batch held in memory (the input pipeline is
excluded), at the same input size and batch, with the same optimizer (SGD, momentum 0.9,
weight decay 1e-4, clipnorm 10, constant learning rate 0.01: the preset's settings without
the schedule), ``jit_compile=False`` (the suite's default on CPU). Each model first runs one
untimed one-batch ``fit`` (it builds the optimizer and traces), then ``--warmup`` untimed and
``--steps`` timed steps, each one call of the model's compiled train function on ``(x, y)``
(``train_on_batch`` is avoided: keras-cv 0.9's train step cannot unpack the ``(x, y,
sample_weight)`` that Keras 3 passes it); reading the loss after each step waits for it:

* ``suite``: :func:`apps.detect.models.build_detector` with the ``retinanet_resnet50_fpn``
  preset's model fields (``input_size`` set to ``--size``), compiled with the app's own losses
  (:meth:`apps.detect.task.DetectTask.compile_args`: focal + smooth L1). Targets are what
  ``DetectTask.datasets`` feeds the model: :class:`vision_core.detection.boxes.AnchorEncoder`
  outputs mapped by ``apps.detect.task._keras_targets`` (``box_encodings [B, A, 5]``,
  ``class_logits [B, A]``), computed once before timing.
* ``keras_cv``: ``keras_cv.models.RetinaNet`` on a ResNet-50 (v1) backbone built from its
  architecture (``ResNetBackbone``, bottleneck blocks 3-4-6-3, no rescaling: inputs are in
  ``[-1, 1]`` for both), random weights, the same ``num_classes``, ``bounding_box_format="xyxy"``
  (the suite's box format), compiled with its own ``"focal"`` and ``"smoothl1"`` losses. Its
  labels are the padded ground-truth boxes; its train step encodes them against its anchors
  (``RetinaNetLabelEncoder``) inside the step. Why not ``ResNet50Backbone()``: that alias
  reads its architecture from a Kaggle preset (kagglehub), a download even without weights.

Both models see the same demo scenes (:func:`vision_core.data.detection.demo.draw_detection_scene`).
Steps alternate between the models (A B, then B A, ...) so load drift on a shared CPU hits
both alike. Because the suite encodes its targets in the input pipeline and keras-cv inside
the step, each model's target encoding of one batch is also timed alone (graph mode), and
the JSON gives images/s of the train step, and of the step plus (suite) / minus (keras-cv)
the encoding, so the models can be compared with encoding on both sides or on neither.

Machine info (cores, load average at start and end, versions, git state) goes in the JSON;
on a shared CPU the absolute numbers are rough. If keras-cv's model cannot be built or
trained, its exact error goes in the JSON instead and the suite is measured alone.

    python benchmarks/detect_train_throughput.py [--size 384] [--batch 4] [--steps 5] [--warmup 2] [--num-classes 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback

import numpy as np
from machine import machine_info

from apps.detect.config import PRESETS
from apps.detect.models import build_detector, detector_anchors
from apps.detect.task import DetectTask, _keras_targets
from vision_core.backend import keras, keras_cv, tf
from vision_core.data.detection.demo import DEMO_CLASSES, draw_detection_scene
from vision_core.detection.boxes import AnchorEncoder
from vision_core.storage.atomic import write_atomic

PRESET = "retinanet_resnet50_fpn"
RESNET50_V1 = {
    "stackwise_filters": [64, 128, 256, 512],
    "stackwise_blocks": [3, 4, 6, 3],
    "stackwise_strides": [1, 2, 2, 2],
    "block_type": "block",
}  # keras-cv's "resnet50" preset config
LEARNING_RATE = 0.01
ENCODER_REPEATS = 5


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def optimizer(config):
    """The same SGD for both models: the preset's momentum, weight decay and clipnorm, constant LR."""
    train = config.train
    return keras.optimizers.SGD(
        learning_rate=LEARNING_RATE,
        momentum=train.momentum,
        weight_decay=train.weight_decay or None,
        clipnorm=train.clipnorm,
    )


def scenes(size: int, batch: int, num_classes: int, seed: int = 0):
    """``batch`` demo scenes: images ``[-1, 1]`` float32, xyxy pixel boxes and classes per image."""
    rng = np.random.default_rng(seed)
    images, boxes, classes = [], [], []
    for _ in range(batch):
        image, image_boxes, image_classes = draw_detection_scene(rng, size)
        images.append(image.astype(np.float32) / 127.5 - 1.0)
        boxes.append(image_boxes)
        classes.append(image_classes % num_classes)
    return np.stack(images), boxes, classes


def suite_setup(config, num_classes: int, images, boxes, classes):
    """The compiled suite model, its batch ``(x, targets)`` and its encoder timing callable."""
    size = config.model.input_size
    model = build_detector(num_classes, **dataclasses.asdict(config.model))
    task = DetectTask()
    task.num_classes = lambda _config: num_classes  # compile_args asks the dataset; the batch is synthetic
    model.compile(optimizer=optimizer(config), jit_compile=False, **task.compile_args(config))
    encoder = AnchorEncoder(
        detector_anchors(config.model), (size, size), num_classes, config.loss.positive_iou, config.loss.negative_iou
    )

    def encode():
        encoded = [encoder(images[i], boxes[i], classes[i]) for i in range(len(images))]
        targets = {key: tf.stack([e[key] for e in encoded]) for key in encoded[0]}
        return _keras_targets(tf.constant(images), targets)

    x, y = encode()
    return model, x, y, encode


def keras_cv_setup(config, num_classes: int, images, boxes, classes):
    """keras-cv's compiled RetinaNet, its batch ``(x, labels)`` and its encoder timing callable."""
    kcv = keras_cv()
    size = config.model.input_size
    backbone = kcv.models.ResNetBackbone(**RESNET50_V1, include_rescaling=False, input_shape=(size, size, 3))
    model = kcv.models.RetinaNet(num_classes=num_classes, bounding_box_format="xyxy", backbone=backbone)
    model.compile(classification_loss="focal", box_loss="smoothl1", optimizer=optimizer(config), jit_compile=False)
    most = max(len(b) for b in boxes)
    padded_boxes = np.full((len(boxes), most, 4), -1.0, np.float32)
    padded_classes = np.full((len(boxes), most), -1.0, np.float32)
    for i, (b, c) in enumerate(zip(boxes, classes)):
        padded_boxes[i, : len(b)], padded_classes[i, : len(c)] = b, c
    x = tf.constant(images)
    y = {"boxes": tf.constant(padded_boxes), "classes": tf.constant(padded_classes)}
    encode_graph = tf.function(lambda: model.label_encoder(x, y))
    return model, x, y, encode_graph, backbone.count_params()


def time_encoder(encode, repeats: int = ENCODER_REPEATS) -> float:
    """Median ms of one batch's target encoding (first call, which traces, not counted)."""
    encode()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = encode()
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def train_step(model, x, y) -> float:
    """One training step on ``(x, y)`` through the model's compiled train function; the loss.

    What ``train_on_batch`` does, but fed ``(x, y)`` as ``fit`` feeds it: keras-cv 0.9's
    ``RetinaNet.train_step`` unpacks its data as exactly ``(x, y)``, and Keras 3's
    ``train_on_batch`` hands it ``(x, y, sample_weight)`` ("too many values to unpack").
    Reading the loss waits for the step to finish.
    """
    model.make_train_function()
    model.reset_metrics()
    logs = model.train_function(iter([(x, y)]))
    return float(np.asarray(logs["loss"]))


def _record_failure(report: dict, runs: dict, error: Exception, stage: str) -> None:
    """Put keras-cv's exact error in the report and drop it from the runs."""
    report["keras_cv"]["error"] = f"{stage}: {type(error).__name__}: {error}"
    report["keras_cv"]["traceback"] = traceback.format_exc().splitlines()[-12:]
    runs.pop("keras_cv", None)
    log(f"    keras-cv RetinaNet failed ({stage}): {type(error).__name__}: {error}")


def anchor_count_keras_cv(model, size: int) -> int:
    levels = model.label_encoder.anchor_generator(image_shape=(size, size, 3))
    return int(sum(int(v.shape[0]) for v in levels.values()))


def measure(size: int, batch: int, steps: int, warmup: int, num_classes: int, seed: int) -> dict:
    start = time.perf_counter()
    machine = machine_info()
    log(f"{machine['logical_cpus']} logical CPUs, load average {machine['load_average']}")
    base = PRESETS[PRESET]
    config = dataclasses.replace(base, model=dataclasses.replace(base.model, input_size=size))
    images, boxes, classes = scenes(size, batch, num_classes, seed)
    log(f"batch: {batch} demo scenes at {size}x{size}, {sum(len(b) for b in boxes)} boxes, {num_classes} classes")

    runs: dict[str, dict] = {}
    log("building the suite's RetinaNet-ResNet-50-FPN")
    suite_model, suite_x, suite_y, suite_encode = suite_setup(config, num_classes, images, boxes, classes)
    runs["suite"] = {"model": suite_model, "x": suite_x, "y": suite_y, "encode": suite_encode}
    report = {
        "suite": {
            "name": suite_model.name,
            "model_fields": dataclasses.asdict(config.model),
            "params": int(suite_model.count_params()),
            "anchors": int(suite_y["class_logits"].shape[1]),
            "losses": "apps.detect.losses BoxLoss (smooth L1) + ClassLoss (focal, alpha "
            f"{config.loss.focal_alpha}, gamma {config.loss.focal_gamma})",
            "positive_anchors": int(
                tf.reduce_sum(
                    tf.cast((suite_y["class_logits"] >= 0) & (suite_y["class_logits"] < num_classes), tf.int32)
                )
            ),
        }
    }
    log(f"    {report['suite']['params']:,} params, {report['suite']['anchors']:,} anchors")
    log("building keras-cv's RetinaNet (ResNet-50 backbone, weights=None)")
    try:
        kcv_model, kcv_x, kcv_y, kcv_encode, backbone_params = keras_cv_setup(
            config, num_classes, images, boxes, classes
        )
        runs["keras_cv"] = {"model": kcv_model, "x": kcv_x, "y": kcv_y, "encode": kcv_encode}
        report["keras_cv"] = {
            "name": kcv_model.name,
            "class": "keras_cv.models.RetinaNet",
            "backbone": {
                "class": "keras_cv.models.ResNetBackbone",
                **RESNET50_V1,
                "include_rescaling": False,
                "params": int(backbone_params),
            },
            "params": int(kcv_model.count_params()),
            "anchors": anchor_count_keras_cv(kcv_model, size),
            "bounding_box_format": "xyxy",
            "losses": "keras-cv 'focal' + 'smoothl1'",
            "workarounds": [
                "keras_cv.models.ResNet50Backbone() fetches its preset config from Kaggle (kagglehub) even "
                "without weights (offline: requests ConnectionError to api.kaggle.com); built ResNetBackbone with "
                "the resnet50 preset's architecture instead (23,561,152 params, as the preset's metadata lists)",
                "Keras 3 train_on_batch passes (x, y, sample_weight) to train_step and keras-cv 0.9's "
                "RetinaNet.train_step unpacks exactly (x, y): 'ValueError: too many values to unpack (expected 2)'; "
                "both models are stepped through their compiled train function fed (x, y), as fit() feeds it",
            ],
        }
        log(f"    {report['keras_cv']['params']:,} params, {report['keras_cv']['anchors']:,} anchors")
    except Exception as error:  # record why, measure the suite alone
        report["keras_cv"] = {
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc().splitlines()[-12:],
        }
        log(f"    keras-cv RetinaNet failed to build: {report['keras_cv']['error']}")

    for name in list(runs):  # build the optimizer and the compiled losses the way fit() does (untimed)
        run = runs[name]
        began = time.perf_counter()
        try:
            run["model"].fit(run["x"], run["y"], batch_size=batch, epochs=1, verbose=0, shuffle=False)
        except Exception as error:
            if name != "keras_cv":
                raise
            _record_failure(report, runs, error, "fit")
            continue
        report[name]["build_step_s"] = round(time.perf_counter() - began, 2)
        log(f"build step (fit on the batch, traces) {name}: {report[name]['build_step_s']:.1f} s")

    times = {name: [] for name in runs}
    losses = {name: [] for name in runs}
    for step in range(warmup + steps):
        for name in list(runs) if step % 2 == 0 else list(runs)[::-1]:
            run = runs[name]
            began = time.perf_counter()
            try:
                loss = train_step(run["model"], run["x"], run["y"])
            except Exception as error:
                if name != "keras_cv":
                    raise
                _record_failure(report, runs, error, "train step")
                continue
            elapsed = time.perf_counter() - began
            losses[name].append(loss)
            if step >= warmup:
                times[name].append(elapsed)
            phase, index, of = ("warm-up", step + 1, warmup) if step < warmup else ("timed", step - warmup + 1, steps)
            log(f"{phase} step {index}/{of} {name}: {elapsed:.2f} s, loss {loss:.4f}")

    for name in runs:
        seconds = np.array(times[name])
        encode_ms = time_encoder(runs[name]["encode"])
        step_s = float(np.median(seconds))
        entry = report[name]
        entry.update(
            {
                "step_seconds": seconds.round(4).tolist(),
                "median_step_s": step_s,
                "images_per_s": batch / step_s,
                "images_per_s_mean": batch * len(seconds) / float(seconds.sum()),
                "losses": losses[name],
                "target_encoding_ms_per_batch": encode_ms,
                "target_encoding_in_step": name == "keras_cv",
            }
        )
        with_encoding = step_s + (0.0 if name == "keras_cv" else encode_ms / 1e3)
        without_encoding = step_s - (encode_ms / 1e3 if name == "keras_cv" else 0.0)
        entry["images_per_s_with_encoding"] = batch / with_encoding
        entry["images_per_s_without_encoding"] = batch / without_encoding if without_encoding > 0 else None
        log(
            f"{name}: {entry['images_per_s']:.2f} images/s (median step {step_s:.2f} s), "
            f"target encoding {encode_ms:.1f} ms/batch"
        )

    comparison = None
    if "keras_cv" in runs:
        suite, kcv = report["suite"], report["keras_cv"]
        comparison = {
            "suite_over_keras_cv_images_per_s": suite["images_per_s"] / kcv["images_per_s"],
            "suite_over_keras_cv_with_encoding_both": suite["images_per_s_with_encoding"]
            / kcv["images_per_s_with_encoding"],
            "suite_over_keras_cv_without_encoding_both": (
                suite["images_per_s"] / kcv["images_per_s_without_encoding"]
                if kcv["images_per_s_without_encoding"]
                else None
            ),
            "params_ratio": suite["params"] / kcv["params"],
        }
        log(
            f"suite / keras-cv images/s: x{comparison['suite_over_keras_cv_images_per_s']:.3f} "
            f"(encoding on both sides x{comparison['suite_over_keras_cv_with_encoding_both']:.3f})"
        )
    return {
        "machine": machine,
        "load_average_end": list(os.getloadavg()),
        "note": "machine.load_average and load_average_end tell whether other jobs shared the CPU.",
        "settings": {
            "preset": PRESET,
            "size": size,
            "batch": batch,
            "steps": steps,
            "warmup": warmup,
            "num_classes": num_classes,
            "seed": seed,
            "jit_compile": False,
            "optimizer": {
                "class": "SGD",
                "learning_rate": LEARNING_RATE,
                "momentum": config.train.momentum,
                "weight_decay": config.train.weight_decay,
                "clipnorm": config.train.clipnorm,
            },
            "order": "alternating per step (A B, B A, ...)",
            "data": "one fixed in-memory batch of demo scenes, images x/127.5-1",
        },
        "models": report,
        "comparison": comparison,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes --out atomically; progress goes to stderr, a summary to stdout.",
    )
    parser.add_argument("--size", type=int, default=384, help="square input side in pixels (default: 384)")
    parser.add_argument("--batch", type=int, default=4, help="images per training step (default: 4)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model (default: 5)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed steps per model after an untimed build step (a one-batch fit) that traces (default: 2)",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=len(DEMO_CLASSES),
        help=f"object classes (default: {len(DEMO_CLASSES)}, the demo dataset's)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic batch (default: 0)")
    parser.add_argument(
        "--out",
        default="benchmarks/results/detect_train_throughput.json",
        help="JSON output file (default: benchmarks/results/detect_train_throughput.json)",
    )
    args = parser.parse_args()
    if args.size < 32 or args.batch < 1 or args.steps < 1 or args.warmup < 1 or args.num_classes < 1:
        parser.error("need --size >= 32 and --batch, --steps, --warmup (tracing) and --num-classes >= 1")
    result = measure(args.size, args.batch, args.steps, args.warmup, args.num_classes, args.seed)
    path = write_atomic(args.out, json.dumps(result, indent=2).encode())
    summary = {
        name: (
            {"images_per_s": round(m["images_per_s"], 3), "params": m["params"]}
            if "images_per_s" in m
            else {"error": m.get("error")}
        )
        for name, m in result["models"].items()
    }
    print(json.dumps({"out": str(path), "models": summary, "comparison": result["comparison"]}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
