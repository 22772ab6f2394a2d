"""Λ-map models: a U-Net maps a noisy image or volume (or an initial reconstruction) to Λ, then ``tvfast.pdhg`` solves.

Modules
-------
unet       : the U-Net (2-D or 3-D by ``spatial_dims``).
lambda_net : LambdaNet, U-Net → Λ → PDHG, for images and for volumes/sequences.
reconstruction_net : ReconstructionNet, U-Net on Aᴴy (or FBP) → Λ → PDHG with the forward operator A (MRI, CT).
files      : model files (safetensors weights + JSON config, format check).
precision  : the U-Net's precision (fp32 / bf16 autocast, channels-last).
pretrained : the shipped models, ``tvfast.pretrained(name)``, ``tvfast.pretrained_models()``.
"""
