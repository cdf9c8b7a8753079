"""The segmentation data layer: image/mask readers, the up-front check, the built-in demo, the pipeline.

A split is a :class:`SegmentationDataset`: class names (index = mask value), the ignore index,
absolute image and mask paths in pairs.

| module | job |
|---|---|
| ``types`` | :class:`SegmentationDataset`, :data:`SEGMENTATION_ISSUE_KINDS`, :data:`IGNORE_INDEX` |
| ``masks`` | :func:`read_mask`: index or palette PNGs as class indices; colour masks are an error |
| ``readers`` | :func:`load_segmentation_dataset`: ``images/`` + ``masks/`` folders, VOC or Cityscapes by layout |
| ``voc``, ``cityscapes`` | those two layouts; Cityscapes' label ids mapped to its 19 train ids |
| ``checks`` | :func:`check_segmentation_dataset`: every bad pair, counted by kind |
| ``demo`` | :func:`write_segment_shapes`: the built-in shape scenes as PNG pairs |
| ``pipeline`` | :func:`make_segmentation_dataset`: the tf.data pipeline with joint augmentation |

The ``pipeline`` names load on first use, so reading and checking data never loads TensorFlow.
"""

from vision_core.data.segmentation.checks import SegmentationReport, check_segmentation_dataset
from vision_core.data.segmentation.cityscapes import CITYSCAPES_CLASSES
from vision_core.data.segmentation.demo import DEMO_CLASSES, DEMO_COLORS, write_segment_shapes
from vision_core.data.segmentation.masks import RGBMaskError, map_labels, read_mask
from vision_core.data.segmentation.readers import load_segmentation_dataset
from vision_core.data.segmentation.types import (
    IGNORE_INDEX,
    SEGMENTATION_ISSUE_KINDS,
    SegmentationDataset,
    SegmentationIssue,
)
from vision_core.data.segmentation.voc import VOC_CLASSES

_PIPELINE_NAMES = ("load_pair", "make_segmentation_dataset", "normalize", "segmentation_transform")

__all__ = [
    "CITYSCAPES_CLASSES",
    "VOC_CLASSES",
    "map_labels",
    "DEMO_CLASSES",
    "DEMO_COLORS",
    "IGNORE_INDEX",
    "RGBMaskError",
    "SEGMENTATION_ISSUE_KINDS",
    "SegmentationDataset",
    "SegmentationIssue",
    "SegmentationReport",
    "check_segmentation_dataset",
    "load_pair",
    "load_segmentation_dataset",
    "make_segmentation_dataset",
    "normalize",
    "read_mask",
    "segmentation_transform",
    "write_segment_shapes",
]


def __getattr__(name: str):
    if name in _PIPELINE_NAMES:
        from vision_core.data.segmentation import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
