"""Image classification beside the data layer: metrics (clinical ones included), losses, plots, every model
form behind one runner, and prediction on image files. Class scores are float32 [N, K] (logits or
probabilities: the arg-max is the same); labels are int [N] indices into the class names.

| module | job |
|---|---|
| ``evaluate`` | :func:`classification_metrics`, :func:`clinical_metrics` (image, patient), :func:`top1_agreement` |
| ``clinical`` | ROC AUC, bootstrap CIs, Youden thresholds, F1, kappa, calibration, patient aggregation |
| ``losses`` | :class:`ClassificationLoss`: softmax or sigmoid cross-entropy, focal, label smoothing, class weights |
| ``plots`` | :func:`plot_confusion_matrix`, :func:`plot_roc_curves`, :func:`plot_pr_curves`, :func:`plot_calibration` |
| ``runners`` | :func:`load_classifier_runner`: Keras, TFLite and ONNX classifiers, normalised images in, scores out |
| ``predict`` | :func:`predict_images`: top-k JSON and drawn copies of image files |
| ``attribution`` | Grad-CAM, integrated gradients, saliency and occlusion maps; rank correlation of two maps |
| ``explain`` | :func:`explain_images`: overlays, raw maps, ``explanations.json``; two forms' agreement |

Import from the modules; ``runners``, ``predict``, ``losses``, ``attribution`` and ``explain`` load TensorFlow,
``evaluate`` and ``clinical`` do not.
"""
