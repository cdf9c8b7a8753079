"""The suite's one logger (``vision_core``) and the console set-up of its command lines."""

from __future__ import annotations

import logging

LOGGER_NAME = "vision_core"


def get_logger() -> logging.Logger:
    """The logger every module of the suite writes to."""
    return logging.getLogger(LOGGER_NAME)


def log_to_console(level: int = logging.INFO) -> None:
    """Plain messages on stderr, as the command lines print them."""
    logging.basicConfig(level=level, format="%(message)s")
