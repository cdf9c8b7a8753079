"""``python -m apps.superres COMMAND``: the superres app's command line (see ``--help``)."""

from apps.superres.task import SuperResTask
from vision_core.app.cli import main

raise SystemExit(main(SuperResTask()))
