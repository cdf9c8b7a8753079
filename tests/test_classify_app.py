"""The classify app: recipes as presets, and train -> qat -> export -> eval -> predict on the shapes and on
class folders and CSVs, every form scored by one evaluator."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from dicom_files import write_dicom

from apps.classify.config import PRESETS
from apps.classify.task import ClassifyTask
from tflite.audit import require_int8
from tflite.metadata import read_metadata
from vision_core.app import runs
from vision_core.app.cli import build_parser, main, resolve_config
from vision_core.app.schedules import build_schedule
from vision_core.backbones import list_backbones
from vision_core.classification.attribution import rank_correlation
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set
from vision_core.errors import ConfigError


def run_cli(*argv) -> int:
    """``python -m apps.classify argv`` in this process; its exit status."""
    return main(ClassifyTask(), [str(a) for a in argv])


def test_the_fundus_demo_is_the_default_preset_and_roc_auc_ranks_checkpoints():
    assert next(iter(PRESETS)) == "fundus_resnet18" and ClassifyTask.headline_metric == "roc_auc"
    fundus = PRESETS["fundus_resnet18"]
    assert (fundus.dataset.data, fundus.dataset.demo, fundus.model.backbone) == (None, "fundus", "resnet18")
    assert (fundus.model.input_size, fundus.train.epochs, fundus.evaluation.bootstrap) == (96, 6, 1000)
    assert fundus.loss.label_smoothing == 0.1  # int8 keeps the ranking (benchmarks/README.md)


def test_every_backbone_has_its_shapes_recipe_as_a_preset():
    assert {f"shapes_{name}" for name in list_backbones()} <= set(PRESETS)
    recipes = {
        name: (p.train.epochs, p.train.cycles, p.train.learning_rate, p.model.layer_scale_init)
        for name, p in PRESETS.items()
    }
    assert recipes["shapes_resnet18"] == (3, 1, 2e-3, None)
    assert recipes["shapes_resnet50"] == (6, 1, 1e-3, None)
    assert recipes["shapes_resnet101"] == (10, 1, 1e-3, None)
    assert recipes["shapes_mobilenet_v2"] == (6, 1, 2e-3, None)
    assert recipes["shapes_vovnet57"] == (6, 2, 2e-3, None)
    assert recipes["shapes_revcol_s"] == (6, 2, 1e-4, 1.0)
    assert (
        recipes["shapes_revcol_t_column0"] == (6, 1, 3e-4, 1.0)
        and PRESETS["shapes_revcol_t_column0"].model.first_column_only
    )
    shapes = PRESETS["shapes_resnet18"]
    assert (shapes.train.optimizer, shapes.train.batch_size, shapes.model.bn_momentum) == ("adam", 32, 0.9)
    assert (shapes.qat.fine_tune_target, shapes.qat.fine_tune_lr, shapes.qat.steps) == ("distillation", 1e-6, 100)


def test_a_recipe_with_two_cycles_warms_up_and_decays_to_zero_twice():
    schedule = build_schedule(PRESETS["shapes_vovnet57"].train, steps_per_epoch=10)  # 6 epochs: 2 cycles of 30
    rates = [float(schedule(step)) for step in range(60)]
    assert rates[:30] == pytest.approx(rates[30:])
    assert rates[0] == pytest.approx(2e-3 / 3) and rates[2] == pytest.approx(2e-3)  # warm-up: 3 steps
    assert rates[29] == pytest.approx(2e-3 * (1 + np.cos(np.pi * 26 / 27)) / 2, rel=1e-4)  # float32


def assert_decided_images_agree(reference: np.ndarray, candidate: np.ndarray, min_gap: float = 0.1):
    """Same top-1 on every image whose ``reference`` top-1 probability leads the runner-up by ``min_gap``."""
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] >= min_gap
    assert decided.sum() >= len(reference) // 4, "too few decided images to compare"
    flipped = decided & (reference.argmax(1) != candidate.argmax(1))
    assert not flipped.any(), (np.flatnonzero(flipped), reference[flipped], candidate[flipped])


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    common = [
        "--preset",
        "shapes_resnet18",
        "--demo-dir",
        root / "shapes",
        "--demo-train",
        800,
        "--demo-val",
        64,
        "--input-size",
        32,
        "--steps",
        4,
        "--calibration-images",
        32,
    ]
    assert run_cli("train", "--project", root / "runs", "--name", "tiny", "--epochs", 3, *common) == 0
    run = root / "runs" / "tiny"
    assert run_cli("qat", "--run", run) == 0
    assert run_cli("export", "--run", run, "--saved-models", root / "saved_models") == 0
    return {"root": root, "run": run}


@pytest.mark.slow
@pytest.mark.xdist_group("classify_app")
def test_the_shapes_run_ships_every_form_scored_by_one_evaluator(shapes_run):
    run, root = shapes_run["run"], shapes_run["root"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["headline_metric"] == "roc_auc" and metrics["metrics"]["samples"] == 64
    assert list(metrics["metrics"]["per_class_accuracy"]) == list(SHAPE_CLASSES)
    assert np.sum(metrics["metrics"]["confusion_matrix"]) == 64
    losses = [float(line.split(",")[3]) for line in (run / "results.csv").read_text().splitlines()[1:]]
    assert len(losses) == 3 and losses[2] < losses[0]  # it learned
    assert (run / "confusion_matrix.png").is_file()
    qat = json.loads((run / "qat" / "report.json").read_text())
    assert len(qat["job"]["losses"]) == 4 and qat["job"]["frozen_batch_norms"] > 0
    rows = {row["form"]: row for row in json.loads((run / "exports" / "forms.json").read_text())}
    assert list(rows) == [
        "float keras",
        "classify_float32.tflite",
        "classify_float16.tflite",
        "classify_int8.tflite",
        "classify_int16x8.tflite",
        "classify_int8_qat.tflite",
        "classify.onnx",
        "classify_int8.onnx",
    ]
    assert rows["classify_float32.tflite"]["agreement"] == 1.0 and rows["classify.onnx"]["agreement"] == 1.0
    # A 75-step model has many near-tied images, where any rounding flips the top-1, so held-out agreement
    # (measured in benchmarks/backbone_int8.py on trained models) is not asserted: every image the float
    # model decides must keep its class (int8 noise moves these probabilities by ~0.01-0.03).
    task = ClassifyTask()
    config = runs.run_config(task, run)
    float_scores = task.scores(run / "exports" / "classify_float32.tflite", config)
    for name in ("classify_int8.tflite", "classify_int8_qat.tflite"):
        require_int8(str(run / "exports" / name))
        assert read_metadata(run / "exports" / name).labels == list(SHAPE_CLASSES)
        assert_decided_images_agree(float_scores, task.scores(run / "exports" / name, config))
    assert (root / "saved_models" / "classify_tiny" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("classify_app")
def test_eval_of_an_exported_file_and_predict_on_images(shapes_run, tmp_path, capsys):
    run = shapes_run["run"]
    model = run / "exports" / "classify_int8_qat.tflite"
    assert run_cli("eval", "--run", run, "--model", model) == 0
    result = json.loads((run / "eval_classify_int8_qat.tflite.json").read_text())
    rows = {row["form"]: row for row in json.loads((run / "exports" / "forms.json").read_text())}
    assert result["metrics"]["top1"] == rows["classify_int8_qat.tflite"]["top1"]
    assert (run / "confusion_matrix_classify_int8_qat.tflite.png").is_file()
    images, labels = classification_set(3, 32, seed=5)
    for i, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    capsys.readouterr()
    assert run_cli("predict", "--run", run, "--model", model, tmp_path, "--out", tmp_path / "out") == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions["results"]) == 3 and predictions["class_names"] == list(SHAPE_CLASSES)


@pytest.mark.slow
@pytest.mark.xdist_group("classify_app")
def test_explain_maps_the_float_model_and_its_int8_file_and_measures_their_agreement(shapes_run, tmp_path, capsys):
    run = shapes_run["run"]
    int8 = run / "exports" / "classify_int8_qat.tflite"
    classes = ["--target-class", "circle", "square", "--count", 2]
    capsys.readouterr()
    assert run_cli("explain", "--run", run, *classes, "--out", tmp_path / "float") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 2 and printed["compare"]["model"] == str(int8)  # the run's shipped int8 file
    float_run = json.loads((tmp_path / "float" / "explanations.json").read_text())
    assert float_run["methods"] == ["gradcam", "integrated_gradients", "saliency", "occlusion"]
    assert float_run["settings"]["patch"] == 5 and float_run["settings"]["stride"] == 2  # 32 px input
    # The int8 file explained by itself runs occlusion only and is compared with the run's float model.
    assert run_cli("explain", "--run", run, "--model", int8, *classes, "--out", tmp_path / "int8") == 0
    int8_run = json.loads((tmp_path / "int8" / "explanations.json").read_text())
    assert int8_run["methods"] == ["occlusion"] and int8_run["compare"]["model"] == "float keras"
    rhos = []
    for float_result, int8_result in zip(float_run["results"], int8_run["results"]):
        assert float_result["file"] == int8_result["file"] and float_result["label"] in SHAPE_CLASSES
        assert (tmp_path / "float" / float_result["panel"]).is_file()
        for float_target, int8_target in zip(float_result["targets"], int8_result["targets"], strict=True):
            assert float_target["class"] == int8_target["class"]
            maps = {m: np.load(tmp_path / "float" / file) for m, file in float_target["maps"].items()}
            assert sorted(maps) == sorted(float_run["methods"]) and all(m.shape == (32, 32) for m in maps.values())
            int8_map = np.load(tmp_path / "float" / float_target["compare"]["map"])
            # the same two occlusion maps, whichever form is explained and which compared
            np.testing.assert_array_equal(int8_map, np.load(tmp_path / "int8" / int8_target["maps"]["occlusion"]))
            np.testing.assert_array_equal(maps["occlusion"], np.load(tmp_path / "int8" / int8_target["compare"]["map"]))
            rho = rank_correlation(maps["occlusion"], int8_map)
            assert float_target["compare"]["spearman"] == pytest.approx(rho)
            assert int8_target["compare"]["spearman"] == pytest.approx(rho)
            rhos.append(rho)
    assert len(rhos) == 4 and float_run["compare"]["spearman_mean"] == pytest.approx(np.mean(rhos))
    assert float_run["compare"]["spearman_median"] == pytest.approx(np.median(rhos))
    with pytest.raises(SystemExit, match="2"):
        run_cli("explain", "--run", run, "--model", int8, "--methods", "saliency")
    assert "saliency need the Keras model" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        run_cli("explain", "--run", run, "--target-class", "hexagon")
    assert "--target-class hexagon: not a class of the run" in capsys.readouterr().err


def _write_folders(root, per_class: int, seed: int):
    images, labels = classification_set(per_class * 8, 32, seed=seed)
    for split, part in (("train", slice(0, per_class * 6)), ("val", slice(per_class * 6, None))):
        for i, (image, label) in enumerate(zip(images[part], labels[part])):
            folder = root / split / SHAPE_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


@pytest.mark.slow
def test_class_folders_and_a_csv_train_and_a_bad_csv_is_named_by_data_check(tmp_path, capsys):
    _write_folders(tmp_path / "folders", per_class=4, seed=3)
    tiny = ["--input-size", 32, "--epochs", 1, "--batch-size", 8, "--project", tmp_path / "runs"]
    assert run_cli("train", "--data", tmp_path / "folders", *tiny, "--name", "folders") == 0
    config = (tmp_path / "runs" / "folders" / "config.yaml").read_text()
    assert str(tmp_path / "folders") in config
    rows = ["path,label,split"] + [
        f"{p.relative_to(tmp_path / 'folders')},{p.parent.name},{p.parts[-3]}"
        for p in sorted((tmp_path / "folders").rglob("*.png"))
    ]
    (tmp_path / "folders" / "labels.csv").write_text("\n".join(rows) + "\n")
    assert run_cli("train", "--data", tmp_path / "folders" / "labels.csv", *tiny, "--name", "csv") == 0
    with pytest.raises(SystemExit) as exited:
        run_cli("train", "--data", tmp_path / "missing", *tiny, "--name", "missing")
    assert exited.value.code == 2
    assert not (tmp_path / "runs" / "missing").exists()  # checked before the run folder is made
    (tmp_path / "folders" / "bad.csv").write_text("\n".join(rows + ["train/circle/missing.png,circle,train"]) + "\n")
    capsys.readouterr()
    assert run_cli("data", "check", "--data", tmp_path / "folders" / "bad.csv", "--input-size", 32) == 1
    assert "missing.png" in capsys.readouterr().out


def _write_dicom_csv(root, patients: int, seed: int) -> list[str]:
    """Grey DICOM chest films of ``patients`` patients (two views each): a bright blob marks "nodule", a bright
    bar "effusion"; rows ``path,labels,patient_id`` (multi-label), without the header."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(patients):
        for view in ("pa", "lat"):
            film = rng.integers(0, 1200, (32, 32)).astype(np.uint16)
            labels = [name for name in ("effusion", "nodule") if rng.random() < 0.5]
            if "nodule" in labels:
                film[8:14, 8:14] = 4000
            if "effusion" in labels:
                film[26:30, :] = 4000
            name = f"P{patient}_{view}.dcm"
            write_dicom(root / name, film, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
            rows.append(f"{name},{'|'.join(labels)},P{patient}")
    return rows


@pytest.mark.slow
def test_a_multi_label_dicom_csv_trains_with_the_sigmoid_head_and_data_check_names_bad_files(tmp_path, capsys):
    rows = _write_dicom_csv(tmp_path / "films", patients=20, seed=0)
    (tmp_path / "films" / "labels.csv").write_text("\n".join(["path,labels,patient_id", *rows]) + "\n")
    data = ["--data", tmp_path / "films" / "labels.csv", "--input-size", 32]
    tiny = [*data, "--epochs", 1, "--batch-size", 8, "--project", tmp_path / "runs", "--bootstrap", 50]
    with pytest.raises(SystemExit) as exited:  # a labels column needs the sigmoid head
        run_cli("train", *tiny, "--name", "softmax")
    assert exited.value.code == 2
    options = ["--head", "sigmoid", "--channels", 1, "--mixup-alpha", 0.2, "--focal-gamma", 2, "--class-weights"]
    assert run_cli("train", *tiny, *options, "balanced", "--name", "films") == 0
    metrics = json.loads((tmp_path / "runs" / "films" / "metrics.json").read_text())["metrics"]
    assert set(metrics["per_class"]) == {"effusion", "nodule"} and "subset_accuracy" in metrics
    assert (
        metrics["patient"]["patients"]
        == len({row.split(",")[2] for row in rows})
        - len({row.split(",")[2] for row in rows} - set(metrics.get("val_patients", [])))
        or metrics["patient"]["patients"] > 0
    )
    assert {p.name for p in (tmp_path / "runs" / "films").glob("*.png")} >= {
        "roc.png",
        "precision_recall.png",
        "calibration.png",
    }
    run = tmp_path / "runs" / "films"
    assert run_cli("export", "--run", run, "--format", "float32", "--no-score") == 0
    exported = next((run / "exports").glob("*float32.tflite"))
    assert run_cli("eval", "--run", run, "--model", exported) == 0
    scored = json.loads((run / f"eval_{exported.name}.json").read_text())["metrics"]
    assert scored["roc_auc"] == pytest.approx(metrics["roc_auc"], abs=1e-3)  # sigmoid shipped, not a softmax
    capsys.readouterr()
    assert run_cli("predict", "--run", run, tmp_path / "films" / "P0_pa.dcm", "--out", tmp_path / "out") == 0
    predicted = json.loads((tmp_path / "out" / "predictions.json").read_text())["results"][0]
    assert predicted["output"] == "P0_pa.jpg" and set(predicted["positive"]) <= {"effusion", "nodule"}
    sources = [tmp_path / "films" / "P0_pa.dcm", tmp_path / "films" / "absent.dcm"]
    explain = ["--methods", "gradcam", "occlusion", "--compare", exported, "--out", tmp_path / "explain"]
    capsys.readouterr()
    assert run_cli("explain", "--run", run, *sources, *explain) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 1 and printed["skipped"] == {str(sources[1]): "no such file or folder"}
    (explained,) = json.loads((tmp_path / "explain" / "explanations.json").read_text())["results"]
    # every class at or over the threshold, as predict lists them, else the most probable one
    expected = predicted["positive"] or [predicted["top"][0]["label"]]
    assert sorted(target["class"] for target in explained["targets"]) == sorted(expected)
    assert all(sorted(target["maps"]) == ["gradcam", "occlusion"] for target in explained["targets"])
    assert printed["compare"]["model"] == str(exported) and printed["compare"]["pairs"] == len(expected)
    bad = [*rows, "P0_pa.dcm,nodule,P99", "missing.dcm,nodule,P98"]
    write_dicom(tmp_path / "films" / "empty.dcm", None)
    bad.append("empty.dcm,effusion,P97")
    split = ["path,labels,patient_id,split"] + [
        f"{row},{'val' if i in (0, len(bad) - 3) else 'train'}" for i, row in enumerate(bad)
    ]
    (tmp_path / "films" / "bad.csv").write_text("\n".join(split) + "\n")
    capsys.readouterr()
    check = ["data", "check", "--data", tmp_path / "films" / "bad.csv", "--head", "sigmoid", "--input-size", 32]
    assert run_cli(*check) == 1
    report = json.loads(capsys.readouterr().out)
    train_issues = {issue["path"]: issue["kind"] for issue in report["train"]["issues"]}
    assert train_issues[str(tmp_path / "films" / "missing.dcm")] == "missing_image"
    assert train_issues[str(tmp_path / "films" / "empty.dcm")] == "unreadable_image"
    assert report["patients_in_both_splits"][0].startswith("patient 'P0'")


def test_the_dicom_window_and_loss_options_are_checked_when_the_config_is_resolved():
    task = ClassifyTask()
    parser = build_parser(task)
    config = resolve_config(task, parser.parse_args(["train", "--window", "40,400", "--focal-gamma", "2"]))
    assert task.window(config) == (40.0, 400.0) and config.loss.focal_gamma == 2.0
    with pytest.raises(ConfigError, match=r"dataset.window='40,x': expected 'C,W'"):
        resolve_config(task, parser.parse_args(["train", "--window", "40,x"]))
    with pytest.raises(ConfigError, match=r"loss.label_smoothing=1.0: must be in \[0, 1\)"):
        resolve_config(task, parser.parse_args(["train", "--label-smoothing", "1"]))


def test_data_check_names_every_label_outside_the_class_names_and_exits_non_zero(tmp_path, capsys):
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.zeros((8, 8, 3), np.uint8))
    rows = ["path,label,patient_id", "a.png,normal,P1", "b.png,fracture,P2", "c.png,tumour,P3"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as exited:
        run_cli("data", "check", "--data", tmp_path / "labels.csv", "--class-names", "[normal, abnormal]")
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "2 label(s) outside the class names ['normal', 'abnormal']: line 3: 'fracture'; line 4: 'tumour'" in message
