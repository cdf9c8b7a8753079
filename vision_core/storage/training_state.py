"""A model's whole training state in one atomic ``.npz``, so a killed ``fit`` resumes where it stopped.

The file holds the raw model variables (seed generators included), the optimizer variables
(its step positions the learning-rate schedule), the Python and NumPy RNG states and a JSON
``meta`` dict chosen by the caller (completed epochs, best metric, ...). Used by the app
trainer's checkpoints and by the backbone shapes recipe.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np

from vision_core.storage.weights import load_npz, save_npz


def save_training_state(path: str | os.PathLike, model, meta: dict) -> Path:
    """Write ``model``'s variables, its optimizer's variables, the RNG states and ``meta`` atomically."""
    arrays = {f"model/{v.path}": v.numpy() for v in model.variables}
    arrays.update({f"optimizer/{i:05d}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
    numpy_state = np.random.get_state()
    arrays["rng/numpy_keys"] = numpy_state[1]
    arrays["meta"] = np.array(
        json.dumps({"state": meta, "python_rng": random.getstate(), "numpy_rng": [numpy_state[0], *numpy_state[2:]]})
    )
    return save_npz(arrays, path)


def load_training_state(path: str | os.PathLike, model) -> dict:
    """Load a :func:`save_training_state` file into ``model`` (its optimizer must be built); returns ``meta``.

    Raises ``ValueError`` naming ``path`` when its variables do not match ``model``'s.
    """
    arrays = load_npz(path)
    variables = {f"model/{v.path}": v for v in model.variables}
    optimizer_variables = model.optimizer.variables
    saved_optimizer = sorted(k for k in arrays if k.startswith("optimizer/"))
    if set(variables) != {k for k in arrays if k.startswith("model/")} or len(saved_optimizer) != len(
        optimizer_variables
    ):
        raise ValueError(f"{path}: the saved model/optimizer variables do not match this model")
    for key, variable in variables.items():
        variable.assign(arrays[key])
    for key, variable in zip(saved_optimizer, optimizer_variables):
        variable.assign(arrays[key])
    saved = json.loads(str(arrays["meta"]))
    random.setstate((saved["python_rng"][0], tuple(saved["python_rng"][1]), saved["python_rng"][2]))
    kind, *rest = saved["numpy_rng"]
    np.random.set_state((kind, arrays["rng/numpy_keys"], *rest))
    return saved["state"]
