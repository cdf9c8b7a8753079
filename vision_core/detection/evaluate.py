"""COCO box evaluation (pycocotools) of any detector form on a :class:`DetectionDataset`.

:func:`run_detector` runs a :class:`~vision_core.detection.runners.DetectorRunner` over the
dataset's images (tqdm progress bar); :func:`coco_evaluate` scores the detections against the
dataset's boxes with pycocotools' ``COCOeval`` (its printing captured); :func:`evaluate` does
both. Boxes cross every boundary here as **xyxy absolute pixels of the original image**
(``Detections``, ``DetectionRecord``); they reach pycocotools as COCO ``[x, y, w, h]`` through
``coco_dict`` / ``coco_results``, which also map the 0-based class ids to the dataset's
category ids and back.

The result is a JSON-ready dict::

    {"mAP": AP@[.5:.95], "mAP50": AP@.5, "mAP75": AP@.75, "AR100": recall@100 detections,
     "per_class": {name: {"AP", "AP50", "AR100", "ground_truth", "detections"}},
     "pr_curve": {"iou": 0.5, "recall": [101 thresholds], "precision": {name: [101 values]}},
     "num_images": images scored, "num_detections": detections scored,
     "skipped_images": count, "skipped": {path: reason}}

COCO conventions throughout: area range "all", 100 detections per image, 101-point
interpolated precision, a class's AP averaged over IoU .5:.05:.95. A class without ground truth
has AP/AR ``None`` and no curve, and does not enter the means (as in pycocotools). No
detection at all scores 0 for every class with ground truth. An image that cannot be read
is skipped (logged, counted, named) and left out of the scoring, ground truth included.
Pascal VOC ``difficult`` boxes count as ordinary ground truth (COCO has no such flag).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params
from tqdm import tqdm

from vision_core.data.detection.coco import coco_dict, coco_results
from vision_core.data.detection.types import DetectionDataset
from vision_core.detection.detector_io import Detections
from vision_core.logs import get_logger

log = get_logger()

PR_CURVE_IOU = 0.5
_MAX_DETECTIONS = 100  # COCO's largest maxDets, the one every metric here uses


@dataclass
class DatasetDetections:
    """A runner's detections on a dataset: ``by_image`` maps image id -> :class:`Detections`
    (xyxy pixels of that image); ``skipped`` maps the path of each unreadable image -> reason."""

    by_image: dict[int, Detections] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def run_detector(runner, dataset: DetectionDataset, progress: bool = True) -> DatasetDetections:
    """Run ``runner`` (image uint8 [H, W, 3] RGB -> Detections) on every image of ``dataset``.

    Unreadable or missing images are skipped, logged and named in ``skipped``.
    """
    result = DatasetDetections()
    for index in tqdm(range(len(dataset)), desc=f"detect {dataset.split}", unit="image", disable=not progress):
        record = dataset.records[index]
        try:
            image = dataset.sample(index)["image"]
        except OSError as error:  # missing, corrupt or truncated file
            result.skipped[str(record.path)] = str(error)
            log.warning("skipping %s: %s", record.path, error)
            continue
        result.by_image[record.image_id] = runner(image)
    return result


def evaluate(runner, dataset: DetectionDataset, progress: bool = True) -> dict:
    """COCO metrics of ``runner`` on ``dataset`` (see the module docstring for the dict)."""
    return coco_evaluate(dataset, run_detector(runner, dataset, progress))


def coco_evaluate(dataset: DetectionDataset, detections: DatasetDetections | Mapping[int, Detections]) -> dict:
    """Score ``detections`` (image id -> Detections, xyxy pixels) against ``dataset`` with pycocotools.

    Images missing from ``detections`` are left out of the scoring; pass an empty
    :class:`Detections` for an image where nothing was found.
    """
    if not isinstance(detections, DatasetDetections):
        detections = DatasetDetections(dict(detections))
    image_ids = sorted(detections.by_image)
    for image_id in image_ids:
        classes = detections.by_image[image_id].classes
        if len(classes) and not 0 <= classes.min() <= classes.max() < dataset.num_classes:
            raise ValueError(
                f"image {image_id}: detected class ids {sorted(set(classes.tolist()))} outside "
                f"0..{dataset.num_classes - 1}, the classes of {dataset.split} ({dataset.source})"
            )
    # only the scored images: coco_dict reads missing image sizes from the files, which skipped ones lack
    scored = dataclasses.replace(dataset, records=[r for r in dataset.records if r.image_id in detections.by_image])
    ground_truth = coco_dict(scored)
    results = [
        entry
        for image_id in image_ids
        for entry in coco_results(
            dataset,
            [image_id] * len(detections.by_image[image_id]),
            detections.by_image[image_id].boxes,
            detections.by_image[image_id].classes,
            detections.by_image[image_id].scores,
        )
    ]
    precision, recall = _coco_eval(ground_truth, results)  # [T, 101, K], [T, K] in dataset class order
    metrics = _summarise(dataset, ground_truth, results, precision, recall)
    metrics.update(
        num_images=len(image_ids),
        num_detections=len(results),
        skipped_images=len(detections.skipped),
        skipped=dict(detections.skipped),
    )
    return metrics


def _coco_eval(ground_truth: dict, results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' accumulated precision ``[T, R, K]`` and recall ``[T, K]`` (area all, 100 detections),
    classes in the order of ``ground_truth["categories"]``; -1 for a class without ground truth."""
    categories = [c["id"] for c in ground_truth["categories"]]
    params = Params(iouType="bbox")
    if not results:  # pycocotools cannot load an empty result list; nothing found scores 0
        with_boxes = {a["category_id"] for a in ground_truth["annotations"]}
        zero = np.array([0.0 if c in with_boxes else -1.0 for c in categories])
        ious, recalls = len(params.iouThrs), len(params.recThrs)
        return np.broadcast_to(zero, (ious, recalls, len(zero))), np.broadcast_to(zero, (ious, len(zero)))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    # evaluate() sorts the category ids: put the class axis back in the dataset's order
    order = [list(evaluator.params.catIds).index(c) for c in categories]
    area, dets = evaluator.params.areaRngLbl.index("all"), evaluator.params.maxDets.index(_MAX_DETECTIONS)
    return (evaluator.eval["precision"][:, :, order, area, dets], evaluator.eval["recall"][:, order, area, dets])


