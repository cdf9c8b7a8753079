"""Generated datasets on disk (the apps' built-in demos): written once, reused while their settings match.

A generated dataset is a folder holding ``dataset.json`` (the settings it was made from: generator,
version, sizes, seeds) beside its files. :func:`generated_dataset` reuses a folder of the same
settings untouched, refuses one of other settings or contents by name, and otherwise writes the
dataset beside ``root`` and renames it into place, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from vision_core.storage.atomic import write_dir_atomic

SETTINGS_FILE = "dataset.json"


def generated_dataset(root: str | os.PathLike, settings: dict, write: Callable[[Path], object], kind: str) -> Path:
    """``root`` (absolute) holding the dataset ``write(folder)`` makes, generated from ``settings``.

    ``kind`` names the dataset in errors (``"shapes dataset"``): a ``root`` that holds anything but the
    dataset of these ``settings`` is a :class:`FileExistsError` naming it.
    """
    root = Path(os.path.abspath(root))
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        existing = read_settings(root)
        if existing == settings:
            return root
        problem = (
            f"holds a {kind} of other settings ({SETTINGS_FILE}: {existing})"
            if existing
            else f"exists and is not a {kind} (no {SETTINGS_FILE})"
        )
        raise FileExistsError(f"{root}: {problem}; remove it or choose another folder")

    def staged(staging: Path) -> None:
        staging.chmod(0o755)  # mkdtemp makes it private; the dataset is ordinary shared data
        write(staging)
        (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))

    return write_dir_atomic(root, staged)


def read_settings(root: Path) -> dict | None:
    """The settings ``root``'s dataset was generated from; None without a readable ``dataset.json``."""
    try:
        return json.loads((root / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return None
