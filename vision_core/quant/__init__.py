"""Quantization: post-training conversion, QAT with TF-MOT, and the int8 op audit."""
