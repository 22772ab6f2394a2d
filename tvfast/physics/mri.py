r"""Simulated single-coil, accelerated Cartesian MRI data made from real-valued images.

These are *simulations*: the clean images are real-valued X-ray images (or
any real images in [0, 1]) given a synthetic smooth phase and sampled in
k-space by a synthetic mask. They are not scanner data (no coil
sensitivities, no off-resonance, no relaxation), only a controlled test
problem for reconstruction with the operator
:class:`tvfast.physics.MaskedFFT`.

Definition, per sample, for a clean image x ∈ [0, 1]^{H×W}:

Image
    u_i = −1 + 2i/(H−1) along H and v_j = −1 + 2j/(W−1) along W (that is
    ``torch.linspace(-1, 1, H)`` and ``torch.linspace(-1, 1, W)``; a length
    of 1 gives the single point −1), and

        φ(u, v) = π (c₁u + c₂v + c₃u² + c₄v² + c₅uv),    c ~ U[−0.5, 0.5)⁵,

        image = x · exp(i φ).

    The coefficients are ``torch.rand(5) − 0.5``, drawn per sample.

k-space
    k = F(image) with F = ``torch.fft.fft2(·, norm="ortho")`` (unitary), in
    FFT order (no shift: row 0 is k_y = 0).

Mask
    Whole rows (phase-encode lines), the same for every column, as a 0/1
    float32 tensor of shape (H, 1). With f the centre fraction (0.08) and R
    the acceleration (4):

    * n_c = max(1, round(f·H)) centre rows (Python's ``round``, half to even;
      for f = 0.08 no exact halves occur), n = max(n_c, ⌊H / R⌋) rows in all
      (``int(H // R)``);
    * centre: the n_c rows with the lowest |k_y|, k_y =
      ``torch.fft.fftfreq(H)``, i.e. the first n_c of
      ``torch.argsort(fftfreq(H).abs(), stable=True)`` (ties ±k_y broken by
      the stable sort: the positive frequency, with the lower index, first);
    * random: the other H − n_c rows in increasing index order are permuted
      by ``torch.randperm(H − n_c, generator=…)`` and the first n − n_c
      taken (uniform without replacement; no random numbers are drawn when
      n = n_c).

Data
    y = m ∘ (k + σ (n₁ + i n₂)/√2),    n₁, n₂ ~ N(0, I) (H × W each),

    σ = s · std(x), with std the Bessel-corrected (unbiased, torch's default)
    standard deviation over the H·W pixels of that sample's clean real x, and
    s ≥ 0 the noise scale. So each sampled entry has complex noise of
    variance E|ε|² = σ², each real component σ²/2; unsampled entries are
    exactly 0. Equivalently y = A(image) + m ∘ ε with A = ``MaskedFFT(m)``
    (A x = m ∘ F x), the forward operator these data belong to.

Random draws
    For sample b = 0, 1, … in order, from one generator: the mask's
    ``randperm``, then ``torch.rand(5)`` for c, then ``torch.randn(2, H, W)``
    for (n₁, n₂). All are drawn in float32 on the generator's device (on the
    image's device with the global generator when none is given) and then
    moved and converted, so the draws do not depend on the image's dtype, and
    the noise is drawn also for s = 0, so the masks and phases of a seed do
    not depend on s. A batch therefore equals its samples simulated one
    after another with the same generator.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import torch

from tvfast.physics.operators import MaskedFFT

__all__ = ["row_mask", "row_counts", "smooth_phase", "draw_phase_coefficients", "simulate_mri", "SimulatedMRI"]


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return value


def _check_acceleration(acceleration) -> float:
    if isinstance(acceleration, bool) or not isinstance(acceleration, Real) or not math.isfinite(acceleration) \
            or acceleration < 1:
        raise ValueError(f"acceleration: expected a finite real number >= 1, got {acceleration!r}")
    return acceleration


def _check_centre_fraction(centre_fraction) -> float:
    if isinstance(centre_fraction, bool) or not isinstance(centre_fraction, Real) \
            or not 0 < centre_fraction <= 1:
        raise ValueError(f"centre_fraction: expected a real number in (0, 1], got {centre_fraction!r}")
    return float(centre_fraction)


def _draw_device(generator: torch.Generator | None, device) -> torch.device:
    """Where random numbers are drawn: on the generator's device, else on ``device`` (CPU by default)."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


