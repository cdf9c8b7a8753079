"""How closely a converted model follows its float source, output by output."""

from __future__ import annotations

import numpy as np


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between ``a`` and ``b`` flattened (1.0 = same direction)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def output_agreement(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, float]:
    """Cosine similarity per output name; both dicts must hold the same names."""
    if set(reference) != set(candidate):
        raise ValueError(f"outputs differ: reference {sorted(reference)} vs candidate {sorted(candidate)}")
    return {name: cosine_similarity(reference[name], candidate[name]) for name in sorted(reference)}
