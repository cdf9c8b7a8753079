"""The classification data layer: readers, the up-front check, the built-in shapes on disk, the pipeline.

A split is a :class:`ClassificationDataset`: class names, absolute image paths, int64 labels [N]
(multi-label: multi-hot [N, K]), and patient ids when the source names them.

| module | job |
|---|---|
| ``types`` | :class:`ClassificationDataset`, :data:`IMAGE_SUFFIXES` |
| ``readers`` | :func:`load_classification_dataset`: class folders (with or without split folders) or a CSV |
| ``dicom`` | :func:`read_dicom`: a DICOM file's pixels as 8-bit (rescale, VOI LUT or window, MONOCHROME1) |
| ``checks`` | :func:`check_classification_dataset`, :func:`check_split_overlap`, :func:`check_patient_overlap` |
| ``shapes`` | :func:`write_shapes_dataset`: the built-in shapes as PNG class folders |
| ``fundus`` | :func:`write_fundus_dataset`: the built-in fundus demo (referable DR) as PNGs and a CSV |
| ``mixup`` | :func:`mixup_batches`: mixup of training batches |
| ``pipeline`` | :func:`make_classification_dataset`, :func:`load_images`: the tf.data input pipeline |

The ``pipeline`` names load on first use, so reading and checking data never loads TensorFlow.
"""

from vision_core.data.classification.checks import (
    CLASSIFICATION_ISSUE_KINDS,
    ClassificationIssue,
    ClassificationReport,
    check_classification_dataset,
    check_patient_overlap,
    check_split_overlap,
)
from vision_core.data.classification.readers import load_classification_dataset
from vision_core.data.classification.shapes import write_shapes_dataset
from vision_core.data.classification.types import IMAGE_SUFFIXES, ClassificationDataset

_PIPELINE_NAMES = ("load_images", "make_classification_dataset", "preprocess_image_file")

__all__ = [
    "CLASSIFICATION_ISSUE_KINDS",
    "IMAGE_SUFFIXES",
    "ClassificationDataset",
    "ClassificationIssue",
    "ClassificationReport",
    "check_classification_dataset",
    "check_patient_overlap",
    "check_split_overlap",
    "load_classification_dataset",
    "load_images",
    "make_classification_dataset",
    "preprocess_image_file",
    "write_shapes_dataset",
]


def __getattr__(name: str):
    if name in _PIPELINE_NAMES:
        from vision_core.data.classification import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
