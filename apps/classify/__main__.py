"""``python -m apps.classify COMMAND``: the classify app's command line (see ``--help``)."""

from apps.classify.task import ClassifyTask
from vision_core.app.cli import main

raise SystemExit(main(ClassifyTask()))
