"""Invisible, robust video watermark: streaming embedding per frame, detection over many frames.

Scheme (all numbers are the module constants below):

- **Where**: luma only. The same value is added to R, G and B, which changes Y by exactly that
  value and leaves Cb/Cr untouched. No perceptual masking: measured, moving energy into textured
  areas (amplitude ~ local contrast^0.5) cost 25 % of the per-chip SNR unattacked and about half
  of it after CRF 28 (the detector reads flat areas best, where texture does not mask the
  pattern), so the pattern is uniform and its strength is set by the PSNR budget.
- **What**: a tile of P x P = 26 x 26 *chips*, each +-1, rendered as smooth bumps (a chip-sized box
  blurred by a Gaussian of 0.45 chip), repeated over the whole frame from its top-left corner.
  The chip size is the frame's short side / 48, so the pattern scales with the frame: a
  downscaled video carries the same pattern at the same relative size. Its energy lies at periods
  of two chips and more (1/24 of the short side and longer): coarse enough for H.264 at CRF 28
  and a half-size downscale (chips of 2.3 px in a 112 px frame), fine enough that the host
  image's own low frequencies do not drown it (smaller chip counts, 32-40, measured worse).
  Amplitude: RMS 2.3 grey levels (PSNR about 40.9 dB).
- **Chips**: 160 pilot chips (key-derived signs; synchronisation) and 516 data chips carrying the
  258 channel bits of the coded payload twice each, at key-derived places, times a key-derived
  sign (payload.py: 64 bits + CRC-16, rate-1/3 convolutional code).
- **Detection**: per frame, a whitened residual (luma minus its Gaussian blur at 0.5 chip, divided
  by the local residual energy: flat areas count most, edges least) summed over the frames used
  (the watermark is static, so it adds up coherently while codec noise and motion do not). The sum
  is folded modulo the tile (4 bins per chip) for each candidate chip size, 0.97-1.20 x the nominal
  one in 0.5 % steps (a crop that keeps 85 % of the short side, a downscale by any factor, and
  padding by a few per cent), deconvolved into chip values (Wiener), and cross-correlated with the
  pilot by FFT, which finds the tile's phase (the crop offset) at a quarter-chip. The best peak's
  z-score (against the median/MAD of the correlation surface) is the detection statistic; the data
  chips at that phase give soft channel bits for the Viterbi decoder, and the CRC says whether the
  payload is valid.
- **Decision**: watermarked when z >= Z_DETECT (the watermark is there even if the payload is
  damaged), or when Z_DECODE <= z < Z_DETECT and the payload passes its CRC (a random word passes
  with probability 2^-16). The thresholds come from the null distribution of z measured on every
  clean clip of ../shared/data, with 20 random keys each (560 scores: mean 4.3, sd 0.33, max 5.6;
  the default key's 28: max 5.3): Z_DETECT lies 2.4 above the highest, and a Gumbel fit of the
  null puts a clean video's chance of reaching it at about 2e-6; about 3 % of null scores reach
  Z_DECODE, so a false payload also needs a CRC pass: about 4e-7 per video. z cannot much exceed
  sqrt(PILOT_CHIPS) ~ 12.6 (the data chips are noise to the pilot), so a strong watermark scores
  10-13. benchmarks/watermark_robustness.py measures all of this again.

`detect_frames` accepts any iterable of equally sized RGB frames; `detect_video` reads a file.
`fold_reference`, `render_pattern_reference` are slow plain versions of the vectorised cores,
kept for the tests.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from lokitalk.provenance.payload import (
    CODED_BITS,
    MESSAGE_BITS,
    PAYLOAD_BITS,
    Payload,
    check_message,
    conv_encode,
    encode_payload,
    viterbi_decode,
)

DEFAULT_KEY = b"lokitalk-watermark-v1"

CHIPS_PER_SHORT_SIDE = 48  # chip size = short side / 48
TILE = 26  # chips per tile side
PILOT_CHIPS = 160
DATA_CHIPS = TILE * TILE - PILOT_CHIPS  # 516 = 2 x 258 channel bits
REPEAT = DATA_CHIPS // CODED_BITS
CHIP_BLUR = 0.45  # Gaussian blur of the rendered chips, in chips
AMPLITUDE = 2.3  # RMS of the luma change, grey levels (PSNR ~ 40.8 dB)
RENDER_SAMPLES = 8  # samples per chip of the rendered tile that frames are interpolated from

WORK_SIZE = 320  # detection works at most at this short side (larger frames are area-downscaled)
MIN_SIZE = 64  # smaller frames carry no watermark
HIGHPASS = 0.5  # residual = luma - Gaussian(HIGHPASS chips)
ENERGY_BLUR = 0.4  # local residual energy: Gaussian(ENERGY_BLUR chips) of residual^2
ENERGY_FLOOR = 1.0  # grey levels^2 added to the local energy
BINS = 4  # fold bins per chip
WIENER = 0.4  # Wiener regularisation, relative to the peak of |H|^2
SCALES = tuple(np.round(np.arange(0.97, 1.2001, 0.005), 4))

Z_DECODE = 5.0  # z from which a payload with a valid CRC counts
Z_DETECT = 8.0  # z from which the watermark counts as present even without a valid payload

assert REPEAT * CODED_BITS == DATA_CHIPS


# --------------------------------------------------------------------------- key-derived layout


@dataclass(frozen=True)
class Layout:
    """Where the pilot and data chips are and their signs, all derived from the key."""

    pn: np.ndarray  # [TILE, TILE] +-1
    pilot: np.ndarray  # [TILE, TILE] bool
    data_index: np.ndarray  # [DATA_CHIPS] flat chip index of each data chip
    data_bit: np.ndarray  # [DATA_CHIPS] channel bit carried by each data chip

    def chip_signs(self, coded: np.ndarray) -> np.ndarray:
        """The +-1 tile for channel bits `coded` (0/1)."""
        signs = self.pn.copy()
        flat = signs.reshape(-1)
        flat[self.data_index] *= 2.0 * np.asarray(coded, dtype=np.float64)[self.data_bit] - 1.0
        return signs


def _key_bytes(key: bytes | str) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


@lru_cache(maxsize=16)
def _layout(key: bytes) -> Layout:
    seed = int.from_bytes(hashlib.sha256(b"lokitalk-wm-layout:" + key).digest()[:16], "big")
    rng = np.random.default_rng(seed)
    pn = rng.choice(np.array([-1.0, 1.0]), size=(TILE, TILE))
    order = rng.permutation(TILE * TILE)
    pilot = np.zeros(TILE * TILE, dtype=bool)
    pilot[order[:PILOT_CHIPS]] = True
    data_index = order[PILOT_CHIPS:]
    data_bit = np.tile(np.arange(CODED_BITS), REPEAT)
    return Layout(pn=pn, pilot=pilot.reshape(TILE, TILE), data_index=data_index, data_bit=data_bit)


def layout_for(key: bytes | str = DEFAULT_KEY) -> Layout:
    return _layout(_key_bytes(key))


# --------------------------------------------------------------------------- rendering


def _gaussian_transfer(shape: tuple[int, int], sigma: float) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.exp(-2.0 * np.pi**2 * sigma**2 * (fx**2 + fy**2))


def _periodic_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.real(np.fft.ifft2(np.fft.fft2(image) * _gaussian_transfer(image.shape, sigma)))


def render_tile(signs: np.ndarray, samples: int = RENDER_SAMPLES) -> np.ndarray:
    """The periodic tile at `samples` per chip: chip boxes blurred by CHIP_BLUR chips."""
    tile = np.kron(np.asarray(signs, dtype=np.float64), np.ones((samples, samples)))
    return _periodic_blur(tile, CHIP_BLUR * samples)


def chip_size(height: int, width: int) -> float:
    return min(height, width) / CHIPS_PER_SHORT_SIDE


def render_pattern(signs: np.ndarray, height: int, width: int) -> np.ndarray:
    """The watermark pattern of a height x width frame (float32, about unit RMS), tile origin at the
    frame's top-left corner: the rendered tile sampled (bilinear, wrapping) at each pixel centre."""
    tile = render_tile(signs).astype(np.float32)
    c = chip_size(height, width)
    x = ((np.arange(width) + 0.5) / c * RENDER_SAMPLES - 0.5).astype(np.float32)
    y = ((np.arange(height) + 0.5) / c * RENDER_SAMPLES - 0.5).astype(np.float32)
    period = float(tile.shape[0])
    map_x = np.broadcast_to(np.mod(x, period)[None, :], (height, width)).copy()
    map_y = np.broadcast_to(np.mod(y, period)[:, None], (height, width)).copy()
    return cv2.remap(tile, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def render_pattern_reference(signs: np.ndarray, height: int, width: int) -> np.ndarray:
    """The same pattern, summed chip by chip from the continuous kernel (box * Gaussian, by erf)."""
    from scipy.special import erf

    c = chip_size(height, width)
    scale = math.sqrt(2.0) * CHIP_BLUR

    def kernel(u: np.ndarray) -> np.ndarray:  # 1-D box of one chip blurred by the Gaussian
        return 0.5 * (erf((u + 0.5) / scale) - erf((u - 0.5) / scale))

    u_x = (np.arange(width) + 0.5) / c
    u_y = (np.arange(height) + 0.5) / c
    out = np.zeros((height, width))
    signs = np.asarray(signs, dtype=np.float64)
    for i in range(TILE):
        for j in range(TILE):
            # every periodic copy of chip (i, j) whose kernel reaches the frame (3 chips is plenty)
            cx = u_x[:, None] - (j + 0.5 + TILE * np.arange(-1, math.ceil(u_x[-1] / TILE) + 1))[None, :]
            cy = u_y[:, None] - (i + 0.5 + TILE * np.arange(-1, math.ceil(u_y[-1] / TILE) + 1))[None, :]
            kx = kernel(cx).sum(axis=1)
            ky = kernel(cy).sum(axis=1)
            out += signs[i, j] * np.outer(ky, kx)
    return out


# --------------------------------------------------------------------------- embedding


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


class FrameStamper:
    """Watermarks one RGB uint8 frame at a time with `payload` (for frames that arrive one by one,
    as in a live stream). The same pattern goes into every frame of a given size, computed once
    per size; frames smaller than MIN_SIZE on a side pass through unchanged."""

    def __init__(self, payload: Payload, key: bytes | str = DEFAULT_KEY):
        self.signs = layout_for(key).chip_signs(encode_payload(payload))
        self.patterns: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 HxWx3 RGB, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if min(h, w) < MIN_SIZE:
            return frame.copy()
        delta = self.patterns.get((h, w))
        if delta is None:
            pattern = render_pattern(self.signs, h, w)
            delta = (AMPLITUDE / float(np.sqrt(np.mean(pattern.astype(np.float64) ** 2)))) * pattern
            self.patterns[(h, w)] = delta
        marked = frame.astype(np.float32) + delta[:, :, None]
        return np.clip(np.rint(marked), 0, 255).astype(np.uint8)


def embed_frames(
    frames: Iterable[np.ndarray], payload: Payload, key: bytes | str = DEFAULT_KEY
) -> Iterator[np.ndarray]:
    """Watermark each RGB uint8 frame with `payload` (a generator: one frame in, one frame out)."""
    stamp = FrameStamper(payload, key)
    for frame in frames:
        yield stamp(frame)


# --------------------------------------------------------------------------- detection


@dataclass
class Detection:
    watermarked: bool
    payload: Payload | None
    score: float  # pilot z-score: the detection statistic
    bit_accuracy: float  # data chips agreeing with the decoded codeword (about 0.5 on noise)
    frames_used: int
    scale: float = 1.0  # tile size found, relative to the nominal one for this frame size
    offset: tuple[float, float] = (0.0, 0.0)  # tile phase found (rows, columns), in chips
    decoded_bits: np.ndarray | None = field(default=None, repr=False)  # 64 payload bits, CRC or not

    def summary(self) -> str:
        if not self.watermarked:
            return f"not watermarked (score {self.score:.1f}, {self.frames_used} frames)"
        what = f"payload {self.payload}" if self.payload is not None else "payload unreadable"
        return (
            f"LokiTalk watermark: {what} (score {self.score:.1f}, "
            f"bit agreement {self.bit_accuracy:.0%}, {self.frames_used} frames)"
        )


class Accumulator:
    """Sums the whitened residuals of equally sized frames at the detection working size."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.frame_shape: tuple[int, int] | None = None
        self.count = 0

    def add(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be HxWx3 RGB, got shape {frame.shape}")
        h, w = frame.shape[:2]
        if self.frame_shape is None:
            self.frame_shape = (h, w)
        elif self.frame_shape != (h, w):
            raise ValueError(f"all frames must have the same size: {(h, w)} after {self.frame_shape}")
        if min(h, w) < MIN_SIZE // 2:
            return
        y = _luma(frame)
        factor = min(1.0, WORK_SIZE / min(h, w))
        if factor < 1.0:
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            y = cv2.resize(y, size, interpolation=cv2.INTER_AREA)
        residual = whitened_residual(y)
        self.total = residual if self.total is None else self.total + residual
        self.count += 1


def whitened_residual(y: np.ndarray) -> np.ndarray:
    """Luma minus its blur at HIGHPASS chips, divided by the local residual energy (float64)."""
    c = chip_size(*y.shape)
    e = y - cv2.GaussianBlur(y, (0, 0), HIGHPASS * c)
    energy = cv2.GaussianBlur(e * e, (0, 0), ENERGY_BLUR * c)
    return (e / (energy + ENERGY_FLOOR)).astype(np.float64)


def fold(image: np.ndarray, chip: float, bins: int = BINS) -> np.ndarray:
    """Sum `image` modulo the tile of chip size `chip` px: [TILE*bins, TILE*bins], the bin of pixel
    (y, x) being floor((coordinate + 0.5) / chip * bins) mod TILE*bins."""
    h, w = image.shape
    n = TILE * bins
    bx = np.floor((np.arange(w) + 0.5) / chip * bins).astype(np.int64) % n
    by = np.floor((np.arange(h) + 0.5) / chip * bins).astype(np.int64) % n
    index = (by[:, None] * n + bx[None, :]).reshape(-1)
    return np.bincount(index, weights=image.reshape(-1), minlength=n * n).reshape(n, n)


def fold_reference(image: np.ndarray, chip: float, bins: int = BINS) -> np.ndarray:
    """`fold` as a loop over pixels (slow; for tests)."""
    n = TILE * bins
    out = np.zeros((n, n))
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            by = math.floor((y + 0.5) / chip * bins) % n
            bx = math.floor((x + 0.5) / chip * bins) % n
            out[by, bx] += image[y, x]
    return out


@lru_cache(maxsize=4)
def _chip_transfer(bins: int) -> np.ndarray:
    """Fourier transform of one chip as the detector sees it in the fold: rendered (box blurred by
    CHIP_BLUR) and high-passed like the residual, at `bins` per chip, chip at the origin."""
    chip = np.zeros((TILE, TILE))
    chip[0, 0] = 1.0
    kernel = render_tile(chip, bins)
    kernel = kernel - _periodic_blur(kernel, HIGHPASS * bins)
    return np.fft.fft2(kernel)


def chip_map(folded: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Wiener-deconvolved fold: at bin (i*bins + dy, j*bins + dx), the estimated value of the chip
    whose top-left corner sits there, for each sub-chip phase (dy, dx)."""
    transfer = _chip_transfer(bins)
    power = np.abs(transfer) ** 2
    gain = np.conj(transfer) / (power + WIENER * power.max())
    return np.real(np.fft.ifft2(np.fft.fft2(folded) * gain))


@lru_cache(maxsize=16)
def _pilot_spectrum(key: bytes, bins: int) -> np.ndarray:
    lay = _layout(key)
    impulses = np.zeros((TILE * bins, TILE * bins))
    impulses[::bins, ::bins] = np.where(lay.pilot, lay.pn, 0.0)
    return np.conj(np.fft.fft2(impulses))


def _robust_z(surface: np.ndarray) -> tuple[float, tuple[int, int]]:
    k = int(np.argmax(surface))
    median = float(np.median(surface))
    mad = float(np.median(np.abs(surface - median))) * 1.4826
    z = (float(surface.reshape(-1)[k]) - median) / max(mad, 1e-12)
    return z, np.unravel_index(k, surface.shape)


def synchronise(
    total: np.ndarray, key: bytes | str = DEFAULT_KEY
) -> tuple[float, float, tuple[int, int], np.ndarray]:
    """Best (z, scale, (row, col) bin offset, chip map) over SCALES for an accumulated residual."""
    key = _key_bytes(key)
    nominal = chip_size(*total.shape)
    pilot = _pilot_spectrum(key, BINS)
    best: tuple[float, float, tuple[int, int], np.ndarray] | None = None
    for scale in SCALES:
        chips = chip_map(fold(total, nominal * scale))
        surface = np.real(np.fft.ifft2(np.fft.fft2(chips) * pilot))
        z, at = _robust_z(surface)
        if best is None or z > best[0]:
            best = (z, float(scale), at, chips)
    assert best is not None
    return best


def chip_values(chips: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """[TILE, TILE] chip estimates at a tile phase of `offset` bins."""
    aligned = np.roll(chips, (-offset[0], -offset[1]), axis=(0, 1))
    return aligned[::BINS, ::BINS]


def decode_chips(
    values: np.ndarray, key: bytes | str = DEFAULT_KEY
) -> tuple[Payload | None, np.ndarray, float]:
    """(payload if the CRC holds, 80 decoded message bits, fraction of data chips that agree with
    the decoded codeword) from [TILE, TILE] chip estimates."""
    lay = layout_for(key)
    data = (values * lay.pn).reshape(-1)[lay.data_index]
    soft = np.bincount(lay.data_bit, weights=data, minlength=CODED_BITS)
    message = viterbi_decode(soft)
    payload = check_message(message)
    recoded = conv_encode(message).astype(np.float64) * 2 - 1
    agree = float(np.mean(np.sign(data) == recoded[lay.data_bit]))
    return payload, message, agree


def decide(total: np.ndarray | None, frames_used: int, key: bytes | str = DEFAULT_KEY) -> Detection:
    """Detection from an accumulated residual (None: no usable frame)."""
    if total is None or frames_used == 0 or min(total.shape) < MIN_SIZE // 2:
        return Detection(False, None, 0.0, 0.5, frames_used)
    z, scale, offset, chips = synchronise(total, key)
    payload, message, agree = decode_chips(chip_values(chips, offset), key)
    watermarked = z >= Z_DETECT or (z >= Z_DECODE and payload is not None)
    if z < Z_DECODE:
        payload = None
    return Detection(
        watermarked=bool(watermarked),
        payload=payload if watermarked else None,
        score=float(z),
        bit_accuracy=agree,
        frames_used=frames_used,
        scale=scale,
        offset=(offset[0] / BINS, offset[1] / BINS),
        decoded_bits=message[:PAYLOAD_BITS],
    )


def detect_frames(frames: Iterable[np.ndarray], key: bytes | str = DEFAULT_KEY, stride: int = 1) -> Detection:
    """Look for the watermark in equally sized RGB frames (every `stride`-th one is used)."""
    acc = Accumulator()
    for i, frame in enumerate(frames):
        if i % stride == 0:
            acc.add(frame)
    return decide(acc.total, acc.count, key)


def detect_video(path: str | Path, key: bytes | str = DEFAULT_KEY, max_frames: int = 100) -> Detection:
    """Look for the watermark in a video file, using at most `max_frames` frames spread over it."""
    from lokitalk.media.video import iter_frames, probe_video

    info = probe_video(path)
    stride = max(1, math.ceil(info.num_frames / max(1, max_frames)))
    return detect_frames(iter_frames(path, fps=info.fps), key, stride=stride)


__all__ = [
    "DEFAULT_KEY",
    "Detection",
    "Layout",
    "MESSAGE_BITS",
    "detect_frames",
    "detect_video",
    "embed_frames",
    "layout_for",
]
