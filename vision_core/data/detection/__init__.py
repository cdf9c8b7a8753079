"""The detection data layer: readers, the up-front check, the built-in demo dataset.

Box format everywhere a box crosses a boundary: **xyxy absolute pixels, float32, [N, 4] =
(x_min, y_min, x_max, y_max)**; class ids int32 [N] in 0..num_classes-1, no background id.

| module | job |
|---|---|
| ``types`` | :class:`DetectionDataset`, :class:`DetectionRecord`, :class:`DetectionSample`, :class:`Issue` |
| ``images`` | decoding images (corrupt/truncated files raise) and reading sizes from headers |
| ``coco`` / ``voc`` / ``yolo`` | one reader per annotation format (and the COCO writer) |
| ``formats`` | :func:`load_detection_dataset`: picks the reader from the path |
| ``checks`` | :func:`check_dataset`: every bad file and box, counted by kind |
| ``demo`` | :func:`write_demo_dataset`: procedurally generated shapes, COCO JSON per split |
| ``augment`` | bbox-aware albumentations pipelines (train / val) |
| ``pipeline`` | :func:`make_dataset`: the tf.data input pipeline |

``augment`` and ``pipeline`` are imported from their modules, so reading and checking data
never loads albumentations or TensorFlow.
"""

from vision_core.data.detection.checks import DatasetReport, check_dataset
from vision_core.data.detection.coco import (
    coco_dict,
    coco_results,
    read_coco,
    write_coco,
)
from vision_core.data.detection.demo import (
    DEMO_CLASSES,
    draw_detection_scene,
    write_demo_dataset,
)
from vision_core.data.detection.formats import detect_format, load_detection_dataset
from vision_core.data.detection.images import (
    UnreadableImageError,
    image_size,
    read_image,
)
from vision_core.data.detection.types import (
    BOX_FORMAT,
    ISSUE_KINDS,
    AnnotationFormatError,
    DetectionDataset,
    DetectionRecord,
    DetectionSample,
    Issue,
)
from vision_core.data.detection.voc import read_voc
from vision_core.data.detection.yolo import read_yolo

__all__ = [
    "BOX_FORMAT",
    "DEMO_CLASSES",
    "ISSUE_KINDS",
    "AnnotationFormatError",
    "DatasetReport",
    "DetectionDataset",
    "DetectionRecord",
    "DetectionSample",
    "Issue",
    "UnreadableImageError",
    "check_dataset",
    "coco_dict",
    "coco_results",
    "detect_format",
    "draw_detection_scene",
    "image_size",
    "load_detection_dataset",
    "read_coco",
    "read_image",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_demo_dataset",
]
