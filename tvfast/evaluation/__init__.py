"""Noise models, image metrics, the best-scalar-λ oracle and figures.

Modules
-------
noise       : relative and absolute Gaussian noise.
metrics     : PSNR and SSIM (needs the ``[eval]`` extra: scikit-image).
grid_search : the best scalar λ on a grid (the oracle the learned Λ is compared with).
figures     : comparison and Λ-map figures (needs the ``[figures]`` extra: matplotlib).
"""
