"""``python -m apps.segment COMMAND``: the segment app's command line (see ``--help``)."""

from apps.segment.task import SegmentTask
from vision_core.app.cli import main

raise SystemExit(main(SegmentTask()))
