"""Read an image-classification split from class folders or a CSV file.

:func:`load_classification_dataset` picks the layout from ``data``:

* a folder with ``<split>/<class>/<image>`` (Ultralytics' classify layout): the classes of
  ``data/<split>``; a missing split folder is an error naming it;
* a folder of class folders only (``<class>/<image>``, no split folders): that folder is the
  split itself, whatever ``split`` is asked for;
* a ``.csv`` file with a header and the columns ``path,label`` (``label`` a class name, ``path``
  relative to the CSV's folder or absolute inside it); an optional ``split`` column keeps the
  rows of ``split``, otherwise the whole file is the split.

Images are the files directly inside a class folder whose suffix is in :data:`IMAGE_SUFFIXES`
(any case; hidden files and other files are ignored). Order: folders give paths sorted by class
folder name, then file name; a CSV keeps its row order. Class names are ``class_names`` when
given, else the sorted class folder names of the split, or the sorted labels of *all* rows of
the CSV (so every split of one CSV numbers classes alike). For folders, load the val split with
``class_names=train.class_names`` so a class missing from val keeps its index.

Errors name the file (and the CSV line) and the problem: ``FileNotFoundError`` for a missing
file or folder, ``ValueError`` for the rest (an unknown label, a path escaping the dataset root,
a missing column, no images).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vision_core.data.classification.types import IMAGE_SUFFIXES, ClassificationDataset
from vision_core.data.detection.types import resolve_image_path

CSV_COLUMNS = ("path", "label")


def load_classification_dataset(
    data: str | os.PathLike, split: str = "train", class_names: Sequence[str] | None = None
) -> ClassificationDataset:
    """The ``split`` of the dataset at ``data`` (a folder or a ``.csv`` file; layouts in the module docstring).

    Returns a :class:`ClassificationDataset` with absolute paths and int64 labels [N] indexing
    its ``class_names``.
    """
    data = Path(os.path.abspath(data))
    if data.suffix.lower() == ".csv":
        return _read_csv(data, split, class_names)
    if data.is_dir():
        return _read_folders(data, split, class_names)
    if data.exists():
        raise ValueError(f"{data}: not a dataset: expected a folder of class folders or a .csv file")
    raise FileNotFoundError(f"{data}: no such dataset folder or CSV file")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _split_folder(root: Path, split: str) -> Path:
    """``root/split`` when it exists, ``root`` when it holds class folders of images, else an error."""
    folder = root / split
    if folder.is_dir():
        return folder
    if any(_images(child) for child in _subfolders(root)):
        return root
    found = ", ".join(p.name for p in _subfolders(root)) or "none"
    raise FileNotFoundError(
        f"{folder}: no {split!r} split folder in {root} (its folders: {found}), and it holds no class folders of images"
    )


def _read_folders(root: Path, split: str, class_names: Sequence[str] | None) -> ClassificationDataset:
    folder = _split_folder(root, split)
    classes = _subfolders(folder)
    names = tuple(class_names) if class_names is not None else tuple(p.name for p in classes)
    index = {name: i for i, name in enumerate(names)}
    paths, labels = [], []
    for class_folder in classes:
        if class_folder.name not in index:
            raise ValueError(
                f"{class_folder}: class folder {class_folder.name!r} is not one of the {len(names)} given class names"
            )
        images = _images(class_folder)
        paths += images
        labels += [index[class_folder.name]] * len(images)
    if not paths:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in class folders")
    return ClassificationDataset(
        source=str(folder), split=split, class_names=names, paths=paths, labels=np.array(labels, np.int64)
    )


def _read_csv(path: Path, split: str, class_names: Sequence[str] | None) -> ClassificationDataset:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CSV file")
    root = path.parent
    rows = []  # (line, path, label, split) of every row, checked before the split is selected
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: header {columns or '(empty file)'} lacks the column(s) {missing}; "
                f"expected a header with {', '.join(CSV_COLUMNS)} (and optionally split)"
            )
        reader.fieldnames = columns
        for row in reader:
            line = reader.line_num
            name, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            if not name or not label:
                raise ValueError(f"{path}: line {line}: empty {'path' if not name else 'label'}")
            image = resolve_image_path(name, root, root)
            if image is None:
                raise ValueError(f"{path}: line {line}: image path {name!r} escapes the dataset root {root}")
            rows.append((line, image, label, (row.get("split") or "").strip()))
    names = tuple(class_names) if class_names is not None else tuple(sorted({label for _, _, label, _ in rows}))
    index = {name: i for i, name in enumerate(names)}
    for line, _, label, _ in rows:
        if label not in index:
            raise ValueError(f"{path}: line {line}: label {label!r} is not one of the class names {list(names)}")
    if "split" in columns:
        present = sorted({row_split for *_, row_split in rows})
        rows = [row for row in rows if row[3] == split]
        if not rows:
            raise ValueError(f"{path}: no rows of split {split!r} (its split column holds {present})")
    if not rows:
        raise ValueError(f"{path}: no rows below the header")
    return ClassificationDataset(
        source=str(path),
        split=split,
        class_names=names,
        paths=[image for _, image, _, _ in rows],
        labels=np.array([index[label] for _, _, label, _ in rows], np.int64),
    )
