"""Training-speed pieces: the Conv2D input gradient that replaces TensorFlow's CPU kernel, a fused Adam."""
