"""Image classification beside the data layer: metrics, the confusion-matrix plot, every model form
behind one runner, and prediction on image files. Class scores are float32 [N, K] (logits or
probabilities: the arg-max is the same); labels are int [N] indices into the class names.

| module | job |
|---|---|
| ``evaluate`` | :func:`classification_metrics`, :func:`top1_agreement` |
| ``plots`` | :func:`plot_confusion_matrix` |
| ``runners`` | :func:`load_classifier_runner`: Keras, TFLite and ONNX classifiers, normalised images in, scores out |
| ``predict`` | :func:`predict_images`: top-k JSON and drawn copies of image files |

Import from the modules; ``runners`` and ``predict`` load TensorFlow, ``evaluate`` does not.
"""
