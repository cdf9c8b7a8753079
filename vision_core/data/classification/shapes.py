"""The built-in shapes as an image-folder dataset on disk: ``root/<split>/<class>/<index>.png``.

:func:`write_shapes_dataset` writes :func:`vision_core.data.synthetic.classification_set` as
PNG files (lossless, so reading them back gives exactly the in-memory pixels) in the class
folder layout :func:`~vision_core.data.classification.readers.load_classification_dataset`
reads. The file name is the image's index in its split's ``classification_set`` (``00042.png``),
so sorting by class folder then file name keeps the generator's order within each class.
The defaults are what the backbone benchmark trains and scores on
(:mod:`vision_core.backbones.int8_check`: 400 held-out images of seed 99).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
from tqdm import tqdm

from vision_core.data.generated import generated_dataset
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set

GENERATOR_VERSION = 1


def write_shapes_dataset(
    root: str | os.PathLike,
    train: int = 8000,
    val: int = 400,
    size: int = 64,
    train_seed: int = 11,
    val_seed: int = 99,
    *,
    progress: bool = True,
) -> Path:
    """Write the shapes dataset to ``root`` and return ``root`` (absolute).

    Layout: ``root/dataset.json`` (the settings below) and ``root/{train,val}/<class>/<index:05d>.png``,
    RGB uint8 ``size x size`` images, classes :data:`~vision_core.data.synthetic.SHAPE_CLASSES`.
    Split ``s`` holds ``classification_set(count, size, seed=<s>_seed)``. The folder is written
    beside ``root`` and renamed into place, so a crash never leaves half a dataset. A ``root``
    that already holds the dataset of the same settings is reused untouched; one holding
    anything else (other settings, other files) is an error naming it.
    """
    root = Path(os.path.abspath(root))
    settings = {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "size": size,
        "classes": list(SHAPE_CLASSES),
        "splits": {"train": {"images": train, "seed": train_seed}, "val": {"images": val, "seed": val_seed}},
    }

    def write(staging: Path) -> None:
        for split, spec in settings["splits"].items():
            _write_split(staging / split, spec["images"], size, spec["seed"], progress)

    return generated_dataset(root, settings, write, "shapes dataset")


def _write_split(folder: Path, count: int, size: int, seed: int, progress: bool) -> None:
    images, labels = classification_set(count, size, seed=seed)
    for name in SHAPE_CLASSES:
        (folder / name).mkdir(parents=True)
    for index in tqdm(range(count), desc=f"write shapes {folder.name}", unit="image", disable=not progress):
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(images[index], cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError("OpenCV cannot encode PNG images")
        encoded.tofile(folder / SHAPE_CLASSES[labels[index]] / f"{index:05d}.png")
