"""The edge kit: run, inspect and benchmark exported ``.tflite`` files.

Depends on ``ai-edge-litert``, numpy and OpenCV only; it must never import TensorFlow or
Keras, so it runs on a Raspberry Pi-class device.
"""
