"""How far two float32 computations of one quantity may differ: the error models of the golden/parity tests.

A golden file was made on one CPU; another CPU runs other kernels (MKL and oneDNN pick SSE, AVX2, AVX-512 or AMX
code, ATen its own vectorisation), which sum in another order and round sin, pow and log by another ulp. Every
bound here follows from float32's unit roundoff and the length of the reduction involved, never from the numbers
one CPU printed (docs/tolerances.md#error-model).
"""

from __future__ import annotations

import math

import numpy as np
import torch

U = 2.0**-24  # float32 unit roundoff
# Confidence factor of the probabilistic rounding bound (Higham & Mary, SIAM J. Sci. Comput. 2019): a sum of n
# rounded terms errs by at most LAMBDA * sqrt(n) * u * sum|terms| except with probability 2 exp(-LAMBDA^2 / 2),
# 3e-4 per value; the errors of different values share no sign, so a test over many values fails only when
# many values lie far out in that tail. The worst kernel path emulated (ATEN_CPU_CAPABILITY=default) uses 1.0.
LAMBDA = 4.0


def dot_product_error(abs_sums: torch.Tensor, length: int) -> torch.Tensor:
    """Bound on one float32 dot product's rounding error, given sum |x_i w_i| over its `length` terms."""
    return LAMBDA * math.sqrt(length) * U * abs_sums


def fft_error(frame_norms: torch.Tensor, length: int) -> torch.Tensor:
    """Bound on one DFT coefficient's float32 error from an FFT of `length` points, given the frames' L2 norms.

    An FFT has log2(n) butterfly stages, each adding relative error u to the whole spectrum (Higham, Accuracy and
    Stability of Numerical Algorithms, 2002, section 24.1): ||dX|| <= log2(n) u ||X|| = log2(n) u sqrt(n) ||x||,
    which spread over the n coefficients is log2(n) u ||x|| each; LAMBDA covers an unlucky coefficient."""
    return LAMBDA * math.log2(length) * U * frame_norms


def network_error(length: int, depth: int) -> float:
    """Bound on the relative L2 error of a float32 network whose widest reduction sums `length` terms.

    Each of `depth` layers adds a relative error of at most LAMBDA sqrt(length) u (dot_product_error over a
    well-scaled layer); to first order successive layers' errors add."""
    return LAMBDA * math.sqrt(length) * U * depth


def allowed_amplitude_difference(ours_db: np.ndarray, reference_db: np.ndarray, amplitude_error: np.ndarray) -> np.ndarray:
    """Per bin: twice one implementation's amplitude error, plus the float32 rounding of the dB values themselves."""
    own_rounding = 4 * U * np.maximum(np.abs(ours_db), np.abs(reference_db)) * math.log(10) / 20
    return 2 * np.asarray(amplitude_error, np.float64) + own_rounding * 10 ** (reference_db / 20)


def db_excess(ours_db: np.ndarray, reference_db: np.ndarray, amplitude_error: np.ndarray) -> np.ndarray:
    """Per bin: the magnitudes' difference as a fraction of the allowed difference (<= 1 where they agree)."""
    ours, reference = (np.asarray(values, np.float64) for values in (ours_db, reference_db))
    difference = np.abs(10 ** (ours / 20) - 10 ** (reference / 20))
    return difference / allowed_amplitude_difference(ours, reference, amplitude_error)


def assert_db_close(ours_db: np.ndarray, reference_db: np.ndarray, amplitude_error: np.ndarray) -> None:
    """Two power spectrograms in dB agree bin by bin up to two implementations' amplitude errors.

    Each implementation's complex amplitude errs by at most `amplitude_error` (per bin), so the magnitudes differ
    by at most twice that: a bin far above its rounding floor must agree to a small fraction of a dB, a bin below
    it may take any value under the floor. The dB values are float32 too: 4 u |dB| more for their own rounding."""
    ours, reference = (np.asarray(values, np.float64) for values in (ours_db, reference_db))
    allowed = allowed_amplitude_difference(ours, reference, amplitude_error)
    excess = db_excess(ours, reference, amplitude_error)
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    allowed_db = 20 * np.log10(1 + allowed[worst] / 10 ** (reference[worst] / 20))
    assert excess[worst] <= 1, (f"bin {worst}: {ours[worst]:.4f} dB against {reference[worst]:.4f} dB, "
                                f"{allowed_db:.2g} dB allowed there ({excess[worst]:.3g} times the bound)")


