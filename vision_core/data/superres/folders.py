"""Super-resolution image pairs from folders: high-resolution images, with low-resolution inputs made by
MATLAB's bicubic or read from paired folders.

Two layouts, one :class:`SRDataset`:

* **HR folder** (DIV2K / Set5 style, ``lr`` empty): every image of the folder (sorted by name) is a
  high-resolution image; it is cropped to a multiple of the scale (BasicSR's ``mod_crop``) and its
  input is ``imresize(hr, 1 / scale)`` (:mod:`vision_core.data.superres.imresize`), made when the
  image is first read.
* **Paired folders** (``lr`` given): the input of ``<hr>/<name>.<ext>`` is ``<lr>/<name>x<scale>.<ext>``
  (DIV2K's ``X2/X3/X4`` naming; ``lr`` may be the folder holding ``X<scale>/``) or ``<lr>/<name>.<ext>``.
  A high-resolution image must be ``scale`` times its input, up to ``scale - 1`` extra pixels,
  which are cropped.

Images are RGB uint8 ``[H, W, 3]``. :func:`check_sr_dataset` decodes every file and names every
unreadable image, missing input, size mismatch and image smaller than a training patch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from vision_core.data.detection.images import IMAGE_EXTENSIONS, UnreadableImageError, read_image
from vision_core.data.detection.types import Issue
from vision_core.data.report import ERROR, CheckReport
from vision_core.data.superres.imresize import bicubic_downscale

SR_ISSUE_KINDS = {
    "no_images": ERROR,  # the folder holds no image files
    "unreadable_image": ERROR,  # OpenCV cannot decode the file
    "missing_input": ERROR,  # a high-resolution image without its low-resolution file
    "scale_mismatch": ERROR,  # high-resolution size is not scale x the low-resolution size
    "smaller_than_patch": ERROR,  # a training input smaller than the patch
}


class SRIssue(Issue):
    """One problem: its ``kind`` (a key of :data:`SR_ISSUE_KINDS`), the file, and what is wrong."""

    def __post_init__(self):
        if self.kind not in SR_ISSUE_KINDS:
            raise ValueError(f"unknown issue kind {self.kind!r}: expected one of {', '.join(SR_ISSUE_KINDS)}")

    @property
    def severity(self) -> str:
        return SR_ISSUE_KINDS[self.kind]


@dataclass
class SRReport(CheckReport):
    """What :func:`check_sr_dataset` found."""

    kinds: ClassVar[dict[str, str]] = SR_ISSUE_KINDS
    source: str
    split: str
    num_images: int
    scale: int
    issues: list[SRIssue] = field(default_factory=list)

    def summary(self) -> list[str]:
        return [f"split {self.split!r}: {self.source}", f"{self.num_images} images, x{self.scale}"]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; ``FileNotFoundError`` naming a missing folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def lr_folder(lr: str | os.PathLike, scale: int) -> Path:
    """The folder of ``scale``'s inputs: ``lr/X<scale>`` when it exists (DIV2K), else ``lr``."""
    nested = Path(lr) / f"X{scale}"
    return nested if nested.is_dir() else Path(lr)


