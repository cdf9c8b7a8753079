import json

import pytest

from conftest import run_python
from tflite.audit import require_int8
from vision_core.backbones.demo import run_demo


def test_list_prints_every_registered_backbone():
    from vision_core.backbones import list_backbones

    result = run_python(["-m", "vision_core.backbones", "list"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == list_backbones()


def test_table_reports_params_macs_and_reference():
    result = run_python(["-m", "vision_core.backbones", "table", "resnet18", "--markdown"])
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| resnet18 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["resnet18", "11.69", "1.81", "11.69", "1.82", "-0.0%"]


def test_help_describes_every_command():
    result = run_python(["-m", "vision_core.backbones", "--help"])
    assert result.returncode == 0
    for command in ("list", "table", "demo"):
        assert command in result.stdout


@pytest.mark.slow
def test_demo_trains_and_ships_an_int8_model_that_agrees(tmp_path):
    metrics = run_demo(tmp_path, backbone="resnet18", input_size=32, train_images=256, val_images=64, epochs=2)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    require_int8(metrics["tflite"])
    assert metrics["top1_agreement"] >= 0.9
    assert abs(metrics["int8_accuracy"] - metrics["float_accuracy"]) <= 0.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "resnet18_int8.tflite"]
