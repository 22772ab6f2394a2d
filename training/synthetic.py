"""Synthetic clean images for training, made on the fly: dead-leaves images and object supports.

No file is read, so there is no data set to ship and no licence to check.
Both generators draw from the ``torch.Generator`` they are given — in
training the sample's seeded stream (:class:`~tvfast.training.data.NoisyFolderDataset`),
so a run and a resumed run see the same images.

Dead leaves (:func:`dead_leaves`)
    The dead-leaves model of Lee, Mumford & Huang (2001): opaque shapes
    ("leaves") of random grey level fall on the image plane at random
    positions, each hiding what lies under it, until the plane is covered.
    Their sizes follow a power law, radius r with density ∝ r^(−α) on
    [r_min, r_max], α = 3: the scale-invariant case, whose images share the
    scaling statistics of natural images (edges and flat regions at every
    scale). The image is rendered from the top leaf down: each new leaf
    paints only the pixels that no earlier (higher) leaf covered, and the
    drawing stops when every pixel is covered or after ``max_leaves``
    leaves (what is left gets one grey level, the "ground"). A leaf is a
    disc, an ellipse or a rectangle (a third each; ellipses and rectangles
    with an aspect ratio in [0.25, 1] and a random rotation), of grey level
    U[0, 1]. Then, in this order:

    * smooth shading, multiplicative like an MRI receive-field bias:
      ``x ← x · (1 − a·p(u, v))``, p a random quadratic polynomial of the
      coordinates scaled to [0, 1] over the image, a ~ U[0, shading];
    * mild texture: ``x ← x · (1 + τ·t)``, t white noise low-passed by a
      Gaussian of σ ~ U[0.5, 2] px and scaled to unit standard deviation,
      τ ~ U[0, texture];
    * edge blur: a Gaussian of σ ~ U[0, blur] px;
    * clipping to [0, 1].

    The Gaussian filters are applied in the Fourier domain (periodic
    boundary; σ of a pixel or two mixes only the outermost pixels).

    Reference: A. B. Lee, D. Mumford and J. Huang, "Occlusion models for
    natural images: a statistical study of a scale-invariant dead leaves
    model", International Journal of Computer Vision 41(1/2), 35–59, 2001.

Object support (:func:`object_support`)
    A random ellipse (centre, axis ratio, rotation) thresholded so that a
    given fraction of the image lies outside it: multiplying a clean image by
    it gives an object on a zero background, as in MRI, where the body sits
    in air that gives no signal.

Random draws. :func:`dead_leaves` draws one 62-bit integer from the
generator and makes everything else with a NumPy generator seeded by it
(drawing thousands of leaves one torch call at a time would cost more than
rendering them). :func:`object_support` draws its four numbers from the
torch generator directly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["dead_leaves", "object_support"]

_SHAPES = ("disc", "ellipse", "rectangle")


def _check_side(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return value


def _check_amount(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _power_law_radii(rng: np.random.Generator, count: int, r_min: float, r_max: float, alpha: float) -> np.ndarray:
    """``count`` radii with density ∝ r^(−alpha) on [r_min, r_max] (inverse CDF; alpha ≠ 1)."""
    u = rng.random(count)
    e = 1.0 - alpha
    return (r_min**e + u * (r_max**e - r_min**e)) ** (1.0 / e)


def _gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` filtered by a Gaussian of standard deviation ``sigma`` pixels (FFT, periodic boundary)."""
    if sigma <= 0:
        return image
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.rfftfreq(image.shape[1])[None, :]
    transfer = np.exp(-2.0 * math.pi**2 * sigma**2 * (fy**2 + fx**2))
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=image.shape)


def _render_leaves(rng: np.random.Generator, height: int, width: int, alpha: float, r_min: float, r_max: float,
                   max_leaves: int) -> np.ndarray:
    image = np.empty((height, width), dtype=np.float64)
    free = np.ones((height, width), dtype=bool)  # not yet covered by a higher leaf
    left = height * width
    radii = _power_law_radii(rng, max_leaves, r_min, r_max, alpha)
    shapes = rng.integers(0, len(_SHAPES), max_leaves)
    aspects = rng.uniform(0.25, 1.0, max_leaves)
    angles = rng.uniform(0.0, math.pi, max_leaves)
    greys = rng.random(max_leaves)
    centres = rng.random((max_leaves, 2)) * (height, width)
    for k in range(max_leaves):
        r, shape = radii[k], _SHAPES[shapes[k]]
        a, b = (r, r) if shape == "disc" else (r, r * aspects[k])  # semi-axes
        reach = math.hypot(a, b) if shape == "rectangle" else a
        cy, cx = centres[k]
        top, bottom = max(0, int(cy - reach)), min(height, int(cy + reach) + 1)
        left_col, right_col = max(0, int(cx - reach)), min(width, int(cx + reach) + 1)
        if top >= bottom or left_col >= right_col:
            continue
        window = free[top:bottom, left_col:right_col]
        if not window.any():  # hidden under higher leaves
            continue
        dy = np.arange(top, bottom)[:, None] + 0.5 - cy
        dx = np.arange(left_col, right_col)[None, :] + 0.5 - cx
        c, s = math.cos(angles[k]), math.sin(angles[k])
        along, across = c * dx + s * dy, -s * dx + c * dy
        if shape == "rectangle":
            inside = (np.abs(along) <= a) & (np.abs(across) <= b)
        else:
            inside = (along / a) ** 2 + (across / b) ** 2 <= 1.0
        paint = inside & window
        count = int(paint.sum())
        if count:
            image[top:bottom, left_col:right_col][paint] = greys[k]
            window[paint] = False
            left -= count
            if left == 0:
                return image
    image[free] = rng.random()  # the ground under the last leaf
    return image


