"""Layout of a TF Serving export root and its generated ``models.config``.

An export root holds one folder per model and one integer-named folder per version::

    saved_models/
        models.config
        <model_name>/1/saved_model.pb ...
        <model_name>/2/...

TF Serving serves the highest version of each model by default and ignores folder
names that are not integers, so in-progress exports live in hidden temp folders
beside the versions. ``models.config`` is a text ``ModelServerConfig`` proto listing
every model folder that holds at least one version.

Base paths in ``models.config`` are where the *server* sees the models, not where this
process wrote them: the default ``/models`` fits the documented
``docker run -v "$PWD/saved_models:/models" tensorflow/serving
--model_config_file=/models/models.config``; a server started on this machine wants
``base_path=str(Path(root).resolve())``.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from vision_core.storage.atomic import write_atomic

CONFIG_NAME = "models.config"
DEFAULT_BASE_PATH = "/models"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_model_name(name: str) -> str:
    """``name`` if it can be a model folder and a TF Serving model name (letters, digits, ``._-``)."""
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} must match {MODEL_NAME.pattern}")
    return name


def versions(model_dir: str | Path) -> list[int]:
    """Version numbers of the integer-named subfolders of ``model_dir``, ascending ([] if none)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: str | Path) -> int:
    """One more than the highest existing version of ``model_dir`` (1 for a new model)."""
    return max(versions(model_dir), default=0) + 1


def served_models(root: str | Path) -> list[str]:
    """Names of the model folders under ``root`` that hold at least one version, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and MODEL_NAME.fullmatch(p.name) and versions(p))


def models_config_text(root: str | Path, base_path: str = DEFAULT_BASE_PATH) -> str:
    """The ``ModelServerConfig`` text proto for every served model under ``root``."""
    entries = "".join(
        "  config {\n"
        f"    name: {_quote(name)}\n"
        f"    base_path: {_quote(posixpath.join(base_path, name))}\n"
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for name in served_models(root)
    )
    return "model_config_list {\n" + entries + "}\n"


def _quote(text: str) -> str:
    """A text-proto string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_models_config(root: str | Path = "saved_models", base_path: str = DEFAULT_BASE_PATH) -> Path:
    """Write ``<root>/models.config`` atomically (see the module docstring for ``base_path``); returns its path."""
    return write_atomic(Path(root) / CONFIG_NAME, models_config_text(root, base_path).encode())
