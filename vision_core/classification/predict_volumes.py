"""Classify NIfTI volumes (files, or folders searched recursively for ``.nii`` / ``.nii.gz``); one JSON of results.

Inputs are made exactly as evaluation makes them (:func:`~vision_core.data.classification.nifti.read_nifti`:
reoriented to RAS+, percentile-clipped to 0..255, resampled to ``volume_shape``, then ``(v - mean) / std``).
Into ``out_dir`` goes ``predictions.json`` in the image predictor's format
(:mod:`vision_core.classification.predict`), with each volume's file and no drawn copy::

    {"class_names": [...], "top_k": k, "results": [{"file", "top": [{"index", "label", "score"}, ...]}],
     "skipped": {path: reason}, "counts": {"images", "skipped"}}

A file that cannot be read is logged with its name and reason, counted, and skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vision_core.classification.predict import RESULTS_FILE, to_class_probabilities, to_probabilities
from vision_core.data.classification.nifti import normalised_volume
from vision_core.data.classification.types import is_nifti
from vision_core.logs import get_logger
from vision_core.storage.atomic import write_atomic

log = get_logger()


def collect_volumes(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[Path], dict[str, str]]:
    """``(NIfTI files, {path: reason} of unusable sources)``: files as given, folders searched recursively."""
    files, skipped = [], {}
    for source in [sources] if isinstance(sources, (str, os.PathLike)) else sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if is_nifti(p) and p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif not path.exists():
            skipped[str(path)] = "no such file or folder"
        elif not is_nifti(path):
            skipped[str(path)] = "not a NIfTI volume (.nii, .nii.gz)"
        else:
            files.append(path)
    return files, skipped


def predict_volumes(
    runner,
    sources,
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    volume_shape: Sequence[int],
    mean: float = 127.5,
    std: float = 127.5,
    top_k: int = 3,
    *,
    multi_label: bool = False,
    threshold: float = 0.5,
    progress: bool = True,
) -> dict:
    """Classify the volumes of ``sources`` with ``runner`` (normalised volumes float32 ``[N, H, W, D]`` -> scores
    ``[N, K]``) and write ``out_dir/predictions.json``; returns ``{"images": classified, "skipped": ...}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_volumes(sources)
    results = []
    for path in tqdm(files, desc="predict", unit="volume", disable=not progress):
        try:
            volume = normalised_volume(path, volume_shape, mean, std)
        except OSError as error:
            skipped[str(path)] = str(error)
            log.warning("skipping %s", error)
            continue
        scores = runner(volume[None])
        row = (to_class_probabilities(scores) if multi_label else to_probabilities(scores))[0]
        if len(row) != len(class_names):
            raise ValueError(f"the model scores {len(row)} classes, class_names has {len(class_names)}")
        order = np.argsort(-row)[:top_k]
        result = {
            "file": str(path),
            "top": [{"index": int(i), "label": class_names[i], "score": float(row[i])} for i in order],
        }
        if multi_label:
            result["positive"] = [name for name, p in zip(class_names, row) if p >= threshold]
        results.append(result)
    counts = {"images": len(results), "skipped": len(skipped)}
    content = {"class_names": list(class_names), "top_k": top_k, "results": results, "skipped": skipped}
    write_atomic(out_dir / RESULTS_FILE, json.dumps({**content, "counts": counts}, indent=1).encode())
    return counts
