"""Concrete forward operators: single-coil Cartesian MRI and periodic blur (docs/method.md §10).

Both are :class:`tvfast.physics.LinearOperator` subclasses with exact
adjoints (for the real inner product Re Σ conj(a)·b) and work on any
leading (batch, channel, frame) axes.
"""

from __future__ import annotations

import torch

from tvfast.physics.linear import LinearOperator

__all__ = ["MaskedFFT", "Blur"]


def _real_map(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype == torch.bool:
        t = t.to(torch.float32)
    if t.is_complex() or not t.is_floating_point():
        raise TypeError(f"{name}: expected a real (boolean or floating-point) tensor, got {t.dtype}")
    with torch.no_grad():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return t


def _masked(k: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """k ∘ weight, in place on k (a fresh transform) unless autograd records k or the product broadcasts."""
    if k.requires_grad or not _broadcasts_into(weight.shape, k.shape):
        return k * weight
    return k.mul_(weight)


def _broadcasts_into(small: torch.Size, big: torch.Size) -> bool:
    """Whether ``small`` broadcasts to exactly ``big`` (a Python check: torch.broadcast_shapes costs ~60 µs a call)."""
    return len(small) <= len(big) and all(s in (1, b) for s, b in zip(reversed(small), reversed(big)))


class MaskedFFT(LinearOperator):
    r"""Single-coil Cartesian MRI: A x = m ∘ F x, Aᴴ y = F⁻¹(m ∘ y).

    F is the unitary 2-D DFT over the last two axes (``torch.fft.fft2`` with
    ``norm="ortho"``), m a real sampling mask (0/1, or density weights) that
    broadcasts against the k-space shape (…, H, W): (H, W) for one pattern,
    (D, H, W) or (B, 1, D, H, W) for per-frame patterns of (x, y, t)
    sequences (B, 1, D, H, W). With a 0/1 mask, ‖A‖ = 1 (when m ≠ 0). Images
    are complex; a real image is transformed as one with zero imaginary part,
    and the adjoint returns a complex image.

    The normal operator AᴴA = F⁻¹ |m|² F (:meth:`~tvfast.physics.LinearOperator.gram`)
    needs only 1-D transforms when m is constant along one axis: for a mask
    of whole rows (shape (…, H, 1), the phase-encode lines of Cartesian
    MRI) the transforms along W cancel and AᴴA = F_H⁻¹ |m|² F_H, half the
    work of A followed by Aᴴ.
    """

    def __init__(self, mask: torch.Tensor):
        mask = _real_map(mask, "mask")
        if mask.dim() < 2:
            raise ValueError(f"mask: expected at least the two axes (H, W), got shape {tuple(mask.shape)}")
        self.mask = mask
        self._complex_masks: dict = {}
        self._weights: dict = {}
        # The axis of 1-D transforms in AᴴA: −2 when m is constant along W (whole rows), −1 when constant along H.
        with torch.no_grad():
            rows = mask.shape[-1] == 1 or bool((mask == mask[..., :1]).all())
            columns = not rows and (mask.shape[-2] == 1 or bool((mask == mask[..., :1, :]).all()))
        self._gram_axis = -2 if rows else -1 if columns else None
        super().__init__(self._apply, self._apply_adjoint, self._apply_gram)

    @property
    def gram_axis(self) -> int | None:
        """−2 for a mask of whole rows (1-D transforms along H in :meth:`gram`), −1 for whole columns, else None."""
        return self._gram_axis

    def _mask_for(self, t: torch.Tensor) -> torch.Tensor:
        """The mask as a complex tensor of ``t``'s precision and device (made once per dtype and device:
        a complex × complex product is several times faster here than a real mask promoted in every call)."""
        dtype = torch.complex128 if t.dtype in (torch.float64, torch.complex128) else torch.complex64
        key = (dtype, t.device)
        if key not in self._complex_masks:
            self._complex_masks[key] = self.mask.to(device=t.device, dtype=dtype)
        return self._complex_masks[key]

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.fft.fft2(x, norm="ortho")
        return _masked(k, self._mask_for(k))

    def _apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(self._mask_for(y) * y, norm="ortho")

    def _apply_gram(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.complex128 if x.dtype in (torch.float64, torch.complex128) else torch.complex64
        key = (dtype, x.device)
        dim = self._gram_axis
        if key not in self._weights:
            weight = self.mask.to(device=x.device, dtype=torch.float64).square()
            if dim is not None:  # one value per row (column): broadcast along the other axis
                weight = weight[..., :1] if dim == -2 else weight[..., :1, :]
            self._weights[key] = weight.to(dtype)
        weight = self._weights[key]
        if dim is not None:  # whole rows (or columns): 1-D transforms
            return torch.fft.ifft(_masked(torch.fft.fft(x, dim=dim, norm="ortho"), weight), dim=dim, norm="ortho")
        return torch.fft.ifft2(_masked(torch.fft.fft2(x, norm="ortho"), weight), norm="ortho")


class Blur(LinearOperator):
    r"""Periodic convolution with a real kernel over the last 2 (2-D kernel) or 3 (3-D kernel) axes.

    (A x)[i] = Σ_m k[m]·x[(i − m + c) mod N], with c = (size − 1) // 2 the
    kernel's centre along each axis (an odd symmetric kernel does not shift
    the image); Aᴴ is the correlation with the same kernel, i.e. the
    convolution with the flipped kernel. Computed with the FFT: A = F⁻¹ K̂ F
    and Aᴴ = F⁻¹ conj(K̂) F with K̂ the DFT of the kernel placed with its
    centre at index 0; ‖A‖ = max |K̂|. Real images stay real (``rfftn``),
    complex ones are blurred part by part. The kernel's DFT is kept per image
    shape.
    """

    def __init__(self, kernel: torch.Tensor):
        kernel = _real_map(kernel, "kernel")
        if kernel.dim() not in (2, 3):
            raise ValueError(f"kernel: expected a 2-D (kh, kw) or 3-D (kd, kh, kw) kernel, "
                             f"got shape {tuple(kernel.shape)}")
        self.kernel = kernel
        self._spectra: dict[tuple, torch.Tensor] = {}
        super().__init__(self._apply, self._apply_adjoint)

    def _spectrum(self, t: torch.Tensor) -> torch.Tensor:
        ndim = self.kernel.dim()
        size = tuple(t.shape[-ndim:])
        if t.dim() < ndim or any(k > n for k, n in zip(self.kernel.shape, size)):
            raise ValueError(f"kernel: shape {tuple(self.kernel.shape)} does not fit images of shape "
                             f"{tuple(t.shape)} (the last {ndim} axes must be at least as large)")
        real_dtype = torch.float64 if t.dtype in (torch.float64, torch.complex128) else torch.float32
        key = (size, real_dtype, t.device, t.is_complex())
        if key not in self._spectra:
            placed = torch.zeros(size, dtype=real_dtype, device=t.device)
            placed[tuple(slice(0, k) for k in self.kernel.shape)] = self.kernel.detach().to(placed)
            centre = tuple(-((k - 1) // 2) for k in self.kernel.shape)
            placed = torch.roll(placed, centre, dims=tuple(range(ndim)))
            dims = tuple(range(-ndim, 0))
            self._spectra[key] = torch.fft.fftn(placed, dim=dims) if t.is_complex() else torch.fft.rfftn(placed, dim=dims)
        return self._spectra[key]

    def _filter(self, x: torch.Tensor, conjugate: bool) -> torch.Tensor:
        spectrum = self._spectrum(x)
        if conjugate:
            spectrum = spectrum.conj()
        ndim = self.kernel.dim()
        dims = tuple(range(-ndim, 0))
        if x.is_complex():
            return torch.fft.ifftn(torch.fft.fftn(x, dim=dims) * spectrum, dim=dims)
        return torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * spectrum, s=x.shape[-ndim:], dim=dims)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._filter(x, conjugate=False)

    def _apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._filter(y, conjugate=True)
