"""The classify app on volumes: the volume presets and settings, and a tiny R(2+1)D run from the generated NIfTI
demo through train -> qat -> int8 TFLite (all-int8 audit) -> the same evaluator and predict (every export form of
a volume model was run by hand; the export path is the images')."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from apps.classify.config import PRESETS
from apps.classify.models import build_classifier
from apps.classify.task import ClassifyTask
from tflite.audit import require_int8
from vision_core.app import runs
from vision_core.app.cli import build_parser, main, resolve_config
from vision_core.backbones.resnet3d import VOLUME_RESNETS
from vision_core.data.classification.volumes import VOLUME_CLASSES
from vision_core.errors import AppError, ConfigError


def run_cli(*argv) -> int:
    return main(ClassifyTask(), [str(a) for a in argv])


def resolved(*argv):
    task = ClassifyTask()
    return task, resolve_config(task, build_parser(task).parse_args(["train", *map(str, argv)]))


def test_each_volume_network_has_a_preset_on_the_volume_demo():
    for name in VOLUME_RESNETS:
        config = PRESETS[f"volumes_{name}"]
        assert config.model.backbone == name and config.model.volume_shape == "16,64,64"
        assert config.dataset.demo == "volumes" and config.model.channels == 1
        assert config.loss.label_smoothing == 0.1  # keeps the float/int8 explanation agreement (benchmarks)


def test_volume_settings_are_checked_when_the_config_is_resolved(tmp_path):
    task, config = resolved("--preset", "volumes_mc3_18", "--volume-shape", "8,32,48")
    assert task.volume_shape(config) == (8, 32, 48) and task.backbone(config) is None
    with pytest.raises(ConfigError, match=r"model.volume_shape='8,32': expected 'D,H,W'"):
        resolved("--preset", "volumes_mc3_18", "--volume-shape", "8,32")
    with pytest.raises(ConfigError, match="volumes need a volume backbone"):
        resolved("--preset", "volumes_mc3_18", "--backbone", "resnet18")
    with pytest.raises(ConfigError, match="r3d_18 classifies volumes: give volume_shape"):
        resolved("--backbone", "r3d_18")
    with pytest.raises(ConfigError, match="volumes have one channel"):
        resolved("--preset", "volumes_mc3_18", "--channels", "3")
    task, config = resolved("--preset", "shapes_resnet18", "--demo", "volumes", "--demo-dir", tmp_path)
    with pytest.raises(AppError, match="the volume demo needs model.volume_shape"):
        task.splits(config)


def test_a_volume_model_builds_from_its_settings_with_slices_last_input():
    _, config = resolved("--preset", "volumes_r3d_18", "--volume-shape", "4,16,16", "--backbone-alpha", "0.125")
    model = build_classifier(3, **dataclasses.asdict(config.model))
    assert tuple(model.inputs[0].shape) == (None, 16, 16, 4) and tuple(model.outputs[0].shape) == (None, 3)
    assert model.get_layer("stage1_block1_conv1_conv").filters == 8  # 64 * 0.125


@pytest.mark.slow
def test_a_tiny_volume_run_ships_all_int8_and_is_scored_by_the_same_evaluator(tmp_path, capsys):
    common = [
        "--preset",
        "volumes_r2plus1d_18",
        "--volume-shape",
        "4,16,16",
        "--backbone-alpha",
        0.125,
        "--demo-dir",
        tmp_path / "demo",
        "--demo-patients",
        15,
        "--batch-size",
        4,
        "--steps",
        2,
        "--fine-tune-batch",
        4,
        "--calibration-images",
        8,
        "--bootstrap",
        20,
    ]
    assert run_cli("train", *common, "--epochs", 1, "--project", tmp_path / "runs", "--name", "tiny") == 0
    run = tmp_path / "runs" / "tiny"
    assert run_cli("qat", "--run", run) == 0
    qat_file = run / "qat" / "qat_int8.tflite"
    require_int8(str(qat_file))  # raises FloatOpError naming any float op
    report = json.loads((run / "qat" / "report.json").read_text())
    rows = {row["form"]: row for row in report["forms"]}
    assert list(rows) == ["float keras", "qat_int8.tflite"]
    assert all(row["samples"] == 3 for row in rows.values())  # the 3 patients of the val split, one volume each
    capsys.readouterr()
    assert run_cli("eval", "--run", run, "--model", qat_file) == 0
    scored = json.loads((run / "eval_qat_int8.tflite.json").read_text())["metrics"]
    assert scored["top1"] == rows["qat_int8.tflite"]["top1"]
    assert list(scored["per_class"]) == list(VOLUME_CLASSES)
    task = ClassifyTask()
    config = runs.run_config(task, run)
    assert task.scores(qat_file, config).shape == (3, 3)
    # explain: every method per voxel on the float model, occlusion on the int8 file, the two maps compared.
    occlusion = ["--patch", 8, "--depth-patch", 2, "--slices", 2]
    capsys.readouterr()
    float_explain = ["explain", "--run", run, "--count", 2, "--compare", qat_file, *occlusion]
    assert run_cli(*float_explain, "--out", tmp_path / "float") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 2 and printed["compare"]["pairs"] == 2
    float_run = json.loads((tmp_path / "float" / "explanations.json").read_text())
    assert float_run["settings"]["volume"] and float_run["settings"]["depth_stride"] == 1
    int8_explain = ["explain", "--run", run, "--model", qat_file, "--count", 2, *occlusion]
    assert run_cli(*int8_explain, "--out", tmp_path / "int8") == 0
    int8_run = json.loads((tmp_path / "int8" / "explanations.json").read_text())
    assert int8_run["methods"] == ["occlusion"] and int8_run["compare"]["model"] == "float keras"
    for float_result, int8_result in zip(float_run["results"], int8_run["results"], strict=True):
        assert float_result["file"] == int8_result["file"] and float_result["file"].endswith(".nii.gz")
        (float_target,) = float_result["targets"]
        maps = {m: np.load(tmp_path / "float" / file) for m, file in float_target["maps"].items()}
        assert sorted(maps) == ["gradcam", "integrated_gradients", "occlusion", "saliency"]
        assert all(m.shape == (16, 16, 4) for m in maps.values())  # [H, W, D], a value per voxel
        assert len(float_target["panel_slices"]) == 2 and (tmp_path / "float" / float_result["panel"]).is_file()
        int8_map = np.load(tmp_path / "int8" / int8_result["targets"][0]["maps"]["occlusion"])
        np.testing.assert_array_equal(int8_map, np.load(tmp_path / "float" / float_target["compare"]["map"]))
    one = sorted((tmp_path / "demo").rglob("*.nii.gz"))[0]
    capsys.readouterr()
    assert run_cli("explain", "--run", run, one, tmp_path / "missing.nii", *occlusion, "--out", tmp_path / "one") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 1 and printed["skipped"] == {str(tmp_path / "missing.nii"): "no such file or folder"}
    predict = ["predict", "--run", run, "--model", qat_file, tmp_path / "demo"]
    assert run_cli(*predict, "--out", tmp_path / "predicted") == 0
    predictions = json.loads((tmp_path / "predicted" / "predictions.json").read_text())
    assert predictions["counts"] == {"images": 15, "skipped": 0}
    assert predictions["results"][0]["file"].endswith("p0000.nii.gz")
