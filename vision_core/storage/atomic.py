"""Atomic writes: a temp file or folder beside the target, then a rename.

A crash or a failed export never leaves a half-written file or folder under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating the parent folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def copy_atomic(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy the file ``source`` to ``path`` atomically; returns the path."""
    return write_atomic(path, Path(source).read_bytes())


def write_dir_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Fill a staging folder beside ``path`` with ``write(staging)``, then put it in ``path``'s place.

    A failed ``write`` removes the staging folder and leaves an existing ``path`` as it was. An
    existing ``path`` is moved aside before the rename and removed after it, so ``path`` holds
    either the old folder or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    old = None
    try:
        write(staging)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.")) / path.name
            os.rename(path, old)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and old.exists():
            os.rename(old, path)
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old.parent)
    return path
