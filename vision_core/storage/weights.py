"""Weights keyed by variable path, so they move between the two Keras flavours.

``get_weights()`` order differs between Keras 3 and tf_keras for nested layers, so the
suite never relies on it. A variable's path is the chain of layer names that own it
plus its short name, e.g. ``stage2_block1/conv1/kernel``; it is the same in both
flavours when every layer and sublayer has an explicit name.

Weights travel between processes as ``.npz`` files mapping path -> array.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from vision_core.backend import is_keras3
from vision_core.storage.atomic import write_atomic

# tf_keras names some weights differently from Keras 3; paths use the Keras 3 names.
_TF_KERAS_RENAMES = {("DepthwiseConv2D", "depthwise_kernel"): "kernel"}


def _short_name(layer, variable) -> str:
    short = variable.name.split("/")[-1].split(":")[0]
    return _TF_KERAS_RENAMES.get((type(layer).__name__, short), short)


def _own_variables(layer) -> list:
    seen = {id(v) for sub in layer._flatten_layers(include_self=False) for v in sub.weights}
    return [v for v in layer.weights if id(v) not in seen]


def _walk(layer, prefix: str, out: dict) -> None:
    for variable in _own_variables(layer):
        out.setdefault(f"{prefix}{_short_name(layer, variable)}", variable)
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        _walk(sub, f"{prefix}{sub.name}/", out)


def variables_by_path(model) -> dict:
    """``{path: variable}`` for every weight of ``model`` (the model's own name excluded)."""
    if is_keras3():
        return {v.path: v for v in model.weights}
    out: dict = {}
    for layer in model._flatten_layers(include_self=False, recursive=False):
        _walk(layer, f"{layer.name}/", out)
    return out


def weights_by_path(model) -> dict[str, np.ndarray]:
    return {path: np.asarray(v.numpy()) for path, v in variables_by_path(model).items()}


def assign_by_path(model, weights: dict[str, np.ndarray], strict: bool = True) -> list[str]:
    """Copy ``weights`` into ``model`` by path; returns the model paths left untouched.

    With ``strict``, a missing or extra path or a shape mismatch raises ``ValueError``
    naming every offending path.
    """
    targets = variables_by_path(model)
    missing = sorted(set(targets) - set(weights))
    unexpected = sorted(set(weights) - set(targets))
    mismatched = sorted(
        f"{p}: model {tuple(targets[p].shape)} vs weights {tuple(np.shape(weights[p]))}"
        for p in set(targets) & set(weights)
        if tuple(targets[p].shape) != tuple(np.shape(weights[p]))
    )
    if mismatched or (strict and (missing or unexpected)):
        problems = []
        if missing:
            problems.append(f"missing in weights: {', '.join(missing[:20])}")
        if unexpected:
            problems.append(f"not in model: {', '.join(unexpected[:20])}")
        if mismatched:
            problems.append(f"shape mismatch: {'; '.join(mismatched[:20])}")
        raise ValueError(f"cannot copy weights into {model.name!r}: " + " | ".join(problems))
    for path in set(targets) & set(weights):
        targets[path].assign(np.asarray(weights[path]))
    return missing


def save_npz(weights: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write ``weights`` atomically (temp file in the same folder, then rename)."""
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    return write_atomic(path, buffer.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def copy_weights(source, target, strict: bool = True) -> list[str]:
    """Copy weights from ``source`` to ``target`` by variable path (same flavour)."""
    return assign_by_path(target, weights_by_path(source), strict=strict)