def _mean(values: np.ndarray) -> float | None:
    values = values[values > -1]
    return float(values.mean()) if values.size else None


def _summarise(
    dataset: DetectionDataset, ground_truth: dict, results: list[dict], precision: np.ndarray, recall: np.ndarray
) -> dict:
    params = Params(iouType="bbox")
    iou_50, iou_75 = (int(np.argmin(np.abs(params.iouThrs - t))) for t in (0.5, 0.75))
    gt_counts = np.bincount(
        [dataset.category_ids.index(a["category_id"]) for a in ground_truth["annotations"]],
        minlength=dataset.num_classes,
    )
    det_counts = np.bincount(
        [dataset.category_ids.index(r["category_id"]) for r in results], minlength=dataset.num_classes
    )
    per_class, curves = {}, {}
    for k, name in enumerate(dataset.class_names):
        per_class[name] = {
            "AP": _mean(precision[:, :, k]),
            "AP50": _mean(precision[iou_50, :, k]),
            "AR100": _mean(recall[:, k]),
            "ground_truth": int(gt_counts[k]),
            "detections": int(det_counts[k]),
        }
        if gt_counts[k]:
            curves[name] = precision[iou_50, :, k].tolist()
    # pycocotools' own summary: the mean over every (IoU, recall, class) cell with ground truth
    return {
        "mAP": _mean(precision) or 0.0,
        "mAP50": _mean(precision[iou_50]) or 0.0,
        "mAP75": _mean(precision[iou_75]) or 0.0,
        "AR100": _mean(recall) or 0.0,
        "per_class": per_class,
        "pr_curve": {"iou": PR_CURVE_IOU, "recall": params.recThrs.tolist(), "precision": curves},
    }