def relative_l2(ours: np.ndarray, reference: np.ndarray) -> float:
    """||ours - reference|| / ||reference||, in float64."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def assert_embedding_close(ours: np.ndarray, reference: np.ndarray, tolerance: float) -> None:
    """An embedding equals the reference's up to relative L2 error `tolerance`, so its cosine is >= 1 - tolerance^2 / 2."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    error = relative_l2(ours, reference)
    cosine = float(ours @ reference / (np.linalg.norm(ours) * np.linalg.norm(reference)))
    assert error <= tolerance, f"relative L2 error {error:.3g} > {tolerance:.3g} (cosine {cosine:.8f})"
    assert cosine >= 1 - tolerance**2 / 2, f"cosine {cosine:.8f} < {1 - tolerance**2 / 2:.8f}"


def perturbed_db(bands_db: torch.Tensor, amplitude_error: torch.Tensor, seed: int) -> torch.Tensor:
    """dB bands as another CPU may compute them: each bin's complex amplitude moved by up to twice its error bound,
    in a random direction (the floor of -180 dB is AudioCLIP's log floor)."""
    gen = torch.Generator().manual_seed(seed)
    radius = torch.rand(bands_db.shape, generator=gen, dtype=torch.float64).sqrt()
    angle = 2 * math.pi * torch.rand(bands_db.shape, generator=gen, dtype=torch.float64)
    amplitude = 10 ** (bands_db.double() / 20) + 2 * amplitude_error.double() * torch.polar(radius, angle)
    return (20 * torch.log10(amplitude.abs().clamp_min(1e-9))).float()


def as_float64(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """Any tensor (on any device, with or without grad) or array, as float64 numpy values for a comparison."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, np.float64)


def unit_roundoff(dtype: torch.dtype) -> float:
    """u of a floating dtype: 2^-24 for float32, 2^-53 for float64 (a float64 reference path is held to its own u)."""
    return float(torch.finfo(dtype).eps) / 2


def reduction_profile(network: torch.nn.Module) -> tuple[int, int]:
    """(widest reduction, weight layers) of a network: the `length` and `depth` network_error takes.

    A weight of shape [out, in, *kernel] sums in * prod(kernel) products per output. Every weight layer counts
    towards depth, parallel branches (toRGB, shortcuts, SE gates) too: no path crosses more layers than that, so
    the count can only overstate the error."""
    lengths = [math.prod(weight.shape[1:]) for name, weight in network.state_dict().items()
               if name.endswith("weight") and weight.dim() >= 2]
    return max(lengths), len(lengths)


def assert_relative_close(ours: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, tolerance: float, what: str = "") -> None:
    """Relative L2 error <= `tolerance`: the unit of network_error, for features, latents and embeddings alike."""
    error = relative_l2(as_float64(ours), as_float64(reference))
    assert error <= tolerance, f"{what} relative L2 error {error:.3g} > {tolerance:.3g} ({error / tolerance:.3g} times the bound)"


def psnr(ours: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the reference's own range (max - min)."""
    ours, reference = as_float64(ours), as_float64(reference)
    mse = np.mean((ours - reference) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(np.ptp(reference) ** 2 / mse))


def min_psnr(reference: torch.Tensor | np.ndarray, relative_error: float) -> float:
    """The PSNR an image keeps when it errs by `relative_error` in relative L2: its RMS error is relative_error times
    the reference's RMS, against the reference's range."""
    reference = as_float64(reference)
    return float(20 * np.log10(np.ptp(reference) / (relative_error * np.sqrt(np.mean(reference**2)))))


def assert_image_close(ours: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, relative_error: float, what: str = "") -> None:
    """An image agrees with the reference in PSNR up to what a relative L2 error of `relative_error` allows."""
    achieved, floor = psnr(ours, reference), min_psnr(reference, relative_error)
    assert achieved >= floor, f"{what} PSNR {achieved:.1f} dB < {floor:.1f} dB (relative L2 bound {relative_error:.3g})"


def parity_tolerance(network: torch.nn.Module) -> float:
    """Relative L2 difference two float32 implementations of `network` may show: each errs from the exact result by
    network_error of its reduction_profile, so they differ by at most twice that."""
    return 2 * network_error(*reduction_profile(network))
