"""A training process killed with SIGKILL mid-epoch resumes to the uninterrupted run's exact end."""

from __future__ import annotations

import csv
import json
import signal

import numpy as np
import pytest
from conftest import ROOT, run_python

from vision_core.storage.weights import load_npz

TOY = ["-m", "toy_task", "train", "--epochs", "5", "--dropout", "0.3"]
ENV = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}


def epochs(run) -> list[str]:
    with open(run / "results.csv") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


@pytest.mark.slow
@pytest.mark.xdist_group("app_resume")
def test_resume_after_sigkill_ends_with_the_uninterrupted_runs_weights_and_log(tmp_path):
    full = run_python([*TOY, "--project", str(tmp_path), "--name", "full"], env_extra=ENV, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    # Killed during epoch 3 (after its 2nd batch): epochs 1 and 2 are saved, epoch 3 is lost.
    killed = run_python(
        [*TOY, "--project", str(tmp_path), "--name", "cut"], env_extra={**ENV, "TOY_KILL_AT": "3,2"}, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL
    cut = tmp_path / "cut"
    assert epochs(cut) == ["1", "2"]
    assert json.loads(str(load_npz(cut / "weights/last.state.npz")["meta"]))["state"]["epoch"] == 2
    # --resume without a folder takes the project's newest resumable run: "cut".
    resumed = run_python(
        ["-m", "toy_task", "train", "--resume", "--project", str(tmp_path)], env_extra=ENV, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {cut} after epoch 2" in resumed.stderr
    assert epochs(cut) == ["1", "2", "3", "4", "5"]
    assert (cut / "results.csv").read_text() == (tmp_path / "full" / "results.csv").read_text()
    # Same weights, optimizer slots and step (so the same LR-schedule position) and dropout seed state.
    expected, got = load_npz(tmp_path / "full/weights/last.state.npz"), load_npz(cut / "weights/last.state.npz")
    assert set(got) == set(expected)
    for key in sorted(set(expected) - {"meta"}):
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert int(got["optimizer/00000"]) == 5 * 4
    printed = resumed.stdout[resumed.stdout.rindex("\n{") + 1 :]  # Keras's progress lines come first
    assert json.loads(printed)["epochs"] == 5
