"""Read an image-classification split from class folders or a CSV file.

:func:`load_classification_dataset` picks the layout from ``data``:

* a folder with ``<split>/<class>/<image>`` (Ultralytics' classify layout): the classes of
  ``data/<split>``; a missing split folder is an error naming it;
* a folder of class folders only (``<class>/<image>``, no split folders): that folder is the
  split itself, whatever ``split`` is asked for;
* a ``.csv`` file with a header and the columns ``path,label`` (``label`` a class name, ``path``
  relative to the CSV's folder or absolute inside it), or ``path,labels`` for a multi-label
  dataset (``labels``: class names joined by ``|``, empty for none; labels become multi-hot rows).
  An optional ``split`` column keeps the rows of ``split``. An optional ``patient_id`` column
  names each image's patient; without a ``split`` column the patients are then split
  (:func:`split_patients`: a seeded ``val_fraction`` of them is ``val``, the rest ``train``), so
  no patient is in two splits. Without either column the whole file is the split.

Images are the files directly inside a class folder whose suffix is in :data:`READABLE_SUFFIXES`
(images and DICOM files, any case; hidden files and other files are ignored), or in ``suffixes`` when given
(:data:`NIFTI_SUFFIXES` for a volume dataset). Order: folders give paths sorted by class
folder name, then file name; a CSV keeps its row order. Class names are ``class_names`` when
given, else the sorted class folder names of the split, or the sorted labels of *all* rows of
the CSV (so every split of one CSV numbers classes alike). For folders, load the val split with
``class_names=train.class_names`` so a class missing from val keeps its index.

Errors name the file (and the CSV line) and the problem: ``FileNotFoundError`` for a missing
file or folder, ``ValueError`` for the rest (labels outside the class names, every such line
listed; a path escaping the dataset root; a missing column; no images).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vision_core.data.classification.types import READABLE_SUFFIXES, ClassificationDataset
from vision_core.data.detection.types import resolve_image_path

LABEL_COLUMNS = ("label", "labels")  # one class name, or class names joined by LABEL_SEPARATOR (multi-label)
LABEL_SEPARATOR = "|"
PATIENT_COLUMN = "patient_id"
PATIENT_SPLITS = ("train", "val")
MAX_LISTED_LINES = 20  # lines with a label outside the class names named in the error


def split_patients(patient_ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """The patients of the ``val`` split: ``round(val_fraction * P)`` of the P distinct ids (at least one, and
    one fewer than P at most), drawn by a seeded permutation of the sorted ids; the same ids and seed always
    give the same set, whatever the row order."""
    patients = sorted(set(patient_ids))
    if len(patients) < 2:
        raise ValueError(f"{len(patients)} patient(s): a patient split needs at least 2")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction {val_fraction}: must be between 0 and 1")
    count = min(max(1, round(val_fraction * len(patients))), len(patients) - 1)
    order = np.random.default_rng(seed).permutation(len(patients))
    return {patients[i] for i in order[:count]}


def load_classification_dataset(
    data: str | os.PathLike,
    split: str = "train",
    class_names: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    suffixes: Sequence[str] = READABLE_SUFFIXES,
) -> ClassificationDataset:
    """The ``split`` of the dataset at ``data`` (a folder or a ``.csv`` file; layouts in the module docstring).

    ``val_fraction`` and ``split_seed`` set the patient split of a CSV with a ``patient_id`` column and no
    ``split`` column (:func:`split_patients`); ``suffixes`` are the files class folders list (a CSV lists any).
    Returns a :class:`ClassificationDataset` with absolute paths
    and int64 labels ([N], or multi-hot [N, K]) indexing its ``class_names``.
    """
    data = Path(os.path.abspath(data))
    if data.suffix.lower() == ".csv":
        return _read_csv(data, split, class_names, val_fraction, split_seed)
    if data.is_dir():
        return _read_folders(data, split, class_names, tuple(suffixes))
    if data.exists():
        raise ValueError(f"{data}: not a dataset: expected a folder of class folders or a .csv file")
    raise FileNotFoundError(f"{data}: no such dataset folder or CSV file")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path, suffixes: tuple[str, ...] = READABLE_SUFFIXES) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.name.lower().endswith(suffixes) and not p.name.startswith(".") and p.is_file()
    )


def _split_folder(root: Path, split: str, suffixes: tuple[str, ...]) -> Path:
    """``root/split`` when it exists, ``root`` when it holds class folders of images, else an error."""
    folder = root / split
    if folder.is_dir():
        return folder
    if any(_images(child, suffixes) for child in _subfolders(root)):
        return root
    found = ", ".join(p.name for p in _subfolders(root)) or "none"
    raise FileNotFoundError(
        f"{folder}: no {split!r} split folder in {root} (its folders: {found}), and it holds no class folders of images"
    )


def _read_folders(
    root: Path, split: str, class_names: Sequence[str] | None, suffixes: tuple[str, ...]
) -> ClassificationDataset:
    folder = _split_folder(root, split, suffixes)
    classes = _subfolders(folder)
    names = tuple(class_names) if class_names is not None else tuple(p.name for p in classes)
    index = {name: i for i, name in enumerate(names)}
    paths, labels = [], []
    unknown = [class_folder for class_folder in classes if class_folder.name not in index]
    if len(unknown) == 1:
        raise ValueError(
            f"{unknown[0]}: class folder {unknown[0].name!r} is not one of the {len(names)} given class names"
        )
    if unknown:
        raise ValueError(
            f"{folder}: class folders {[f.name for f in unknown]} are not among the {len(names)} given class names"
        )
    for class_folder in classes:
        images = _images(class_folder, suffixes)
        paths += images
        labels += [index[class_folder.name]] * len(images)
    if not paths:
        raise ValueError(f"{folder}: no images ({', '.join(suffixes)}) in class folders")
    return ClassificationDataset(
        source=str(folder), split=split, class_names=names, paths=paths, labels=np.array(labels, np.int64)
    )


def _read_csv(
    path: Path, split: str, class_names: Sequence[str] | None, val_fraction: float, split_seed: int
) -> ClassificationDataset:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CSV file")
    root = path.parent
    rows = []  # (line, path, labels, split, patient) of every row, checked before the split is selected
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        label_column = next((c for c in LABEL_COLUMNS if c in columns), None)
        missing = ([] if "path" in columns else ["path"]) + ([] if label_column else ["label"])
        if missing:
            raise ValueError(
                f"{path}: header {columns or '(empty file)'} lacks the column(s) {missing}; expected a header with "
                f"path and label (or labels, multi-label: names joined by {LABEL_SEPARATOR!r}), and optionally split "
                f"and {PATIENT_COLUMN}"
            )
        multi_label = label_column == "labels"
        reader.fieldnames = columns
        for row in reader:
            line = reader.line_num
            name, label = (row.get("path") or "").strip(), (row.get(label_column) or "").strip()
            if not name or (not label and not multi_label):
                raise ValueError(f"{path}: line {line}: empty {'path' if not name else 'label'}")
            image = resolve_image_path(name, root, root)
            if image is None:
                raise ValueError(f"{path}: line {line}: image path {name!r} escapes the dataset root {root}")
            labels = (
                tuple(part.strip() for part in label.split(LABEL_SEPARATOR) if part.strip())
                if multi_label
                else (label,)
            )
            patient = (row.get(PATIENT_COLUMN) or "").strip()
            if PATIENT_COLUMN in columns and not patient:
                raise ValueError(f"{path}: line {line}: empty {PATIENT_COLUMN}")
            rows.append((line, image, labels, (row.get("split") or "").strip(), patient))
    if not rows:
        raise ValueError(f"{path}: no rows below the header")
    names = (
        tuple(class_names)
        if class_names is not None
        else tuple(sorted({label for _, _, labels, _, _ in rows for label in labels}))
    )
    index = {name: i for i, name in enumerate(names)}
    outside = [(line, label) for line, _, labels, _, _ in rows for label in labels if label not in index]
    if outside:
        listed = "; ".join(f"line {line}: {label!r}" for line, label in outside[:MAX_LISTED_LINES])
        more = f" and {len(outside) - MAX_LISTED_LINES} more" if len(outside) > MAX_LISTED_LINES else ""
        raise ValueError(f"{path}: {len(outside)} label(s) outside the class names {list(names)}: {listed}{more}")
    if "split" in columns:
        present = sorted({row[3] for row in rows})
        rows = [row for row in rows if row[3] == split]
        if not rows:
            raise ValueError(f"{path}: no rows of split {split!r} (its split column holds {present})")
    elif PATIENT_COLUMN in columns:
        if split not in PATIENT_SPLITS:
            raise ValueError(
                f"{path}: split {split!r}: without a split column the patients are split into "
                f"{' and '.join(PATIENT_SPLITS)} only"
            )
        try:
            val_patients = split_patients([row[4] for row in rows], val_fraction, split_seed)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        rows = [row for row in rows if (row[4] in val_patients) == (split == "val")]
    if multi_label:
        labels = np.zeros((len(rows), len(names)), np.int64)
        for i, (_, _, row_labels, _, _) in enumerate(rows):
            labels[i, [index[label] for label in row_labels]] = 1
    else:
        labels = np.array([index[row_labels[0]] for _, _, row_labels, _, _ in rows], np.int64)
    return ClassificationDataset(
        source=str(path),
        split=split,
        class_names=names,
        paths=[row[1] for row in rows],
        labels=labels,
        patient_ids=[row[4] for row in rows] if PATIENT_COLUMN in columns else None,
    )
