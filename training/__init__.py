"""Training and evaluating Λ-map models (docs/method.md §6–§8). Imports the core; the core never imports it.

Modules
-------
train          : the trainer's loop (``tvfast train``, ``python -m tvfast.training.train``).
options        : its command line, recipes, task defaults, resumed options and argument checks.
checkpoint     : the resumable ``last.pt`` (model, optimizer, position, RNG states).
distributed    : the process group of a run (one process, or several under torchrun).
data           : the datasets' shared base (seeded samples, cache, noise) and the image-folder dataset.
sequences      : synthetic (x, y, t) sequences from images, and ready-made (D, H, W) sequence files.
tasks          : the simulated reconstruction tasks (mri4x, ct60): their samples, model call and loss.
synthetic      : synthetic clean images made on the fly (dead leaves, object supports) for varied training samples.
evaluate       : learned Λ vs the best scalar λ (``tvfast evaluate``), denoising.
evaluate_reconstruction : the same for the reconstruction tasks (``tvfast evaluate --task mri4x|ct60``).
evaluate3d     : a dynamic model vs the best pair of scalars (λ_xy, λ_t).
figures        : the evaluation's λ-curve and difference-histogram figures.

One-off studies (recipe ablation, boundary check, natural images) live in ``experiments/``, outside the package.

The model itself (``tvfast.models.lambda_net``, ``tvfast.models.unet``), image I/O, noise,
metrics and the scalar-λ grid search live in the core package.
"""
