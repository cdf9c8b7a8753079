"""Image and video super-resolution (ESPCN): ``python -m apps.superres COMMAND``."""
