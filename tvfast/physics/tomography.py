r"""Sparse-view parallel-beam CT: the 2-D X-ray transform as a sparse matrix, FBP, simulated data.

Geometry
--------
An image x of shape (H, W) is a grid of unit square pixels of constant
value. Pixel (i, j) (row i, column j) is centred at

    (u, v) = (j − (W − 1)/2,  (H − 1)/2 − i),

so u points right along a row, v points up, and the origin is the image
centre. View j looks along the angle θ_j = j·π/V, j = 0, …, V − 1
(V = ``n_views``, half a turn without a duplicate endpoint); a point
(u, v) lies on the detector position

    t = u cos θ + v sin θ.

The detector has D unit-spaced bins of width 1 centred on t = 0: bin k
covers [k − D/2, k − D/2 + 1). The default D is ⌈√(H² + W²)⌉, increased by
one when even (so that one bin is centred on the rotation centre): every
pixel lies within the distance √(H² + W²)/2 of the centre, so every ray
through the image hits the detector. A smaller D drops what falls outside.

Discretisation (exact strip integrals)
--------------------------------------
The line integral of one pixel of value 1 along the rays of angle θ, as a
function of t, is a trapezoid of unit area: the convolution of two boxes
of widths |cos θ| and |sin θ| centred on the pixel's t. Bin k receives
the integral of that trapezoid over the bin,

    A[(θ, k), p] = ∫_{bin k} footprint_p,θ(t) dt,

so (A x)[θ, k] is the line integral through the pixelated image averaged
over the width of bin k, in pixel lengths — exact for the piecewise-constant
image, not an interpolation of it (the trapezoid is the footprint of the
separable-footprint projectors of Long, Fessler and Balter, exact for square
pixels in 2-D parallel beam). Each pixel touches two or three bins per view
(about 2.3 on average), its weights sum to 1, and so the total of every view
is the total of the image. Unlike pixel-driven splatting (each pixel centre
split linearly between two bins) the projections of a smooth image have no
ripple where the pixel centres project more densely than the bins.

Aᵀ is the exact transpose (the matching back-projection). Both are stored
as torch sparse CSR matrices with int32 indices, A of shape (V·D, H·W) and
Aᵀ of shape (H·W, V·D) (a product with the transpose of a CSR matrix is
slow); a batch of images is applied as the columns of one (H·W, B) matrix.

Normalisation
-------------
For an image of side N, ‖A‖ grows like √(V·N) (86.1 for N = 128 and 121.8
for N = 256, with 60 views). PDHG's step sizes τ = σ = s/√(‖A‖² + 8) are
then set by the data term alone and the TV part moves slowly; with ``normalize=True`` (the default) both
matrices are multiplied by ``scale`` = 1/‖A‖, ‖A‖ estimated once by power
iteration on the built matrix, so that the operator has norm 1 (to the
accuracy of the power iteration). With ``normalize=False`` the values are
the strip integrals above and ``scale`` is 1.

Filtered back-projection
------------------------
:meth:`ParallelBeam.fbp` inverts the continuous transform, f(u, v) =
∫₀^π (p_θ ∗ h)(u cos θ + v sin θ) dθ with the ramp filter ĥ(ω) = |ω|,
discretised as (π/V)·Aᵀ(h ∗ p): h is the band-limited Ram–Lak kernel
h[0] = 1/4, h[n] = −1/(π² n²) for odd n, 0 for even n ≠ 0 (or the
Shepp–Logan kernel h[n] = −2/(π²(4n² − 1))), applied by FFT along the
detector axis with zero padding to at least 2D − 1 (no wrap-around).
Defining the kernel in space (not as |ω| sampled on the FFT grid) keeps
the mean right. With ``normalize=True`` the data are scale·p and the
back-projection carries another factor of scale, so ``fbp`` divides by
scale².
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from tvfast.physics.linear import LinearOperator

__all__ = ["ParallelBeam", "simulate_ct"]

_DTYPES = (torch.float32, torch.float64)
_FILTERS = ("ram-lak", "shepp-logan")
_ENTRIES_PER_CHUNK = 1 << 20  # pixel-view-bin triples computed at once while building (bounds the build's memory)
_POWER_ITERATIONS = 500
_POWER_RTOL = 1e-9


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value}")
    return int(value)


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, (tuple, list, torch.Size)):
        if len(image_size) != 2:
            raise ValueError(f"image_size: expected an int N or a pair (H, W), got {tuple(image_size)!r}")
        return _positive_int(image_size[0], "image_size"), _positive_int(image_size[1], "image_size")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise TypeError(f"image_size: expected an int N or a pair (H, W), got {type(image_size).__name__}")
    size = _positive_int(image_size, "image_size")
    return size, size


def _real_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name}: expected a real float32 or float64 tensor, got {t.dtype}")
    return t


def _footprint_cdf(u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CDF at u of the trapezoid box(a) ∗ box(b) (a ≥ b ≥ 0, a > 0), a unit-area density centred on 0.

    With c₁ = (a − b)/2 and c₂ = (a + b)/2, for 0 ≤ u: G(u) = m/a − d²/(2ab),
    m = min(u, c₂), d = max(m − c₁, 0) (so d ≤ b and d²/b → 0 as b → 0), and
    F(u) = 1/2 + sign(u)·G(|u|).
    """
    c1 = (a - b) / 2
    c2 = (a + b) / 2
    m = torch.minimum(u.abs(), c2)
    d = (m - c1).clamp_min(0)
    g = m / a - d * (d / b.clamp_min(1e-300)) / (2 * a)
    return 0.5 + torch.sign(u) * g


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _build(height: int, width: int, n_views: int, n_detectors: int):
    """Aᵀ and A (float64, CPU, int32 indices) of the strip-integral model, unnormalised."""
    n_pixels = height * width
    n_rows = n_views * n_detectors
    if max(n_rows, n_pixels) >= 2**31 - 1:
        raise ValueError(f"image_size, n_views, n_detectors: {n_pixels} pixels and {n_rows} detector readings "
                         "exceed the int32 indices of the sparse matrices")
    f64 = torch.float64
    theta = torch.arange(n_views, dtype=f64) * (math.pi / n_views)
    cos, sin = torch.cos(theta), torch.sin(theta)
    a = torch.maximum(cos.abs(), sin.abs())  # in [1/√2, 1]
    b = torch.minimum(cos.abs(), sin.abs())
    half_width = (a + b) / 2
    u = torch.arange(width, dtype=f64) - (width - 1) / 2
    v = (height - 1) / 2 - torch.arange(height, dtype=f64)
    view_offset = torch.arange(n_views, dtype=f64) * n_detectors

    cols, values, counts = [], [], []
    chunk = max(1, _ENTRIES_PER_CHUNK // (3 * n_views))
    for start in range(0, n_pixels, chunk):  # pixels in row-major order: the rows of Aᵀ come out sorted
        p = torch.arange(start, min(start + chunk, n_pixels))
        t = u[p % width, None] * cos + v[p // width, None] * sin  # (pixels, views)
        first = torch.floor(t - half_width + n_detectors / 2)  # the bin of the footprint's left end
        # a footprint ≤ √2 wide covers ≤ 3 bins: their 4 edges, relative to the pixel's t
        edges = (first - n_detectors / 2 - t)[..., None] + torch.arange(4, dtype=f64)
        w = _footprint_cdf(edges, a[:, None], b[:, None]).diff(dim=-1)  # (pixels, views, 3)
        k = first[..., None] + torch.arange(3, dtype=f64)
        keep = (w > 1e-14) & (k >= 0) & (k < n_detectors)
        cols.append((k + view_offset[:, None])[keep].to(torch.int32))  # increasing along (view, bin) per pixel
        values.append(w[keep])
        counts.append(keep.reshape(keep.shape[0], -1).sum(1))
    col_t32 = torch.cat(cols)
    val_t = torch.cat(values)
    crow_t = torch.zeros(n_pixels + 1, dtype=torch.int64)
    torch.cumsum(torch.cat(counts), 0, out=crow_t[1:])
    if crow_t[-1] >= 2**31 - 1:
        raise ValueError(f"image_size, n_views: {int(crow_t[-1])} non-zero weights exceed the int32 indices "
                         "of the sparse matrices")

    # A = (Aᵀ)ᵀ: order the entries by their row of A (stable, so the pixels stay sorted within a row)
    row_of_t = torch.repeat_interleave(torch.arange(n_pixels, dtype=torch.int32), crow_t.diff())
    order = torch.argsort(col_t32, stable=True)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(col_t32, minlength=n_rows), 0, out=crow[1:])
    matrix = _csr(crow.to(torch.int32), row_of_t.index_select(0, order), val_t.index_select(0, order),
                  (n_rows, n_pixels))
    transpose = _csr(crow_t.to(torch.int32), col_t32, val_t, (n_pixels, n_rows))
    return matrix, transpose


def _power_norm(matrix: torch.Tensor, transpose: torch.Tensor) -> float:
    """‖A‖ by power iteration on AᵀA from the constant image (A ≥ 0: the top singular vector is ≥ 0)."""
    x = torch.ones(matrix.shape[1], 1, dtype=matrix.dtype)
    x /= x.norm()
    estimate = 0.0
    for _ in range(_POWER_ITERATIONS):
        ax = matrix @ x
        new_estimate = float(ax.square().sum())
        w = transpose @ ax
        w_norm = float(w.norm())
        converged = abs(new_estimate - estimate) <= _POWER_RTOL * new_estimate
        estimate = new_estimate
        if w_norm == 0.0 or converged:
            break
        x = w / w_norm
    return math.sqrt(estimate)


class _SparseProduct(torch.autograd.Function):
    """M @ X for a sparse CSR M, differentiable in X with Mᵀ (given as its own CSR matrix) in the backward."""

    @staticmethod
    def forward(ctx, x, matrix, transpose):
        ctx.matrices = (matrix, transpose)
        return matrix @ x

    @staticmethod
    def backward(ctx, grad):
        matrix, transpose = ctx.matrices
        return _SparseProduct.apply(grad.contiguous(), transpose, matrix), None, None


def _product(x: torch.Tensor, matrix: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
    """matrix @ x over the last axis of x, for any leading axes (flattened into the columns of one product)."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    columns = flat.t().contiguous()  # (n, B); a copy only for B > 1
    if torch.is_grad_enabled() and x.requires_grad:
        out = _SparseProduct.apply(columns, matrix, transpose)
    else:
        out = matrix @ columns
    return out.t().reshape(*lead, matrix.shape[0])


class ParallelBeam(LinearOperator):
    r"""2-D parallel-beam X-ray transform (sparse-view CT): A x = sinogram, Aᵀ y = back-projection.

    A maps real images (…, H, W) to sinograms (…, n_views, n_detectors),
    any leading batch/channel axes, float32 or float64, on any device (the
    result has the input's dtype and device). Row (θ_j, k) of A holds, for
    every pixel, the integral over detector bin k of the pixel's trapezoid
    footprint at angle θ_j = j·π/n_views (exact strip integrals of the
    pixelated image; geometry and maths in the module docstring). Aᵀ is its
    exact transpose.

    Parameters
    ----------
    image_size : int or (int, int)
        N for N × N images, or (H, W).
    n_views : int
        Number of angles V, equally spaced over [0, π).
    n_detectors : int or None
        Number of unit-width detector bins D centred on the image centre.
        None: ⌈√(H² + W²)⌉, plus one if even (every ray through the image is
        caught and one bin is centred on the rotation centre).
    normalize : bool
        Scale A (and Aᵀ) by ``scale`` = 1/‖A‖ (‖A‖ by power iteration on
        the built matrix, from the constant image to a relative change below
        1e-9) so that ‖A‖ = 1 and PDHG's steps τ = σ = s/√(‖A‖² + 8) stay
        balanced between the data term and TV. False: ``scale`` = 1 and the
        values are line integrals in pixel lengths.

    The matrices are built once, in float64 on the CPU (a fraction of a
    second at 128², about two seconds at 256² with 60 views), with about
    2.3·H·W·V non-zeros each; copies for other dtypes and devices are
    made on first use and kept (``A`` and ``Aᵀ``: 8 bytes per non-zero in
    float32 on a GPU, the CPU copies share the int32 indices of the float64
    ones). ``matrix`` and ``transpose`` are the float64 CPU matrices,
    including ``scale``.

    Products with a tensor that requires grad are differentiable (the
    backward of A is Aᵀ and vice versa).
    """

    def __init__(self, image_size, n_views: int = 60, n_detectors: int | None = None, *, normalize: bool = True):
        height, width = _image_size(image_size)
        n_views = _positive_int(n_views, "n_views")
        if n_detectors is None:
            n_detectors = math.ceil(math.sqrt(height * height + width * width) - 1e-9)
            n_detectors += 1 - n_detectors % 2
        else:
            n_detectors = _positive_int(n_detectors, "n_detectors")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize: expected True or False, got {type(normalize).__name__}")
        self.image_size = (height, width)
        self.n_views = n_views
        self.n_detectors = n_detectors
        self.normalize = normalize
        self.angles = torch.arange(n_views, dtype=torch.float64) * (math.pi / n_views)
        matrix, transpose = _build(height, width, n_views, n_detectors)
        self.scale = 1.0
        if normalize:
            norm = _power_norm(matrix, transpose)
            if norm > 0:
                self.scale = 1.0 / norm
                matrix.values().mul_(self.scale)
                transpose.values().mul_(self.scale)
        self.matrix, self.transpose = matrix, transpose
        self._matrices: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {
            (torch.device("cpu"), torch.float64): (matrix, transpose)
        }
        self._filters: dict[tuple, torch.Tensor] = {}
        super().__init__(self._apply, self._apply_adjoint)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """(n_views, n_detectors): the last two axes of A x."""
        return self.n_views, self.n_detectors

    def _matrices_for(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (t.device, t.dtype)
        if key not in self._matrices:
            pair = []
            for m in (self.matrix, self.transpose):
                crow, col = m.crow_indices(), m.col_indices()
                if t.device != crow.device:
                    crow, col = crow.to(t.device), col.to(t.device)
                pair.append(_csr(crow, col, m.values().to(device=t.device, dtype=t.dtype), tuple(m.shape)))
            self._matrices[key] = (pair[0], pair[1])
        return self._matrices[key]

    def _check(self, t, name: str, tail: tuple[int, int], what: str) -> torch.Tensor:
        t = _real_tensor(t, name)
        if t.dim() < 2 or tuple(t.shape[-2:]) != tail:
            raise ValueError(f"{name}: expected {what} of shape (..., {tail[0]}, {tail[1]}), "
                             f"got shape {tuple(t.shape)}")
        return t

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x, "x", self.image_size, "images")
        matrix, transpose = self._matrices_for(x)
        height, width = self.image_size
        out = _product(x.reshape(*x.shape[:-2], height * width), matrix, transpose)
        return out.reshape(*x.shape[:-2], self.n_views, self.n_detectors)

    def _apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        y = self._check(y, "y", self.sinogram_shape, "sinograms")
        matrix, transpose = self._matrices_for(y)
        out = _product(y.reshape(*y.shape[:-2], self.n_views * self.n_detectors), transpose, matrix)
        return out.reshape(*y.shape[:-2], *self.image_size)

    def _ramp(self, length: int, kind: str, t: torch.Tensor) -> torch.Tensor:
        """rfft of the spatial ramp kernel h (circular, ``length`` samples), real, in t's dtype and device."""
        key = (length, kind, t.device, t.dtype)
        if key not in self._filters:
            n = torch.arange(length, dtype=torch.float64)
            n = torch.where(n <= length // 2, n, n - length)
            if kind == "ram-lak":
                h = torch.where(n.remainder(2) == 1, -1.0 / (math.pi**2 * n.square().clamp_min(1)),
                                torch.zeros_like(n))
                h[0] = 0.25
            else:
                h = -2.0 / (math.pi**2 * (4 * n.square() - 1))
            self._filters[key] = torch.fft.rfft(h).real.to(device=t.device, dtype=t.dtype)
        return self._filters[key]

    def fbp(self, sinogram: torch.Tensor, *, filter: str = "ram-lak") -> torch.Tensor:
        r"""Filtered back-projection: images (…, H, W) from sinograms (…, n_views, n_detectors).

        (π/V)/scale² · Aᵀ(h ∗ y), h the Ram–Lak (``filter="ram-lak"``) or
        Shepp–Logan (``"shepp-logan"``, less noise, slightly smoother)
        ramp kernel along the detector axis, applied by FFT with zero
        padding to at least 2·n_detectors − 1 (module docstring). For the
        operator as built (``normalize`` either way) ``fbp(A x) ≈ x`` for a
        smooth x, with the streaks of few views; a start for PDHG
        (``x0=``), not a reconstruction.
        """
        y = self._check(sinogram, "sinogram", self.sinogram_shape, "sinograms")
        if filter not in _FILTERS:
            raise ValueError(f"filter: expected one of {_FILTERS}, got {filter!r}")
        length = max(64, 1 << (2 * self.n_detectors - 1).bit_length())
        spectrum = torch.fft.rfft(y, n=length, dim=-1) * self._ramp(length, filter, y)
        filtered = torch.fft.irfft(spectrum, n=length, dim=-1)[..., : self.n_detectors]
        return self.adjoint(filtered) * (math.pi / (self.n_views * self.scale**2))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(image_size={self.image_size}, n_views={self.n_views}, "
                f"n_detectors={self.n_detectors}, normalize={self.normalize})")


def _noise_level(level, batch: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(level, torch.Tensor):
        if level.is_complex() or level.dtype == torch.bool:
            raise TypeError(f"noise_level: expected a real number or tensor, got {level.dtype}")
        if level.dim() == 0:
            pass
        elif level.dim() == 1 and level.shape[0] == batch:
            level = level.reshape(batch, 1, 1, 1)
        else:
            raise ValueError(f"noise_level: expected a number, a 0-d tensor or shape ({batch},), "
                             f"got shape {tuple(level.shape)}")
        level = level.detach().to(device=like.device, dtype=like.dtype)
    elif isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise TypeError(f"noise_level: expected a non-negative number, got {type(level).__name__}")
    else:
        level = torch.tensor(float(level), dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(level).all()) or bool((level < 0).any()):
        raise ValueError(f"noise_level: expected finite values >= 0, got {level.tolist()}")
    return level


def simulate_ct(clean: torch.Tensor, noise_level, *, operator: ParallelBeam | None = None, n_views: int = 60,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, ParallelBeam]:
    r"""Noisy sparse-view sinograms of clean images: y = A x + s · std(A x) · n, and the operator A.

    ``clean`` x: (B, 1, H, W), float32 or float64, values in [0, 1].
    ``noise_level`` s ≥ 0: a number, or per sample (B,). The noise is
    relative to each sample's noiseless sinogram: std(A x) is the sample
    standard deviation (Bessel-corrected, as :func:`torch.std`) of A x over
    all its views and bins, per sample; n is standard normal, drawn from
    ``generator`` (on the generator's device, then moved to x's) or the
    global generator. ``operator``: a :class:`ParallelBeam` for (H, W)
    images; None builds ``ParallelBeam((H, W), n_views)`` (normalised;
    ``n_views`` is used only then). Returns (y (B, 1, n_views,
    n_detectors) in x's dtype and device, A).
    """
    if not isinstance(clean, torch.Tensor):
        raise TypeError(f"clean: expected a torch.Tensor, got {type(clean).__name__}")
    if clean.dtype not in _DTYPES:
        raise TypeError(f"clean: expected a real float32 or float64 tensor, got {clean.dtype}")
    if clean.dim() != 4 or clean.shape[1] != 1 or clean.shape[0] < 1:
        raise ValueError(f"clean: expected images (B, 1, H, W), got shape {tuple(clean.shape)}")
    with torch.no_grad():
        if not bool(torch.isfinite(clean).all()) or bool((clean < 0).any()) or bool((clean > 1).any()):
            raise ValueError("clean: expected finite values in [0, 1]")
    level = _noise_level(noise_level, clean.shape[0], clean)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    if operator is None:
        operator = ParallelBeam(tuple(clean.shape[-2:]), _positive_int(n_views, "n_views"))
    elif not isinstance(operator, ParallelBeam):
        raise TypeError(f"operator: expected a ParallelBeam or None, got {type(operator).__name__}")
    elif operator.image_size != tuple(clean.shape[-2:]):
        raise ValueError(f"operator: built for images {operator.image_size}, got clean images of shape "
                         f"{tuple(clean.shape)}")
    sinogram = operator(clean)
    std = sinogram.std(dim=(1, 2, 3), keepdim=True) if sinogram[0].numel() > 1 else torch.zeros_like(sinogram)
    device = generator.device if generator is not None else clean.device
    noise = torch.randn(sinogram.shape, generator=generator, dtype=clean.dtype, device=device).to(clean.device)
    return sinogram + level * std * noise, operator
