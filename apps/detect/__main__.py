"""``python -m apps.detect COMMAND``: the detect app's command line (see ``--help``)."""

from apps.detect.task import DetectTask
from vision_core.app.cli import main

raise SystemExit(main(DetectTask()))
