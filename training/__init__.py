"""Learning regularisation maps for TV denoising (docs/method.md §6–§8).

Modules
-------
unet      : the U-Net ``NET_Θ``.
model     : ``LambdaNet`` — U-Net → Λ_Θ → ``tvfast.pdhg``; safetensors I/O.
metrics   : PSNR / SSIM with data range 1.
atomic    : atomic file writes (temp file + os.replace).
noise     : relative / absolute Gaussian noise (docs/method.md §7).
data      : image-folder dataset and ``load_grayscale``.
train     : the trainer (``python -m tvfast.training.train``).
evaluate  : best-scalar-λ vs learned Λ evaluation (``tvfast evaluate``).
figures   : matplotlib figures for the evaluation.
"""
