"""The detect app's task without training: data checks and settings checked before a run starts."""

import json

import pytest

from apps.detect.task import DetectTask
from vision_core.app.cli import main
from vision_core.data.detection import write_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo dataset of 4 train and 2 val images of 64 px: ``root/{train,val}/annotations.json``."""
    root = tmp_path_factory.mktemp("detect_task") / "demo"
    write_demo_dataset(root, train=4, val=2, size=64)
    return root


def test_data_check_of_one_annotation_file_checks_it_alone(tmp_path, capsys):
    data = write_demo_dataset(tmp_path / "demo", train=3, val=1, size=64)["train"]
    missing = json.loads(data.read_text())["images"][0]["file_name"]
    (data.parent / missing).unlink()
    capsys.readouterr()
    assert main(DetectTask(), ["data", "check", "--data", str(data)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(report) == ["problems", "train"] and report["problems"] == 1
    assert (report["train"]["source"], report["train"]["images"]) == (str(data), 3)
    assert [(issue["kind"], issue["path"]) for issue in report["train"]["issues"]] == [
        ("missing_image", str(data.parent / missing))]


def test_training_on_one_annotation_file_asks_for_val_and_leaves_no_run_folder(demo, tmp_path, capsys):
    data = demo / "train" / "annotations.json"
    with pytest.raises(SystemExit) as exit_:
        main(DetectTask(), ["train", "--project", str(tmp_path), "--data", str(data)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m apps.detect train: error: --data {data} is one annotation file: give the validation split "
        "with --val (and --val-images if its images live elsewhere)\n")
    assert list(tmp_path.iterdir()) == []


def test_training_on_a_missing_file_exits_2_naming_it_and_leaves_no_run_folder(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    project = tmp_path / "runs"
    for _ in range(2):  # a second try would be named exp2 if the first had left exp behind
        with pytest.raises(SystemExit) as exit_:
            main(DetectTask(), ["train", "--project", str(project), "--data", str(missing)])
        assert exit_.value.code == 2
        assert capsys.readouterr().err == f"python -m apps.detect train: error: {missing}: no such file or folder\n"
    assert not project.exists()
