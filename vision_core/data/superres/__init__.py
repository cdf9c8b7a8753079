"""Super-resolution data: MATLAB bicubic resizing, BT.601 colour, folder readers and checks, the demo set,
the tf.data patch pipeline."""
