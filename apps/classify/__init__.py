"""Image classification: ``python -m apps.classify COMMAND`` (see ``--help``)."""
