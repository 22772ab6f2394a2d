"""Λ-map models: a U-Net maps a noisy image or volume to Λ, then ``tvfast.pdhg`` solves.

Modules
-------
unet       : the U-Net (2-D or 3-D by ``spatial_dims``).
lambda_net : LambdaNet, U-Net → Λ → PDHG, for images and for volumes/sequences.
files      : model files (safetensors weights + JSON config, format check).
precision  : the U-Net's precision (fp32 / bf16 autocast, channels-last).
pretrained : the shipped models, ``tvfast.pretrained()``.
"""
