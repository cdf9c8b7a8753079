"""The one super-resolution evaluator: PSNR and SSIM (Y, border cropped by the scale) of a model and of
bicubic upscaling on the same pairs.

For each pair ``(lr, hr)`` of a :class:`~vision_core.data.superres.folders.SRDataset` (uint8 RGB):

* **bicubic**: ``imresize(lr, scale)`` (MATLAB's bicubic, rounded to uint8), scored on its Y;
* **model**: the runner's output on the model's input (:func:`to_model_pixels`), as an 8-bit image
  would hold it (``output * 255`` clipped to [0, 255] and rounded). A ``y`` model's output is that Y
  channel, scored as it is; an ``rgb`` model's output is RGB, scored on its Y.

The ground truth is ``hr``'s Y (unrounded, as BasicSR). Metrics are the means over images of
:func:`vision_core.superres.metrics.psnr` / :func:`~vision_core.superres.metrics.ssim` with
``crop_border = scale``, plus ``psnr_gain`` (model minus bicubic, dB) and the per-image lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from vision_core.data.superres.colour import rgb_to_y, to_uint8
from vision_core.data.superres.folders import SRDataset
from vision_core.data.superres.imresize import bicubic_upscale
from vision_core.data.superres.pipeline import ColourMode, to_model_pixels
from vision_core.superres.metrics import psnr, ssim
from vision_core.superres.runners import SRRunner


def super_resolve(runner: SRRunner, lr: np.ndarray, colour: ColourMode) -> np.ndarray:
    """The model's output on uint8 RGB ``lr`` as 8-bit pixels: ``[H, W, 1]`` Y (``y``) or ``[H, W, 3]`` RGB."""
    return to_uint8(runner(to_model_pixels(lr, colour)) * 255.0)


def evaluate_sr(
    runner: SRRunner, data: SRDataset, colour: ColourMode, progress: bool = True, desc: str = "evaluate"
) -> dict[str, Any]:
    """Mean PSNR/SSIM of the model and of bicubic upscaling on every pair of ``data`` (see the module)."""
    scale = data.scale
    rows: dict[str, list[float]] = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
    for lr, hr in tqdm(data.pairs(), total=len(data), desc=desc, unit="image", disable=not progress):
        output = super_resolve(runner, lr, colour)
        if output.shape[:2] != hr.shape[:2]:
            raise ValueError(
                f"{runner.source}: output {output.shape[1]}x{output.shape[0]} for a "
                f"{hr.shape[1]}x{hr.shape[0]} ground truth (x{scale}): is the model x{scale}?"
            )
        bicubic = bicubic_upscale(lr, scale)
        rows["psnr"].append(psnr(output, _reference(hr, output), scale))
        rows["ssim"].append(ssim(output, _reference(hr, output), scale))
        rows["bicubic_psnr"].append(psnr(bicubic, hr, scale))
        rows["bicubic_ssim"].append(ssim(bicubic, hr, scale))
    means = {key: float(np.mean(values)) for key, values in rows.items()}
    return {
        **means,
        "psnr_gain": means["psnr"] - means["bicubic_psnr"],
        "images": len(data),
        "scale": scale,
        "per_image_psnr": rows["psnr"],
        "per_image_bicubic_psnr": rows["bicubic_psnr"],
    }


def _reference(hr: np.ndarray, output: np.ndarray) -> np.ndarray:
    """The ground truth the output is compared with: ``hr``'s Y (float) for a Y output, else ``hr``."""
    return rgb_to_y(hr)[..., None] if output.shape[-1] == 1 else hr
