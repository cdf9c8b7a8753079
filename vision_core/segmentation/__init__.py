"""Semantic segmentation beside the data layer: metrics, every model form behind one runner, the
evaluator, drawings and prediction. Class scores are float32 [N, H, W, K] (logits or probabilities:
the arg-max is the same); label maps int [H, W] of class indices, the ignore index never scored.

| module | job |
|---|---|
| ``metrics`` | :func:`confusion_matrix`, :func:`segmentation_metrics`: mIoU, per-class IoU, pixel accuracy, fwIoU |
| ``runners`` | :func:`load_segmenter_runner`: Keras, TFLite and ONNX segmenters, normalised images in, scores out |
| ``evaluate`` | :func:`evaluate_segmenter`: one confusion matrix over a split, at each image's own size |
| ``draw`` | :func:`class_colors`, :func:`overlay`, :func:`write_gallery`: colour overlays and the gallery |
| ``predict`` | :func:`predict_sources`: overlays, index PNGs and per-class pixel counts of images and videos |

Import from the modules; ``runners`` and ``evaluate`` load TensorFlow, ``metrics`` and ``draw`` do not.
"""
