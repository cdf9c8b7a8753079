"""The record every classification reader returns and every later stage consumes.

A :class:`ClassificationDataset` is one split: the class names, and for each image its
absolute path and its label, an int64 index into ``class_names``. Images are not read
here: :mod:`~vision_core.data.classification.checks` decodes them up front and
:mod:`~vision_core.data.classification.pipeline` while training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The suffixes readers list (case-insensitive); every one decodes with OpenCV and tf.io.decode_image.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class ClassificationDataset:
    """A split of an image-classification dataset.

    Attributes:
        source: the folder or CSV file it was read from (named in reports and errors).
        split: the split name ("train", "val", ...).
        class_names: names indexed by label (0..K-1).
        paths: absolute image paths, one per sample.
        labels: int64 [N], index into ``class_names`` of each path.
    """

    source: str
    split: str
    class_names: tuple[str, ...]
    paths: list[Path]
    labels: np.ndarray

    def __post_init__(self):
        self.source = str(self.source)
        self.class_names = tuple(str(name) for name in self.class_names)
        self.paths = [Path(path) for path in self.paths]
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        if len(self.labels) != len(self.paths):
            raise ValueError(f"{self.source}: {len(self.paths)} paths but {len(self.labels)} labels")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"{self.source}: class names repeat: {list(self.class_names)}")
        outside = (self.labels < 0) | (self.labels >= len(self.class_names))
        if outside.any():
            index = int(np.argmax(outside))
            raise ValueError(
                f"{self.paths[index]}: label {self.labels[index]} is not in "
                f"0..{len(self.class_names) - 1} ({self.source})"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        """Samples per class, in class order (classes without samples count 0)."""
        totals = np.bincount(self.labels, minlength=self.num_classes)
        return dict(zip(self.class_names, totals.tolist()))