def dead_leaves(height: int, width: int, generator: torch.Generator | None = None, *, alpha: float = 3.0,
                r_min: float | None = None, r_max: float | None = None, max_leaves: int = 5000,
                shading: float = 0.6, texture: float = 0.05, blur: float = 1.0) -> torch.Tensor:
    """A dead-leaves image (module docstring), float32 ``(1, height, width)`` with values in [0, 1].

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    generator : torch.Generator, optional
        The one source of randomness (one integer is drawn from it); the
        global torch generator when None.
    alpha : float
        Exponent of the radius density r^(−alpha); > 1 (3: scale invariant).
    r_min, r_max : float, optional
        Radius range in pixels; default ``max(1, min(H, W) / 100)`` and
        ``min(H, W) / 2``.
    max_leaves : int
        At most this many leaves are drawn (the ground shows where they left
        the plane uncovered).
    shading, texture, blur : float
        Upper ends of the shading amplitude a, the texture amplitude τ and
        the blur σ (pixels) drawn per image; 0 switches each off.
    """
    height, width = _check_side("height", height), _check_side("width", width)
    max_leaves = _check_side("max_leaves", max_leaves)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 1 < alpha < math.inf:
        raise ValueError(f"alpha: expected a finite number > 1, got {alpha!r}")
    shading, texture, blur = (_check_amount(n, v) for n, v in (("shading", shading), ("texture", texture),
                                                                 ("blur", blur)))
    if shading > 1:
        raise ValueError(f"shading: expected a number in [0, 1], got {shading!r}")
    side = min(height, width)
    r_min = max(1.0, side / 100) if r_min is None else float(r_min)
    r_max = side / 2 if r_max is None else float(r_max)
    if not 0 < r_min <= r_max < math.inf:
        raise ValueError(f"r_min, r_max: need 0 < r_min <= r_max, got {r_min!r} and {r_max!r}")

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    image = _render_leaves(rng, height, width, float(alpha), r_min, r_max, max_leaves)

    u = np.linspace(-1.0, 1.0, height)[:, None]
    v = np.linspace(-1.0, 1.0, width)[None, :]
    c = rng.uniform(-1.0, 1.0, 5)
    p = c[0] * u + c[1] * v + c[2] * u**2 + c[3] * v**2 + c[4] * u * v  # (H, W)
    span = p.max() - p.min()
    p = (p - p.min()) / span if span > 0 else np.zeros_like(p)
    image *= 1.0 - rng.uniform(0.0, shading) * p

    t = _gaussian_filter(rng.standard_normal((height, width)), rng.uniform(0.5, 2.0))
    spread = t.std()
    image *= 1.0 + rng.uniform(0.0, texture) * (t / spread if spread > 0 else t)

    image = _gaussian_filter(image, rng.uniform(0.0, blur))
    return torch.from_numpy(np.clip(image, 0.0, 1.0).astype(np.float32))[None]


def object_support(height: int, width: int, background: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 float32 mask ``(1, height, width)``: a random ellipse with a fraction ``background`` of zeros outside.

    The ellipse has its centre within ±20 % of the image's middle, an axis
    ratio U[0.6, 1] and a rotation U[0, π) (drawn in that order from
    ``generator``, four numbers); the pixels of the largest normalised
    distance from its centre are set to 0, exactly ``round(background·H·W)``
    of them (ties broken by index order).
    """
    height, width = _check_side("height", height), _check_side("width", width)
    if isinstance(background, bool) or not isinstance(background, (int, float)) or not 0 <= background < 1:
        raise ValueError(f"background: expected a number in [0, 1), got {background!r}")
    draws = torch.rand(4, generator=generator, dtype=torch.float64)
    cy, cx = 0.4 * (draws[0] - 0.5), 0.4 * (draws[1] - 0.5)
    ratio, angle = 0.6 + 0.4 * draws[2], math.pi * draws[3]
    u = torch.linspace(-1, 1, height, dtype=torch.float64)[:, None] - cy
    v = torch.linspace(-1, 1, width, dtype=torch.float64)[None, :] - cx
    along = torch.cos(angle) * v + torch.sin(angle) * u
    across = -torch.sin(angle) * v + torch.cos(angle) * u
    distance = (along**2 + (across / ratio) ** 2).flatten()
    zeros = round(float(background) * height * width)
    mask = torch.ones(height * width, dtype=torch.float32)
    if zeros:
        mask[torch.argsort(distance, descending=True, stable=True)[:zeros]] = 0.0
    return mask.reshape(1, height, width)