def lr_partner(hr_path: Path, lr_dir: Path, scale: int) -> Path | None:
    """The input file of ``hr_path`` in ``lr_dir``: ``<name>x<scale><ext>`` or ``<name><ext>``, any image suffix."""
    for stem in (f"{hr_path.stem}x{scale}", hr_path.stem):
        for suffix in (hr_path.suffix, *IMAGE_EXTENSIONS):
            candidate = lr_dir / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` cropped at the bottom/right to a multiple of ``scale`` on both sides."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def match_pair(hr: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray | None:
    """``hr`` cropped to ``scale`` x ``lr``'s size, or None when the sizes do not fit the scale."""
    if (hr.shape[0] // scale, hr.shape[1] // scale) != lr.shape[:2]:
        return None
    return mod_crop(hr, scale)


@dataclass
class SRDataset:
    """The pairs of one split: high-resolution files, their inputs' files (None: made by bicubic), the scale."""

    source: str
    split: str
    scale: int
    hr_paths: list[Path]
    lr_paths: list[Path | None]
    skipped: dict[str, str] = field(default_factory=dict)  # training images left out: path -> problem
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.hr_paths)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lr [h, w, 3], hr [h * scale, w * scale, 3])`` uint8 RGB, decoded (and downscaled) once, then kept.

        Raises ``FileNotFoundError`` / ``UnreadableImageError`` / ``ValueError`` naming the file.
        """
        if index not in self._cache:
            hr_path, lr_path = self.hr_paths[index], self.lr_paths[index]
            hr = read_image(hr_path)
            if lr_path is None:
                hr = mod_crop(hr, self.scale)
                if min(hr.shape[:2]) < self.scale:
                    raise ValueError(f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {self.scale}")
                lr = bicubic_downscale(hr, self.scale)
            else:
                lr = read_image(lr_path)
                matched = match_pair(hr, lr, self.scale)
                if matched is None:
                    raise ValueError(_mismatch(hr_path, hr, lr_path, lr, self.scale))
                hr = matched
            self._cache[index] = (lr, hr)
        return self._cache[index]

    def pairs(self):
        """Every ``(lr, hr)`` pair in order (see :meth:`pair`)."""
        for index in range(len(self)):
            yield self.pair(index)


def _mismatch(hr_path: Path, hr: np.ndarray, lr_path: Path, lr: np.ndarray, scale: int) -> str:
    return (
        f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is not x{scale} of its input {lr_path} "
        f"({lr.shape[1]}x{lr.shape[0]}; expected {lr.shape[1] * scale}x{lr.shape[0] * scale})"
    )


def load_sr_dataset(
    hr: str | os.PathLike, scale: int, lr: str | os.PathLike | None = None, split: str = ""
) -> SRDataset:
    """The :class:`SRDataset` of the high-resolution folder ``hr`` (and the paired folder ``lr``).

    Lists files only (decoding is lazy); ``FileNotFoundError`` for a missing folder, ``ValueError`` for a
    folder without images or a high-resolution image without its input.
    """
    if scale < 2:
        raise ValueError(f"scale must be 2 or more, got {scale}")
    hr_paths = list_images(hr)
    if not hr_paths:
        raise ValueError(f"{hr}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    lr_paths: list[Path | None] = [None] * len(hr_paths)
    if lr is not None:
        folder = lr_folder(lr, scale)
        if not folder.is_dir():
            raise FileNotFoundError(f"{lr}: no such image folder")
        lr_paths = [lr_partner(path, folder, scale) for path in hr_paths]
        missing = [str(hr_paths[i]) for i, p in enumerate(lr_paths) if p is None]
        if missing:
            raise ValueError(f"{folder}: no x{scale} input for {len(missing)} images: {', '.join(missing[:5])}")
    source = str(hr) if lr is None else f"{hr} + {lr}"
    return SRDataset(source, split, scale, hr_paths, lr_paths)


def check_sr_folders(
    hr: str | os.PathLike, scale: int, lr: str | os.PathLike | None = None, patch_size: int = 0, split: str = ""
) -> SRReport:
    """Decode every image of ``hr`` (and ``lr``) and report every problem, naming the file.

    ``patch_size``: the training input patch side; an input smaller on either side is reported
    (0: no size check).
    """
    source = str(hr) if lr is None else f"{hr} + {lr}"
    report = SRReport(source, split, 0, scale)
    try:
        hr_paths = list_images(hr)
    except FileNotFoundError as error:
        report.issues.append(SRIssue("no_images", str(hr), str(error)))
        return report
    if not hr_paths:
        report.issues.append(SRIssue("no_images", str(hr), f"no image files ({', '.join(IMAGE_EXTENSIONS)})"))
        return report
    report.num_images = len(hr_paths)
    folder = lr_folder(lr, scale) if lr is not None else None
    for hr_path in hr_paths:
        report.issues.extend(_check_pair(hr_path, folder, scale, patch_size))
    return report


def _check_pair(hr_path: Path, lr_dir: Path | None, scale: int, patch_size: int) -> list[SRIssue]:
    issues = []
    try:
        hr = read_image(hr_path)
    except (UnreadableImageError, OSError) as error:
        return [SRIssue("unreadable_image", str(hr_path), str(error))]
    if lr_dir is None:
        lr_size = (hr.shape[0] // scale, hr.shape[1] // scale)
        input_name = hr_path
    else:
        lr_path = lr_partner(hr_path, lr_dir, scale)
        if lr_path is None:
            message = f"no {hr_path.stem}x{scale}.* or {hr_path.stem}.* in {lr_dir}"
            return [SRIssue("missing_input", str(hr_path), message)]
        try:
            lr = read_image(lr_path)
        except (UnreadableImageError, OSError) as error:
            return [SRIssue("unreadable_image", str(lr_path), str(error))]
        if match_pair(hr, lr, scale) is None:
            issues.append(SRIssue("scale_mismatch", str(hr_path), _mismatch(hr_path, hr, lr_path, lr, scale)))
        lr_size, input_name = lr.shape[:2], lr_path
    if patch_size and min(lr_size) < patch_size:
        issues.append(
            SRIssue(
                "smaller_than_patch",
                str(input_name),
                f"input {lr_size[1]}x{lr_size[0]} is smaller than the {patch_size}x{patch_size} training patch",
            )
        )
    return issues
