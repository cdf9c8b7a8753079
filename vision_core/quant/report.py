"""One evaluator for every form of a model, and the table of what quantization cost.

A *form* is one way the model runs — the float Keras model, the QAT Keras model, each
TFLite or ONNX file — represented by the outputs it produced (``{output name: array}``,
batch first) on the same evaluation images. The task's evaluator turns outputs into
metrics (``{metric: float}``, higher is better), so "int8 costs X points" is measured
by the same code for every form::

    rows = compare(evaluate, {"float": f, "qat": q, "int8_qat.tflite": t}, reference="float",
                   agreement=top1_agreement)
    print(format_table(rows))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Outputs = Mapping[str, np.ndarray]


def _scores(outputs: Outputs, output: str | None) -> np.ndarray:
    """``outputs[output]``, or the only output when ``output`` is None (Keras logits and the
    exported probabilities have different names but the same arg-max)."""
    if output is None:
        if len(outputs) != 1:
            raise ValueError(f"name the class-score output among {sorted(outputs)}")
        return np.asarray(next(iter(outputs.values())))
    return np.asarray(outputs[output])


def classification_evaluator(labels: np.ndarray, output: str | None = None) -> Callable[[Outputs], dict]:
    """Top-1 accuracy of the class scores (logits or probabilities, ``[N, classes]``) against ``labels``."""
    labels = np.asarray(labels)

    def evaluate(outputs: Outputs) -> dict[str, float]:
        scores = _scores(outputs, output)
        if scores.shape[0] != labels.shape[0]:
            raise ValueError(f"{output!r} has {scores.shape[0]} rows for {labels.shape[0]} labels")
        return {"accuracy": float(np.mean(scores.argmax(-1) == labels))}

    return evaluate


def top1_agreement(reference: Outputs, candidate: Outputs, output: str | None = None) -> float:
    """Fraction of rows whose arg-max class is the same in both forms."""
    return float(np.mean(_scores(reference, output).argmax(-1) == _scores(candidate, output).argmax(-1)))


def logit_rms_error(reference: Outputs, candidate: Outputs, output: str | None = None) -> float:
    """Root-mean-square difference of the two forms' class scores: how far the candidate's graph
    departs, where agreement only counts the rows whose arg-max flipped."""
    return float(np.sqrt(np.mean(np.square(_scores(candidate, output) - _scores(reference, output)))))


def compare(
    evaluate: Callable[[Outputs], dict],
    forms: Mapping[str, Outputs],
    reference: str,
    agreement: Callable[[Outputs, Outputs], float] | None = None,
) -> list[dict]:
    """One row per form: its metrics, each metric's delta to ``reference``, and its agreement with it.

    Rows keep the order of ``forms``; keys are ``form``, ``<metric>``, ``<metric>_delta``
    and, when ``agreement`` is given, ``agreement``.
    """
    if reference not in forms:
        raise KeyError(f"reference form {reference!r} is not among {list(forms)}")
    metrics = {name: evaluate(outputs) for name, outputs in forms.items()}
    rows = []
    for name, values in metrics.items():
        row: dict = {"form": name}
        for metric, value in values.items():
            row[metric] = value
            row[f"{metric}_delta"] = value - metrics[reference][metric]
        if agreement is not None:
            row["agreement"] = agreement(forms[reference], forms[name])
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of :func:`compare` rows (metrics and agreement in percent)."""
    columns = list(rows[0])
    cells = [[row["form"]] + [_percent(row[c], signed=c.endswith("_delta")) for c in columns[1:]] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _percent(value: float, signed: bool) -> str:
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"
