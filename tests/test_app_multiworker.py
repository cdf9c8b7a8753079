"""Two worker processes on loopback train the toy task with MultiWorkerMirroredStrategy in lockstep."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from vision_core.storage.weights import load_npz


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.xdist_group("app_multiworker")
def test_two_workers_finish_with_identical_weights(tmp_path):
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env.update(
            PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}",
            VISION_KERAS="keras3",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "toy_task",
                    "train",
                    "--project",
                    str(tmp_path),
                    "--name",
                    "mw",
                    "--exist-ok",
                    "--strategy",
                    "multi_worker",
                    "--epochs",
                    "2",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
        # MultiWorkerMirroredStrategy's class name is CollectiveAllReduceStrategy.
        assert "strategy: CollectiveAllReduceStrategy, 2 replicas" in err
    chief, other = tmp_path / "mw", tmp_path / "mw" / "worker1"  # worker 0 is the chief
    chief_weights, other_weights = (
        load_npz(chief / "weights/last.weights.npz"),
        load_npz(other / "weights/last.weights.npz"),
    )
    assert set(chief_weights) == set(other_weights) == {"conv/kernel", "conv/bias", "logits/kernel", "logits/bias"}
    for key in chief_weights:
        np.testing.assert_array_equal(chief_weights[key], other_weights[key], err_msg=key)
    # Both saw 2 epochs of 4 global steps (batch 16 split 8 + 8 across the workers).
    for run in (chief, other):
        assert int(load_npz(run / "weights/last.state.npz")["optimizer/00000"]) == 8