# ---------------------------------------------------------------------------
# mask
# ---------------------------------------------------------------------------

def row_counts(height: int, acceleration: float = 4, centre_fraction: float = 0.08) -> tuple[int, int]:
    """(n_c, n): the centre rows and all sampled rows of :func:`row_mask`.

    n_c = max(1, round(f·H)) (Python's ``round``) and n = max(n_c, ⌊H / R⌋).
    """
    height = _check_size(height, "height")
    acceleration = _check_acceleration(acceleration)
    centre_fraction = _check_centre_fraction(centre_fraction)
    n_centre = max(1, round(centre_fraction * height))
    return n_centre, max(n_centre, int(height // acceleration))


def row_mask(height: int, acceleration: float = 4, centre_fraction: float = 0.08, *,
             generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    r"""A random Cartesian row mask of shape (H, 1), float32, values 0/1.

    Row r is sampled (m[r, 0] = 1) when it is one of the n_c = max(1,
    round(f·H)) rows of lowest |k_y| (``torch.fft.fftfreq(H).abs()``, ties
    broken by a stable sort) or one of the n − n_c rows drawn uniformly
    without replacement from the others, n = max(n_c, ⌊H / R⌋) (see the
    module docstring for the exact draw). Exactly n rows are sampled; the
    mask broadcasts to k-space of shape (…, H, W), the same lines in every
    column.

    Parameters
    ----------
    height : int
        H, the number of rows (phase-encode lines), ≥ 1.
    acceleration : float
        R ≥ 1; about H / R rows are sampled.
    centre_fraction : float
        f ∈ (0, 1], the fraction of fully sampled low-frequency rows.
    generator : torch.Generator, optional
        Source of the random rows; the global generator of ``device`` when None.
    device : torch.device or str, optional
        Device of the returned mask (CPU by default).
    """
    _check_generator(generator)
    n_centre, n_total = row_counts(height, acceleration, centre_fraction)
    by_frequency = torch.argsort(torch.fft.fftfreq(height, dtype=torch.float64).abs(), stable=True)
    sampled = torch.zeros(height, dtype=torch.bool)
    sampled[by_frequency[:n_centre]] = True
    n_random = n_total - n_centre
    if n_random > 0:
        others = torch.nonzero(~sampled).flatten()  # increasing index order
        order = torch.randperm(others.numel(), generator=generator, device=_draw_device(generator, device))
        sampled[others[order[:n_random].cpu()]] = True
    return sampled.to(device=device, dtype=torch.float32).reshape(height, 1)


# ---------------------------------------------------------------------------
# phase
# ---------------------------------------------------------------------------

def draw_phase_coefficients(count: int | None = None, *, generator: torch.Generator | None = None,
                            device=None) -> torch.Tensor:
    """Coefficients c ~ U[−0.5, 0.5)⁵ of :func:`smooth_phase`, as ``torch.rand(…, 5) − 0.5`` in float32.

    Returns shape (5,) when ``count`` is None, else (count, 5). Drawn on the
    generator's device (else on ``device``, CPU by default) and returned on
    ``device`` (the generator's device when None).
    """
    _check_generator(generator)
    shape = (5,) if count is None else (_check_size(count, "count"), 5)
    draw_device = _draw_device(generator, device)
    c = torch.rand(shape, generator=generator, dtype=torch.float32, device=draw_device) - 0.5
    return c if device is None else c.to(device)


def smooth_phase(height: int, width: int, coefficients: torch.Tensor) -> torch.Tensor:
    r"""The smooth phase factor exp(iπ(c₁u + c₂v + c₃u² + c₄v² + c₅uv)) on an H × W grid.

    u = ``torch.linspace(-1, 1, H)`` runs along the rows and v =
    ``torch.linspace(-1, 1, W)`` along the columns. ``coefficients`` has
    shape (5,) → result (H, W), or (…, 5) → (…, H, W), one phase per leading
    index. Computed in the coefficients' precision (float64 → complex128,
    other real dtypes → complex64) on their device; |result| = 1 to rounding.
    """
    height = _check_size(height, "height")
    width = _check_size(width, "width")
    if not isinstance(coefficients, torch.Tensor):
        raise TypeError(f"coefficients: expected a torch.Tensor of shape (..., 5), got {type(coefficients).__name__}")
    if coefficients.is_complex() or not coefficients.is_floating_point():
        raise TypeError(f"coefficients: expected a real floating-point tensor, got {coefficients.dtype}")
    if coefficients.dim() < 1 or coefficients.shape[-1] != 5:
        raise ValueError(f"coefficients: expected shape (..., 5), got {tuple(coefficients.shape)}")
    dtype = torch.float64 if coefficients.dtype == torch.float64 else torch.float32
    c = coefficients.to(dtype)[..., None, None, :]  # (..., 1, 1, 5)
    u = torch.linspace(-1, 1, height, dtype=dtype, device=c.device)[:, None]
    v = torch.linspace(-1, 1, width, dtype=dtype, device=c.device)[None, :]
    angle = math.pi * (c[..., 0] * u + c[..., 1] * v + c[..., 2] * u**2 + c[..., 3] * v**2 + c[..., 4] * u * v)
    return torch.polar(torch.ones_like(angle), angle)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

class SimulatedMRI(NamedTuple):
    """Result of :func:`simulate_mri` for a batch of B clean images (B, 1, H, W).

    y : (B, 1, H, W) complex
        Undersampled noisy k-space, y = m ∘ (F(image) + ε), FFT order.
    mask : (B, 1, H, 1) float32
        The 0/1 row mask of each sample.
    image : (B, 1, H, W) complex
        The clean complex image x · exp(iφ), the ground truth of the reconstruction.
    sigma : (B,) real
        σ = s · std(x) of each sample (E|ε|² = σ² per k-space entry).
    coefficients : (B, 5) float32
        The phase coefficients c of each sample.
    """

    y: torch.Tensor
    mask: torch.Tensor
    image: torch.Tensor
    sigma: torch.Tensor
    coefficients: torch.Tensor

    def operator(self) -> MaskedFFT:
        """The forward operator A = ``MaskedFFT(mask)``: y = A(image) + m ∘ ε."""
        return MaskedFFT(self.mask)


def _check_clean(clean) -> torch.Tensor:
    if not isinstance(clean, torch.Tensor):
        raise TypeError(f"clean: expected a torch.Tensor of shape (B, 1, H, W), got {type(clean).__name__}")
    if clean.is_complex() or not clean.is_floating_point():
        raise TypeError(f"clean: expected a real floating-point tensor (the MRI images are made complex "
                        f"here), got {clean.dtype}")
    if clean.dim() != 4 or clean.shape[1] != 1 or clean.shape[0] < 1:
        raise ValueError(f"clean: expected shape (B, 1, H, W) with B >= 1, got {tuple(clean.shape)}")
    if clean.shape[-2] * clean.shape[-1] < 2:
        raise ValueError(f"clean: expected at least 2 pixels per image (for its standard deviation), "
                         f"got H × W = {clean.shape[-2]} × {clean.shape[-1]}")
    with torch.no_grad():
        if not bool(torch.isfinite(clean).all()):
            raise ValueError("clean: expected finite values, got NaN or inf")
        if bool((clean < 0).any()) or bool((clean > 1).any()):
            raise ValueError(f"clean: expected values in [0, 1], got the range "
                             f"[{float(clean.min()):.6g}, {float(clean.max()):.6g}]")
    return clean


def _check_noise_scale(noise_scale, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The noise scale s as a (B,) tensor."""
    if isinstance(noise_scale, torch.Tensor):
        if noise_scale.is_complex() or noise_scale.dtype == torch.bool:
            raise TypeError(f"noise_scale: expected a real tensor, got {noise_scale.dtype}")
        if noise_scale.dim() == 0:
            noise_scale = noise_scale.reshape(1).expand(batch)
        elif noise_scale.shape != (batch,):
            raise ValueError(f"noise_scale: expected a number or a tensor of shape () or (B,) = ({batch},), "
                             f"got shape {tuple(noise_scale.shape)}")
        s = noise_scale.detach().to(device=device, dtype=dtype)
    elif isinstance(noise_scale, Real) and not isinstance(noise_scale, bool):
        s = torch.full((batch,), float(noise_scale), dtype=dtype, device=device)
    else:
        raise TypeError(f"noise_scale: expected a real number or a tensor of shape (B,), "
                        f"got {type(noise_scale).__name__}")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"noise_scale: expected finite values >= 0, got {s.tolist()}")
    return s


def simulate_mri(clean: torch.Tensor, noise_scale, *, acceleration: float = 4, centre_fraction: float = 0.08,
                 generator: torch.Generator | None = None) -> SimulatedMRI:
    r"""Simulate single-coil Cartesian MRI data from real images (definition in the module docstring).

    For each sample b: image_b = x_b · exp(iφ_b) with its own phase
    coefficients, m_b a :func:`row_mask` of its own, and

        y_b = m_b ∘ (F(image_b) + σ_b (n₁ + i n₂)/√2),    σ_b = s_b · std(x_b),

    F = ``torch.fft.fft2(·, norm="ortho")``, std unbiased over the H·W pixels.
    Hence ``y == MaskedFFT(mask)(image)`` exactly when s = 0, and in general
    y − A(image) is complex Gaussian noise of variance σ_b² (σ_b²/2 per real
    component) on the sampled entries and 0 elsewhere; A =
    ``result.operator()`` = ``MaskedFFT(result.mask)``.

    Parameters
    ----------
    clean : torch.Tensor
        (B, 1, H, W) real images with values in [0, 1], H·W ≥ 2. float64
        gives complex128 data; other floating dtypes are computed in float32
        (complex64 data).
    noise_scale : float or torch.Tensor
        s ≥ 0, one for all samples, or a (B,) tensor with one per sample.
    acceleration : float
        R ≥ 1 of :func:`row_mask` (⌊H / R⌋ rows sampled, at least the centre).
    centre_fraction : float
        f ∈ (0, 1] of :func:`row_mask`.
    generator : torch.Generator, optional
        The one source of masks, phases and noise (drawn per sample in that
        order, see the module docstring); the global generator of ``clean``'s
        device when None.

    Returns
    -------
    SimulatedMRI
        ``(y, mask, image, sigma, coefficients)`` with y and image (B, 1, H, W)
        complex, mask (B, 1, H, 1) float32, sigma (B,) and coefficients (B, 5).
    """
    clean = _check_clean(clean)
    _check_generator(generator)
    acceleration = _check_acceleration(acceleration)
    centre_fraction = _check_centre_fraction(centre_fraction)
    batch, _, height, width = clean.shape
    device = clean.device
    real = torch.float64 if clean.dtype == torch.float64 else torch.float32
    complex_dtype = torch.complex128 if real == torch.float64 else torch.complex64
    s = _check_noise_scale(noise_scale, batch, real, device)
    x = clean.to(real)

    draw_device = generator.device if generator is not None else device
    masks, coefficients, noises = [], [], []
    for _ in range(batch):
        masks.append(row_mask(height, acceleration, centre_fraction, generator=generator, device=draw_device))
        coefficients.append(draw_phase_coefficients(generator=generator, device=draw_device))
        noises.append(torch.randn((2, height, width), generator=generator, dtype=torch.float32, device=draw_device))
    mask = torch.stack(masks).to(device).reshape(batch, 1, height, 1)
    coefficients = torch.stack(coefficients).to(device)
    noise = torch.stack(noises).to(device=device, dtype=real)  # (B, 2, H, W)

    image = x.to(complex_dtype) * smooth_phase(height, width, coefficients.to(real))[:, None]
    sigma = s * x.std(dim=(-3, -2, -1))
    epsilon = (sigma / math.sqrt(2)).reshape(batch, 1, 1, 1) * torch.complex(noise[:, :1], noise[:, 1:])
    k = torch.fft.fft2(image, norm="ortho")
    y = (k + epsilon) * mask.to(complex_dtype)
    return SimulatedMRI(y=y, mask=mask, image=image, sigma=sigma, coefficients=coefficients)
