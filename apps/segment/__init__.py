"""Semantic segmentation: ``python -m apps.segment COMMAND`` (see ``--help``)."""
