"""Files: reading and writing images and volumes, and atomic writes.

Modules
-------
images  : image files (PNG, JPEG, TIFF, .npy) with their format and bit depth.
volumes : (D, H, W) volumes and sequences (.npy, multi-page TIFF).
atomic  : write to a temporary file, then rename: nothing half-written is left.
"""
