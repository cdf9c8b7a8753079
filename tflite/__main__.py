"""``python -m tflite``: see :mod:`tflite.cli`."""

import sys

from tflite.cli import main

sys.exit(main())
