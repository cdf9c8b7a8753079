"""The built-in fundus demo: generated retina photographs graded for referable diabetic retinopathy.

Each image is a colour fundus photograph in miniature: a dark field around an orange-red retina
with vignetting, the optic disc (bright, on the nasal side, so left and right eyes mirror), the
macula (a darker spot), and four vessel arcades leaving the disc. Lesions are drawn by grade, in
the spirit of the international clinical DR scale:

| grade | name | lesions |
|---|---|---|
| 0 | none | none |
| 1 | mild | 1-3 microaneurysms (tiny dark-red dots) |
| 2 | moderate | 6-12 microaneurysms and 1-4 blot haemorrhages or hard exudates (yellow flecks) |
| 3 | severe | 8-16 microaneurysms, 5-10 haemorrhages, exudates, cotton-wool spots (pale, blurred) |
| 4 | proliferative | grade 3 and new fine, tortuous vessels at the disc |

``referable`` is grade 2 or more (the label the classifier learns); ``non_referable`` is 0 or 1.
A patient has two eyes whose grades are close (the fellow eye is the patient's grade, or one
step from it), and shares its retina colour between them, which is why splits are by patient.

:func:`write_fundus_dataset` writes ``root/images/<patient>_<eye>.png`` and ``root/labels.csv``
(``path,label,patient_id,eye,grade``) atomically; the reader splits it by patient. Everything
is drawn from one seeded generator per patient, so the files are the same on every machine
with the same OpenCV.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vision_core.data.generated import generated_dataset

FUNDUS_CLASSES = ("non_referable", "referable")
REFERABLE_GRADE = 2
GRADES = 5
LABELS_FILE = "labels.csv"
GENERATOR_VERSION = 1
SUPERSAMPLE = 2  # drawn at twice the size and shrunk with area averaging: smooth edges, sub-pixel dots
PATIENT_GRADE_SHARES = (0.35, 0.25, 0.2, 0.12, 0.08)  # grades 0..4 of a patient's worse eye

MICROANEURYSM = (125, 22, 18)
HAEMORRHAGE = (105, 14, 10)
EXUDATE = (235, 215, 95)
COTTON_WOOL = (232, 205, 180)
VESSEL = (135, 30, 22)


def grade_label(grade: int) -> str:
    """The class of a DR grade: ``referable`` from :data:`REFERABLE_GRADE` up."""
    return FUNDUS_CLASSES[int(grade >= REFERABLE_GRADE)]


def draw_fundus(rng: np.random.Generator, size: int, grade: int, left_eye: bool, tint: np.ndarray) -> np.ndarray:
    """One fundus image of ``grade`` (0-4), uint8 RGB [size, size, 3]; ``tint`` (RGB float [3]) is the retina's
    base colour, shared by a patient's eyes."""
    side = size * SUPERSAMPLE
    centre = np.array([side / 2, side / 2])
    radius = 0.46 * side
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    distance = np.hypot(xx - centre[0], yy - centre[1]) / radius
    shade = np.clip(1.0 - 0.45 * distance**2, 0, 1)[..., None]
    image = np.clip(tint[None, None, :] * shade, 0, 255)
    nasal = -1 if left_eye else 1
    disc = centre + np.array([nasal * 0.27 * side + rng.normal(0, 0.02 * side), rng.normal(0, 0.03 * side)])
    macula = centre + np.array([-nasal * 0.12 * side, rng.normal(0, 0.02 * side)])
    macula_dark = np.exp(-((np.hypot(xx - macula[0], yy - macula[1]) / (0.09 * side)) ** 2))[..., None]
    image = image * (1 - 0.35 * macula_dark)
    image = image.astype(np.uint8).copy()
    _draw_vessels(image, rng, disc, nasal, side)
    disc_radius = int(0.075 * side)
    cv2.circle(image, _point(disc), disc_radius, (250, 225, 160), -1, cv2.LINE_AA)
    cv2.circle(image, _point(disc), int(disc_radius * 0.5), (255, 245, 210), -1, cv2.LINE_AA)
    _draw_lesions(image, rng, grade, centre, radius, disc, side)
    if grade == 4:
        _draw_new_vessels(image, rng, disc, side)
    image[distance > 1] = 0
    image = cv2.GaussianBlur(image, (0, 0), 0.6 * SUPERSAMPLE)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    image += rng.normal(0, 3.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _point(xy) -> tuple[int, int]:
    return int(round(xy[0])), int(round(xy[1]))


def _draw_vessels(image: np.ndarray, rng: np.random.Generator, disc: np.ndarray, nasal: int, side: int) -> None:
    """Four arcades from the disc, curving toward the macula above and below, thinning as they go."""
    for vertical in (-1, 1):
        for spread in (0.7, 1.25):
            angle = np.arctan2(vertical * spread, -nasal) + rng.normal(0, 0.08)
            point, width = disc.copy(), 3.2 * SUPERSAMPLE / 2
            for _ in range(14):
                step = 0.045 * side
                angle += -vertical * nasal * 0.05 * np.sign(np.cos(angle)) + rng.normal(0, 0.08)
                following = point + step * np.array([np.cos(angle), np.sin(angle)])
                cv2.line(image, _point(point), _point(following), VESSEL, max(1, int(round(width))), cv2.LINE_AA)
                point, width = following, width * 0.93


def _draw_new_vessels(image: np.ndarray, rng: np.random.Generator, disc: np.ndarray, side: int) -> None:
    """Proliferative DR: a tangle of fine vessels at the disc."""
    for _ in range(int(rng.integers(6, 11))):
        angle = rng.uniform(0, 2 * np.pi)
        point = disc + rng.normal(0, 0.03 * side, 2)
        for _ in range(5):
            angle += rng.normal(0, 0.9)
            following = point + 0.025 * side * np.array([np.cos(angle), np.sin(angle)])
            cv2.line(image, _point(point), _point(following), VESSEL, 1, cv2.LINE_AA)
            point = following


def _lesion_counts(rng: np.random.Generator, grade: int) -> dict[str, int]:
    """How many of each lesion an eye of ``grade`` shows (see the module docstring's table)."""
    draw = rng.integers
    if grade == 0:
        return {}
    if grade == 1:
        return {"microaneurysm": int(draw(1, 4))}
    if grade == 2:
        haemorrhages = int(draw(0, 4))
        return {
            "microaneurysm": int(draw(6, 13)),
            "haemorrhage": haemorrhages,
            "exudate": int(draw(1, 4)) if haemorrhages == 0 else int(draw(0, 3)),
        }
    return {
        "microaneurysm": int(draw(8, 17)),
        "haemorrhage": int(draw(5, 11)),
        "exudate": int(draw(2, 7)),
        "cotton_wool": int(draw(1, 4)),
    }


def _draw_lesions(
    image: np.ndarray,
    rng: np.random.Generator,
    grade: int,
    centre: np.ndarray,
    radius: float,
    disc: np.ndarray,
    side: int,
) -> None:
    def place() -> tuple[int, int]:
        while True:
            point = centre + rng.uniform(-0.82, 0.82, 2) * radius
            if np.hypot(*(point - centre)) < 0.82 * radius and np.hypot(*(point - disc)) > 0.11 * side:
                return _point(point)

    unit = SUPERSAMPLE
    for kind, count in _lesion_counts(rng, grade).items():
        for _ in range(count):
            x, y = place()
            if kind == "microaneurysm":
                cv2.circle(image, (x, y), int(round(rng.uniform(1.0, 1.6) * unit)), MICROANEURYSM, -1, cv2.LINE_AA)
            elif kind == "haemorrhage":
                axes = _point(rng.uniform(2.2, 4.0, 2) * unit)
                cv2.ellipse(image, (x, y), axes, rng.uniform(0, 180), 0, 360, HAEMORRHAGE, -1, cv2.LINE_AA)
            elif kind == "exudate":
                for _ in range(int(rng.integers(2, 6))):
                    fleck = _point(np.array([x, y]) + rng.normal(0, 2.5 * unit, 2))
                    cv2.circle(image, fleck, int(round(rng.uniform(0.8, 1.5) * unit)), EXUDATE, -1, cv2.LINE_AA)
            else:
                spot = np.zeros_like(image)
                axes = _point(rng.uniform(3.0, 5.0, 2) * unit)
                cv2.ellipse(spot, (x, y), axes, rng.uniform(0, 180), 0, 360, COTTON_WOOL, -1, cv2.LINE_AA)
                mask = cv2.GaussianBlur((spot.max(axis=2) > 0).astype(np.float32), (0, 0), 1.5 * unit)[..., None]
                image[:] = (image * (1 - 0.8 * mask) + np.asarray(COTTON_WOOL) * 0.8 * mask).astype(np.uint8)


def fundus_records(patients: int, seed: int) -> list[dict]:
    """The rows of the demo (before drawing): per patient its two eyes, each with its grade.

    A patient's worse-eye grade is drawn from :data:`PATIENT_GRADE_SHARES`; the fellow eye has the
    same grade (half the time) or one less. Returns ``{"patient_id", "eye", "grade", "seed"}`` dicts,
    ``seed`` being the eye's own drawing seed.
    """
    rng = np.random.default_rng(seed)
    records = []
    for patient in range(patients):
        worse = int(rng.choice(GRADES, p=PATIENT_GRADE_SHARES))
        fellow = worse if rng.random() < 0.5 else max(worse - 1, 0)
        grades = (worse, fellow) if rng.random() < 0.5 else (fellow, worse)
        for eye, grade in zip(("left", "right"), grades):
            records.append(
                {"patient_id": f"P{patient:05d}", "eye": eye, "grade": grade, "seed": int(rng.integers(2**31))}
            )
    return records


def write_fundus_dataset(
    root: str | os.PathLike, patients: int = 1500, size: int = 96, seed: int = 2024, *, progress: bool = True
) -> Path:
    """Write the fundus demo (``2 * patients`` images of ``size`` pixels) to ``root``; returns ``root/labels.csv``.

    ``root`` holds ``dataset.json`` (these settings), ``labels.csv`` and ``images/``. A ``root``
    already holding the demo of the same settings is reused untouched; one holding anything else is
    an error naming it. The folder is written beside ``root`` and renamed into place.
    """
    root = Path(os.path.abspath(root))
    settings = {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "patients": patients,
        "size": size,
        "seed": seed,
        "classes": list(FUNDUS_CLASSES),
    }

    def write(staging: Path) -> None:
        (staging / "images").mkdir()
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["path", "label", "patient_id", "eye", "grade"])
        tints: dict[str, np.ndarray] = {}
        for record in tqdm(
            fundus_records(patients, seed), desc="write fundus demo", unit="image", disable=not progress
        ):
            rng = np.random.default_rng(record["seed"])
            patient = record["patient_id"]
            tint = tints.setdefault(
                patient, np.array([rng.uniform(175, 225), rng.uniform(65, 110), rng.uniform(25, 55)])
            )
            image = draw_fundus(rng, size, record["grade"], record["eye"] == "left", tint)
            name = f"images/{patient}_{record['eye']}.png"
            ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError("OpenCV cannot encode PNG images")
            encoded.tofile(staging / name)
            writer.writerow([name, grade_label(record["grade"]), patient, record["eye"], record["grade"]])
        (staging / LABELS_FILE).write_text(table.getvalue())

    return generated_dataset(root, settings, write, "fundus demo") / LABELS_FILE
