"""What the classify app ships, on two tiny shapes runs: an ensemble of runs as one run that eval, export and
predict take (mismatched members named), the int8 file in MediaPipe's ImageClassifier with our labels and our
top class, and the SavedModel's tensor and encoded-image signatures returning the Keras model's probabilities."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import yaml

from apps.classify.task import ClassifyTask
from tflite.audit import require_int8
from tflite.metadata import read_metadata
from vision_core.app import runs
from vision_core.app.cli import main
from vision_core.backend import keras, tf
from vision_core.data.synthetic import SHAPE_CLASSES
from vision_core.storage.weights import load_npz

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("classify_ship")]
SIZE = 32


def run_cli(*argv) -> int:
    """``python -m apps.classify argv`` in this process; its exit status."""
    return main(ClassifyTask(), [str(a) for a in argv])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify_ship")
    common = ["--preset", "shapes_resnet18", "--demo-dir", root / "shapes", "--demo-train", 96, "--demo-val", 32]
    common += ["--input-size", SIZE, "--calibration-images", 16, "--bootstrap", 50, "--epochs", 1, "--batch-size", 16]
    for name, seed in (("a", 1), ("b", 2)):
        assert run_cli("train", "--project", root / "runs", "--name", name, "--seed", seed, *common) == 0
    return {"root": root, "a": root / "runs" / "a", "b": root / "runs" / "b"}


def _val_images(trained, count: int) -> list[np.ndarray]:
    """The first ``count`` validation images of the shapes demo, RGB uint8 [SIZE, SIZE, 3]."""
    paths = sorted((trained["root"] / "shapes" / f"{SIZE}px" / "val").rglob("*.png"))[:count]
    return [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]


def _normalised(images) -> np.ndarray:
    return (np.asarray(images, np.float32) - 127.5) / 127.5


# ensembles ---------------------------------------------------------------------------------------------------------
def test_a_mean_ensemble_run_is_scored_beside_its_members_and_eval_export_and_predict_take_it(trained, tmp_path):
    task, project = ClassifyTask(), trained["root"] / "runs"
    assert run_cli("ensemble", trained["a"], trained["b"], "--combine", "mean", "--project", project) == 0
    run = project / "ensemble"
    summary = json.loads((run / "ensemble.json").read_text())
    assert [row["form"] for row in summary["forms"]] == ["ensemble", str(trained["a"]), str(trained["b"])]
    config = runs.run_config(task, run)
    assert (config.ensemble.combine, len(config.ensemble.members)) == ("mean", 2)
    prefixes = {path.split("_")[0] for path in load_npz(runs.weights_path(run))}
    assert prefixes == {"member0", "member1"}
    # the ensemble's scores are the mean of its members' softmax probabilities
    members = [runs.load_model(task, runs.run_config(task, trained[n]), runs.weights_path(trained[n])) for n in "ab"]
    ensemble = runs.load_model(task, config, runs.weights_path(run))
    expected = np.mean([keras.ops.softmax(task.scores(member, config)) for member in members], axis=0)
    np.testing.assert_allclose(task.scores(ensemble, config), expected, atol=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["headline"] == summary["forms"][0]["roc_auc"]

    assert run_cli("eval", "--run", run) == 0
    assert json.loads((run / "eval.json").read_text())["metrics"]["roc_auc"] == metrics["headline"]
    saved_models = trained["root"] / "saved_models"
    assert run_cli("export", "--run", run, "--format", "int8", "--saved-models", saved_models) == 0
    rows = {row["form"]: row for row in json.loads((run / "exports" / "forms.json").read_text())}
    assert list(rows) == ["float keras", "classify_int8.tflite"]
    assert rows["float keras"]["roc_auc"] == metrics["headline"]
    int8 = run / "exports" / "classify_int8.tflite"
    require_int8(str(int8))
    assert read_metadata(int8).labels == list(SHAPE_CLASSES)
    for i, image in enumerate(_val_images(trained, 2)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert run_cli("predict", "--run", run, "--model", int8, tmp_path, "--out", tmp_path / "out") == 0
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())["results"]) == 2


def test_a_vote_ensemble_offers_no_qat_and_no_int16x8_and_says_so(trained, capsys):
    project = trained["root"] / "runs"
    argv = ("ensemble", trained["a"], trained["b"], "--combine", "vote", "--no-score", "--project", project)
    assert run_cli(*argv, "--name", "v") == 0
    run = project / "v"
    assert runs.run_config(ClassifyTask(), run).ensemble.combine == "vote" and not (run / "ensemble.json").exists()
    capsys.readouterr()
    for argv in (("qat", "--run", run), ("export", "--run", run, "--format", "int16x8")):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(*argv)
        assert exit_info.value.code == 2
    errors = capsys.readouterr().err
    assert "qat is not offered for an ensemble run" in errors and "int16x8 is not offered for a vote" in errors


def _fake_run(trained, name: str, **model) -> str:
    """A run folder with run b's weights and config, its model settings replaced by ``model``."""
    run = trained["root"] / "fake" / name
    shutil.copytree(trained["b"] / "weights", run / "weights")
    config = yaml.safe_load((trained["b"] / "config.yaml").read_text())
    config["model"].update(model)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return str(run)


