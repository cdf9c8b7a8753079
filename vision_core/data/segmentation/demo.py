"""The built-in segmentation demo: generated shape scenes as image/mask PNG pairs on disk.

:func:`write_segment_shapes` writes scenes of :func:`vision_core.data.synthetic.segmentation_scene`
(1-4 shapes of the classes circle, square, triangle, cross on textured backgrounds) in the
``images/`` + ``masks/`` layout :func:`~vision_core.data.segmentation.readers.load_segmentation_dataset`
reads, with ``classes.yaml`` naming the classes: 0 background, 1.. the shapes. Masks are 8-bit
grey PNGs of the class indices; images lossless PNGs, so reading them back gives the generated pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from vision_core.data.generated import generated_dataset
from vision_core.data.segmentation.readers import CLASSES_FILE
from vision_core.data.synthetic import SHAPE_CLASSES, segmentation_scene

GENERATOR_VERSION = 1
DEMO_CLASSES = ("background", *SHAPE_CLASSES)
DEMO_COLORS = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200))
MAX_OBJECTS = 4


def write_segment_shapes(
    root: str | os.PathLike,
    train: int = 2000,
    val: int = 200,
    size: int = 128,
    train_seed: int = 21,
    val_seed: int = 97,
    *,
    progress: bool = True,
) -> Path:
    """Write the demo dataset to ``root`` and return ``root`` (absolute).

    Layout: ``root/dataset.json`` (these settings), ``root/classes.yaml`` and
    ``root/{train,val}/{images,masks}/<index:05d>.png``; split ``s`` holds ``<s>`` scenes drawn from
    ``numpy.random.default_rng(<s>_seed)``, each with 1..4 shapes. Written beside ``root`` and renamed
    into place; a ``root`` holding the same settings is reused, anything else there is an error.
    """
    root = Path(os.path.abspath(root))
    settings = {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "size": size,
        "classes": list(DEMO_CLASSES),
        "splits": {"train": {"images": train, "seed": train_seed}, "val": {"images": val, "seed": val_seed}},
    }

    def write(staging: Path) -> None:
        for split, spec in settings["splits"].items():
            _write_split(staging / split, spec["images"], size, spec["seed"], progress)
        classes = {"names": list(DEMO_CLASSES), "colors": [list(c) for c in DEMO_COLORS]}
        (staging / CLASSES_FILE).write_text(yaml.safe_dump(classes, sort_keys=False, default_flow_style=None))

    return generated_dataset(root, settings, write, "segmentation demo")


def _write_split(folder: Path, count: int, size: int, seed: int, progress: bool) -> None:
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index in tqdm(range(count), desc=f"write segment demo {folder.name}", unit="image", disable=not progress):
        image, mask = segmentation_scene(rng, size, int(rng.integers(1, MAX_OBJECTS + 1)))
        for path, pixels in (
            (folder / "images" / f"{index:05d}.png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR)),
            (folder / "masks" / f"{index:05d}.png", mask),
        ):
            ok, encoded = cv2.imencode(".png", pixels)
            if not ok:
                raise ValueError("OpenCV cannot encode PNG images")
            encoded.tofile(path)
