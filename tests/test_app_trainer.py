"""The shared trainer on the toy task: schedules, run folder, EMA, NaN guard, strategies."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from toy_task import ToyTask

from vision_core.app import runs
from vision_core.app.cli import main
from vision_core.app.config import TrainConfig, setting
from vision_core.app.distribute import dtype_policy, is_chief, make_strategy
from vision_core.app.schedules import WarmupDecay, build_schedule
from vision_core.app.task import Task
from vision_core.backend import keras, tf
from vision_core.errors import AppError
from vision_core.storage.weights import load_npz, weights_by_path


def lr(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_warmup_is_linear_then_cosine_decays_to_the_floor():
    schedule = WarmupDecay(peak=1.0, total_steps=10, warmup_steps=2, decay="cosine", min_ratio=0.1)
    assert [round(lr(schedule, s), 6) for s in (0, 1, 2, 6, 10, 20)] == [0.5, 1.0, 1.0, 0.55, 0.1, 0.1]


def test_step_decay_multiplies_by_gamma_at_each_milestone():
    schedule = WarmupDecay(peak=0.1, total_steps=12, decay="step", milestones=(4, 8), gamma=0.5)
    assert [round(lr(schedule, s), 6) for s in (0, 3, 4, 7, 8, 11)] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_constant_schedule_after_warmup_and_epochs_become_steps():
    schedule = build_schedule(
        TrainConfig(epochs=4, learning_rate=0.2, warmup_epochs=0.5, schedule="constant", step_milestones=(2,)),
        steps_per_epoch=10,
    )
    assert (schedule.total_steps, schedule.warmup_steps, schedule.milestones) == (40, 5, (20,))
    assert [round(lr(schedule, s), 6) for s in (0, 4, 5, 39)] == [0.04, 0.2, 0.2, 0.2]


def test_mixed_precision_is_for_gpus_only():
    strategy = make_strategy("auto")
    assert strategy is tf.distribute.get_strategy() and is_chief(strategy)
    assert (dtype_policy("auto", strategy), dtype_policy("off", strategy)) == ("float32", "float32")
    with pytest.raises(ValueError, match="--mixed-precision on needs a GPU or TPU; none is visible"):
        dtype_policy("on", strategy)


def test_multi_worker_strategy_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="--strategy multi_worker needs TF_CONFIG"):
        make_strategy("multi_worker")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """One 3-epoch toy run through the CLI, shared by the run-folder tests."""
    project = tmp_path_factory.mktemp("toy")
    keras.utils.set_random_seed(1234)
    assert main(ToyTask(), ["train", "--project", str(project), "--epochs", "3", "--warmup-epochs", "1"]) == 0
    return project / "exp"


def test_training_leaves_config_weights_logs_plots_and_metrics(toy_run):
    names = {p.relative_to(toy_run).as_posix() for p in toy_run.rglob("*") if p.is_file()}
    assert {
        "config.yaml",
        "results.csv",
        "results.png",
        "metrics.json",
        "weights/last.weights.npz",
        "weights/best.weights.npz",
        "weights/last.state.npz",
    } <= names
    assert not [n for n in names if n.split("/")[-1].startswith(".")]  # no temp files left
    assert (toy_run / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "epochs: 3\n" in (toy_run / "config.yaml").read_text()


def test_results_csv_has_one_row_per_epoch_with_the_scheduled_lr(toy_run):
    rows = read_csv(toy_run / "results.csv")
    assert list(rows[0]) == ["epoch", "lr", "accuracy", "loss", "val_accuracy", "val_loss", "val_samples"]
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    # 4 steps per epoch, warm-up of 4 steps then cosine over 8 to 1% of 0.05: lr of each epoch's last step.
    expected = WarmupDecay(0.05, total_steps=12, warmup_steps=4, decay="cosine", min_ratio=0.01)
    assert [float(r["lr"]) for r in rows] == pytest.approx([lr(expected, s) for s in (3, 7, 11)], rel=1e-6)


def test_tensorboard_events_hold_every_epoch_scalar(toy_run):
    (events,) = (toy_run / runs.TENSORBOARD).glob("events.out.tfevents.*")
    scalars = {}
    for event in tf.compat.v1.train.summary_iterator(str(events)):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    rows = read_csv(toy_run / "results.csv")
    assert scalars["val_loss"] == [(int(r["epoch"]), pytest.approx(float(r["val_loss"]))) for r in rows]
    assert set(scalars) == set(rows[0]) - {"epoch"}


def test_best_checkpoint_is_the_first_epoch_with_the_top_headline(toy_run):
    rows = read_csv(toy_run / "results.csv")
    accuracies = [float(r["val_accuracy"]) for r in rows]
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert metrics["best_epoch"] == accuracies.index(max(accuracies)) + 1
    assert metrics["headline"] == max(accuracies) and metrics["weights"] == "best" and metrics["epochs"] == 3


def test_eval_command_scores_the_best_weights_as_training_did(toy_run, capsys):
    capsys.readouterr()
    assert main(ToyTask(), ["eval", "--run", str(toy_run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"] == json.loads((toy_run / "metrics.json").read_text())["metrics"]
    assert printed.pop("written") == str(toy_run / "eval.json")
    assert printed.pop("plots") == {}  # the toy task draws none
    assert json.loads((toy_run / "eval.json").read_text()) == printed


class CurveToyTask(ToyTask):
    def evaluate(self, model, config):
        return {
            **super().evaluate(model, config),
            "curve": [0.5, 0.25],
            "per_class": {"a": 1.0, "recall": [1.0]},
            "pr_curve": {"iou": 0.5, "precision": {"a": [1.0, 0.0]}},
            "skipped": {},
        }


def test_eval_prints_the_metrics_without_curves_and_writes_them_whole(toy_run, capsys):
    capsys.readouterr()
    assert main(CurveToyTask(), ["eval", "--run", str(toy_run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((toy_run / "eval.json").read_text())
    assert written["metrics"]["curve"] == [0.5, 0.25] and written["metrics"]["per_class"] == {"a": 1.0, "recall": [1.0]}
    assert "curve" not in printed["metrics"] and printed["metrics"]["per_class"] == {"a": 1.0}
    assert printed["metrics"]["pr_curve"] == {"iou": 0.5} and printed["metrics"]["skipped"] == {}
    assert printed["metrics"]["accuracy"] == written["metrics"]["accuracy"]


class PlottingToyTask(ToyTask):
    """Plots one file holding the headline it was given, and records what each plots call saw; each
    evaluation scores lower than the one before (so a run's first evaluated epoch is its best)."""

    def __init__(self):
        super().__init__()
        self.evaluations, self.plotted = 0, []

    def evaluate(self, model, config):
        if isinstance(model, Path):  # eval --model FILE
            model = keras.saving.load_model(model)
        self.evaluations += 1
        return {**super().evaluate(model, config), "accuracy": 1 / self.evaluations}

    def plots(self, model, config, metrics, out_dir, suffix=""):
        path = out_dir / f"headline{suffix}.txt"
        path.write_text(str(metrics["accuracy"]))
        self.plotted.append({"out_dir": out_dir, "suffix": suffix, "model": model})
        return {"headline": path}


def test_eval_draws_the_tasks_plots_into_the_run_folder(toy_run, capsys):
    task = PlottingToyTask()
    capsys.readouterr()
    assert main(task, ["eval", "--run", str(toy_run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["plots"] == {"headline": str(toy_run / "headline.txt")}
    assert (toy_run / "headline.txt").read_text() == str(printed["metrics"]["accuracy"])
    assert task.plotted[0]["out_dir"] == toy_run and task.plotted[0]["suffix"] == ""


def test_eval_of_a_model_file_names_its_plots_after_the_file(toy_run, tmp_path, capsys):
    model_file = tmp_path / "toy.keras"
    runs.load_model(ToyTask(), ToyTask.presets["small"], runs.weights_path(toy_run, "best")).save(model_file)
    task = PlottingToyTask()
    capsys.readouterr()
    assert main(task, ["eval", "--run", str(toy_run), "--model", str(model_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["plots"] == {"headline": str(toy_run / "headline_toy.keras.txt")}
    assert task.plotted[0]["model"] == model_file


def test_training_ends_with_the_tasks_plots_of_the_best_weights(tmp_path, capsys):
    task = PlottingToyTask()
    capsys.readouterr()
    assert main(task, ["train", "--project", str(tmp_path), "--epochs", "2"]) == 0
    run = tmp_path / "exp"
    out = capsys.readouterr().out  # Keras's epoch lines, then the result
    assert json.loads(out[out.rindex('{\n  "run"') :])["plots"] == {"headline": str(run / "headline.txt")}
    assert task.evaluations == 2 and json.loads((run / "metrics.json").read_text())["best_epoch"] == 1
    (plotted,) = task.plotted
    assert plotted["out_dir"] == run and (run / "headline.txt").read_text() == "1.0"
    # the model drawn holds epoch 1's (best) weights, not the last epoch's it ended training with
    best, last = load_npz(runs.weights_path(run, "best")), load_npz(runs.weights_path(run, "last"))
    drawn = weights_by_path(plotted["model"])
    assert all(np.array_equal(drawn[name], best[name]) for name in best)
    assert not all(np.array_equal(drawn[name], last[name]) for name in last)


class UnstartableToyTask(ToyTask):
    def validate(self, config):
        raise AppError(f"data_seed {config.data.data_seed}: no such dataset")


def test_a_start_that_fails_validation_exits_2_and_leaves_no_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(UnstartableToyTask(), ["train", "--project", str(tmp_path), "--name", "quick"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "python -m apps.toy train: error: data_seed 7: no such dataset\n"
    assert list(tmp_path.iterdir()) == []


def test_training_a_finished_run_further_needs_more_epochs(toy_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(ToyTask(), ["train", "--resume", str(toy_run)])
    assert exit_.value.code == 2
    assert "already trained 3 of 3 epochs; raise --epochs to continue" in capsys.readouterr().err


class CountingToyTask(ToyTask):
    def __init__(self):
        super().__init__()
        self.evaluations = 0

    def evaluate(self, model, config):
        self.evaluations += 1
        return super().evaluate(model, config)


def test_the_final_report_reuses_the_best_epochs_evaluation_unless_it_came_before_a_resume(tmp_path):
    task = CountingToyTask()
    main(task, ["train", "--project", str(tmp_path), "--epochs", "2"])
    run = tmp_path / "exp"
    assert task.evaluations == 2  # epochs 1 and 2, none at the end
    rows = read_csv(run / "results.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] == float(rows[metrics["best_epoch"] - 1]["val_accuracy"])

    resumed = CountingToyTask()
    main(resumed, ["train", "--resume", str(run), "--epochs", "3"])
    best_epoch = json.loads((run / "metrics.json").read_text())["best_epoch"]
    assert resumed.evaluations == (1 if best_epoch == 3 else 2)  # epoch 3, then a best from before


class PoisonAt(keras.callbacks.Callback):
    """Sets the classifier kernel to NaN before (epoch, batch), both 1-based: the loss of that step is NaN."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch + 1) == self.at:
            kernel = self.model.get_layer("logits").kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


class DivergingToyTask(ToyTask):
    def callbacks(self, config, run_dir):
        return [PoisonAt(2, 2)]


def test_nan_loss_stops_the_run_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(DivergingToyTask(), ["train", "--project", str(tmp_path), "--epochs", "3"])
    run = tmp_path / "exp"
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m apps.toy train: error: {run}: loss became nan at epoch 2, step 2; training stopped, "
        f"last good checkpoint: {run}/weights/last.weights.npz (epoch 1)\n"
    )
    assert [r["epoch"] for r in read_csv(run / "results.csv")] == ["1"]
    assert all(np.isfinite(w).all() for w in load_npz(runs.weights_path(run, "last")).values())
    assert json.loads(str(load_npz(run / runs.STATE)["meta"]))["state"]["epoch"] == 1
    assert not (run / "metrics.json").exists()


@dataclasses.dataclass
class LineConfig:
    """y = w x with w starting at 1, fitted to y = 0 on x = 1 then x = 2 (batch 1, no shuffle)."""

    start: float = setting(1.0, "initial w")
    train: TrainConfig = setting(
        factory=lambda: TrainConfig(
            epochs=2,
            batch_size=1,
            optimizer="sgd",
            learning_rate=0.1,
            momentum=0.0,
            weight_decay=0.0,
            schedule="constant",
            warmup_epochs=0.0,
            ema=True,
            ema_decay=0.5,
            strategy="default",
            mixed_precision="off",
        )
    )


X = np.array([[1.0], [2.0]], np.float32)


class LineTask(Task):
    name = "line"
    presets = {"default": LineConfig()}
    headline_metric = "mse"
    headline_mode = "min"

    def build_model(self, config):
        inputs = keras.Input((1,), name="x")
        dense = keras.layers.Dense(
            1, use_bias=False, name="w", kernel_initializer=keras.initializers.Constant(config.start)
        )
        return keras.Model(inputs, dense(inputs), name="line")

    def datasets(self, config):
        data = tf.data.Dataset.from_tensor_slices((X, np.zeros_like(X))).batch(config.train.batch_size)
        return data, data

    def compile_args(self, config):
        return {"loss": "mse"}

    def evaluate(self, model, config):
        return {"mse": float(np.mean(np.asarray(model(X)) ** 2))}


def test_ema_weights_are_the_exponential_average_of_the_raw_weights(tmp_path):
    # SGD on (w x)^2: w <- w - 0.1 * 2 x^2 w. Keras's EMA starts at the first updated w, then
    # average <- 0.5 average + 0.5 w after each step.
    w, raw, averages = 1.0, [], []
    for step in range(4):
        x = X[step % 2, 0]
        w = w - 0.1 * 2 * x * x * w
        raw.append(w)
        averages.append(w if step == 0 else 0.5 * averages[-1] + 0.5 * w)
    assert raw == pytest.approx([0.8, 0.16, 0.128, 0.0256])
    assert averages == pytest.approx([0.8, 0.48, 0.304, 0.1648])

    main(LineTask(), ["train", "--project", str(tmp_path)])
    run = tmp_path / "exp"
    state = load_npz(run / runs.STATE)
    assert float(state["model/w/kernel"][0, 0]) == pytest.approx(raw[-1], rel=1e-6)
    for which in ("last", "best"):
        assert float(load_npz(runs.weights_path(run, which))["w/kernel"][0, 0]) == pytest.approx(averages[-1], rel=1e-6)
    rows = read_csv(run / "results.csv")
    # Validation and the evaluator see the EMA weights: mean((a x)^2) over x = 1, 2 is 2.5 a^2.
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(
        [2.5 * averages[1] ** 2, 2.5 * averages[3] ** 2], rel=1e-5
    )
    assert [float(r["val_mse"]) for r in rows] == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-5)
    assert json.loads((run / "metrics.json").read_text())["metrics"]["mse"] == pytest.approx(
        2.5 * averages[3] ** 2, rel=1e-5
    )


def test_a_tie_of_the_headline_metric_goes_to_the_epoch_of_lower_validation_loss(tmp_path):
    from vision_core.app.callbacks import Checkpointer, RunState

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    (tmp_path / runs.WEIGHTS).mkdir()
    state = RunState()
    checkpointer = Checkpointer(tmp_path, state, "val_auc", "max")
    checkpointer.set_model(model)
    epochs = [(0.9, 0.5), (1.0, 0.4), (1.0, 0.2), (1.0, 0.3), (0.99, 0.1)]  # (val_auc, val_loss)
    for epoch, (auc, loss) in enumerate(epochs):
        checkpointer.on_epoch_end(epoch, {"val_auc": auc, "val_loss": loss})
    assert (state.best, state.best_epoch, state.best_loss) == (1.0, 3, 0.2)