def test_members_that_differ_in_size_head_or_classes_are_named_and_ensembles_do_not_nest(trained, tmp_path, capsys):
    for i, name in enumerate(("cat", "dog")):
        for split in ("train", "val"):
            (tmp_path / split / name).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / split / name / "0.png"), np.full((SIZE, SIZE, 3), 60 * (i + 1), np.uint8))
    cases = {
        _fake_run(trained, "larger", input_size=48): "model.input_size 32 vs 48",
        _fake_run(trained, "sigmoid", head="sigmoid"): "model.head 'softmax' vs 'sigmoid'",
        _fake_run(trained, "pets"): "class names",
    }
    pets = trained["root"] / "fake" / "pets" / "config.yaml"
    config = yaml.safe_load(pets.read_text())
    config["dataset"]["data"] = str(tmp_path)
    pets.write_text(yaml.safe_dump(config))
    argv = ("ensemble", trained["a"], trained["b"], "--no-score", "--project", trained["root"] / "runs")
    assert run_cli(*argv, "--name", "e2") == 0
    cases[str(trained["root"] / "runs" / "e2")] = "is an ensemble run"
    for other, message in cases.items():
        capsys.readouterr()
        with pytest.raises(SystemExit):
            run_cli("ensemble", trained["a"], other, "--project", tmp_path / "never")
        error = capsys.readouterr().err
        assert message in error and other in error, error
    assert not (tmp_path / "never").exists()
    with pytest.raises(SystemExit):
        run_cli("train", "--members", "[x.yaml, y.yaml]", "--project", tmp_path / "never")
    assert "made by `python -m apps.classify ensemble" in capsys.readouterr().err


# MediaPipe and the SavedModel --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(trained):
    run, saved_models = trained["a"], trained["root"] / "saved_models"
    argv = ("export", "--run", run, "--format", "int8", "saved_model", "--saved-models", saved_models, "--no-score")
    assert run_cli(*argv) == 0
    return {"int8": run / "exports" / "classify_int8.tflite", "saved_model": saved_models / "classify_a" / "1"}


def _mediapipe_scores(path, images) -> list[dict[str, float]]:
    mediapipe = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        results = [
            classifier.classify(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image))
            for image in images
        ]
    return [{c.category_name: c.score for c in result.classifications[0].categories} for result in results]


STEP = 1 / 256  # a uint8 probability's quantization step


def test_mediapipe_image_classifier_loads_the_int8_file_with_our_labels_and_our_top_class(trained, exported):
    task = ClassifyTask()
    images = _val_images(trained, 12)
    ours = task.runner(exported["int8"])(_normalised(images))
    theirs = _mediapipe_scores(exported["int8"], images)
    for scores, found in zip(ours, theirs):
        assert sorted(found) == sorted(SHAPE_CLASSES)
        np.testing.assert_allclose([found[name] for name in SHAPE_CLASSES], scores, atol=2 * STEP)
        top2 = np.sort(scores)[-2:]
        if top2[1] - top2[0] > 2 * STEP:  # a near-tie may round either way in another runtime
            assert max(found, key=found.get) == SHAPE_CLASSES[int(np.argmax(scores))]


def test_mediapipe_reads_a_sigmoid_head_s_independent_label_probabilities(trained, tmp_path):
    task = ClassifyTask()
    config = runs.run_config(task, trained["a"])
    config.model.head = "sigmoid"  # the same logits, shipped through a sigmoid: a multi-label classifier
    model = runs.load_model(task, config, runs.weights_path(trained["a"]))
    path = task.export(model, config, tmp_path / "sigmoid_run", ["int8"])["int8"]
    assert read_metadata(path).labels == list(SHAPE_CLASSES)
    images = _val_images(trained, 6)
    ours = task.runner(path)(_normalised(images))
    expected = 1 / (1 + np.exp(-np.asarray(model(_normalised(images)))))
    np.testing.assert_allclose(ours, expected, atol=0.05)
    for scores, found in zip(ours, _mediapipe_scores(path, images)):
        np.testing.assert_allclose([found[name] for name in SHAPE_CLASSES], scores, atol=2 * STEP)
    assert not np.allclose(ours.sum(axis=1), 1, atol=0.05)  # independent per label, not a softmax


def test_the_saved_model_serves_the_keras_probabilities_for_tensors_and_for_png_bytes(trained, exported):
    task = ClassifyTask()
    model = runs.load_model(task, runs.run_config(task, trained["a"]), runs.weights_path(trained["a"]))
    loaded = tf.saved_model.load(str(exported["saved_model"]))
    images = _val_images(trained, 3)
    expected = np.asarray(keras.ops.softmax(model(_normalised(images))))
    served = loaded.signatures["serving_default"](image=tf.constant(_normalised(images)))
    assert list(served) == ["probabilities"]
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    png = [cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes() for image in images]
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))["probabilities"].numpy()
    np.testing.assert_allclose(from_bytes, expected, atol=1e-5)
    # a larger image is decoded and resized in the graph as cv2.resize(INTER_LINEAR) resizes float pixels
    large = cv2.resize(images[0], (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_NEAREST)
    resized = cv2.resize(large.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    encoded = cv2.imencode(".png", cv2.cvtColor(large, cv2.COLOR_RGB2BGR))[1].tobytes()
    served = loaded.signatures["serving_bytes"](image_bytes=tf.constant([encoded]))["probabilities"].numpy()
    np.testing.assert_allclose(served, keras.ops.softmax(model(_normalised(resized[None]))), atol=1e-5)
