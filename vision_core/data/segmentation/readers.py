"""Read a semantic-segmentation split: image/mask folders, Pascal VOC or Cityscapes, told apart by layout.

:func:`load_segmentation_dataset` reads a VOC folder (``SegmentationClass/`` and
``ImageSets/Segmentation/``, :mod:`~vision_core.data.segmentation.voc`), a Cityscapes folder
(``leftImg8bit/`` and ``gtFine/``, :mod:`~vision_core.data.segmentation.cityscapes`), or else the
``images/`` + ``masks/`` layout::

    data/<split>/images/<stem>.<png|jpg|...>      data/<split>/masks/<stem>.png
    data/images/...  data/masks/...                (no split folders: that folder is every split)

An image and a mask pair up by file stem. An image without a mask (``missing_mask``) or a
mask without an image (``missing_image``) is recorded on the dataset's ``issues`` and left out
of its pairs; ``data check`` reports them, training uses the pairs. A symlink that leads out of
the dataset root is ``path_escape``.

Class names come from ``class_names`` when given, else from ``data/classes.yaml``
(``names: [...]`` and optionally ``colors: [[r, g, b], ...]``); mask value ``i`` is class ``i``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from vision_core.data.classification.types import IMAGE_SUFFIXES
from vision_core.data.detection.types import inside_root
from vision_core.data.segmentation.cityscapes import is_cityscapes, load_cityscapes
from vision_core.data.segmentation.types import IGNORE_INDEX, SegmentationDataset, SegmentationIssue
from vision_core.data.segmentation.voc import is_voc, load_voc_segmentation

CLASSES_FILE = "classes.yaml"
MASK_SUFFIX = ".png"


def load_segmentation_dataset(
    data: str | os.PathLike,
    split: str = "train",
    class_names: Sequence[str] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> SegmentationDataset:
    """The ``split`` of the dataset at ``data`` (layouts in the module docstring)."""
    root = Path(os.path.abspath(data))
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    if is_voc(root):
        return load_voc_segmentation(root, split, class_names, ignore_index)
    if is_cityscapes(root):
        return load_cityscapes(root, split, class_names, ignore_index)
    folder = root / split if (root / split / "images").is_dir() else root
    if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise FileNotFoundError(
            f"{root}: expected {split}/images and {split}/masks (or images and masks) folders of the same stems"
        )
    names, colors = _classes(root, class_names)
    images = _files(folder / "images", IMAGE_SUFFIXES)
    masks = _files(folder / "masks", (MASK_SUFFIX,))
    issues = []
    image_paths, mask_paths = [], []
    for stem, image in images.items():
        mask = masks.get(stem)
        if mask is None:
            issues.append(SegmentationIssue("missing_mask", str(image), f"no masks/{stem}{MASK_SUFFIX}"))
            continue
        escaped = [p for p in (image, mask) if not inside_root(Path(os.path.realpath(p)), Path(os.path.realpath(root)))]
        if escaped:
            issues += [
                SegmentationIssue("path_escape", str(p), f"leads out of the dataset root {root}") for p in escaped
            ]
            continue
        image_paths.append(image)
        mask_paths.append(mask)
    issues += [
        SegmentationIssue("missing_image", str(mask), f"no image named {stem}.* in {folder / 'images'}")
        for stem, mask in masks.items()
        if stem not in images
    ]
    return SegmentationDataset(
        source=str(folder),
        split=split,
        class_names=names,
        image_paths=image_paths,
        mask_paths=mask_paths,
        ignore_index=ignore_index,
        colors=colors,
        issues=issues,
    )


def _files(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """``{stem: path}`` of the files in ``folder`` with one of ``suffixes``, sorted by name."""
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    }


def _classes(root: Path, class_names: Sequence[str] | None) -> tuple[tuple[str, ...], tuple]:
    """``(names, colours)`` from the argument or ``root/classes.yaml``."""
    path = root / CLASSES_FILE
    content = {}
    if path.is_file():
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(content, dict) or not isinstance(content.get("names"), list):
            raise ValueError(f"{path}: expected a mapping with a list of class names under 'names'")
    if class_names:
        names = tuple(class_names)
    elif content:
        names = tuple(str(n) for n in content["names"])
    else:
        raise ValueError(f"{root}: no class names: list them in {path} (names: [...]) or give --class-names")
    colors = (
        tuple(tuple(c) for c in content.get("colors") or ()) if len(content.get("names") or ()) == len(names) else ()
    )
    return names, colors
