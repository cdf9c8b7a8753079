"""``python -m vision_core.backbones list|table``."""

from conftest import run_python


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


def test_help_describes_every_command_and_points_to_the_classify_app():
    result = run_python(["-m", "vision_core.backbones", "--help"])
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps the description
    assert "{list,table}" in text and "python -m apps.classify" in text
