"""Super-resolution: metrics (PSNR/SSIM on BT.601 Y), runners of every model form, the evaluator, plots
and prediction on images and videos."""
