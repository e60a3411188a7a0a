"""Background plate: a moving square over a known textured background."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import lokitalk.prepare.background as bgmod
from lokitalk.prepare.background import (
    background_plate,
    fill_unseen,
    masked_median,
    masked_median_reference,
    sample_indices,
)
from lokitalk.prepare.masks import Region

H, W = 48, 64
SQ_Y, SQ_H, SQ_W = 14, 20, 20
SQ_X = [4, 6, 8, 10, 12, 14, 16, 14, 12, 10, 8, 6]  # the square's left edge per frame


def textured_background(h: int = H, w: int = W) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    checker = 25 * (((x // 4) + (y // 4)) % 2)
    base = np.stack([60 + 1.5 * x, 50 + 2.0 * y, 180 - x - y], axis=-1) + checker[..., None]
    return np.clip(base, 0, 255).astype(np.uint8)


def moving_square(halo_px: int = 0, noise: int = 2, seed: int = 0):
    """Frames, labels, the true background and the always-covered mask.

    The square is random noise (so any leak into the median is visible) labelled TORSO. An
    optional halo around it is labelled BACKGROUND but bright white: a soft edge the segmenter
    missed, which the erosion must keep out of the plate.
    """
    rng = np.random.default_rng(seed)
    bg = textured_background()
    frames, labels = [], []
    for x0 in SQ_X:
        f = bg.astype(np.int16) + rng.integers(-noise, noise + 1, bg.shape)
        lab = np.full((H, W), Region.BACKGROUND, np.uint8)
        if halo_px:
            f[SQ_Y - halo_px : SQ_Y + SQ_H + halo_px, x0 - halo_px : x0 + SQ_W + halo_px] = 255
        f[SQ_Y : SQ_Y + SQ_H, x0 : x0 + SQ_W] = rng.integers(0, 256, (SQ_H, SQ_W, 3))
        lab[SQ_Y : SQ_Y + SQ_H, x0 : x0 + SQ_W] = Region.TORSO
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
        labels.append(lab)
    always = np.zeros((H, W), bool)
    always[SQ_Y : SQ_Y + SQ_H, max(SQ_X) : min(SQ_X) + SQ_W] = True
    return np.stack(frames), np.stack(labels), bg, always


def test_plate_recovers_the_background_and_marks_never_seen():
    frames, labels, bg, always = moving_square()
    assert always.sum() == 8 * SQ_H  # the test's own premise: an 8 px wide strip is never seen
    plate, never_seen = background_plate(frames, labels, erode_px=0)
    assert plate.shape == (H, W, 3) and plate.dtype == np.uint8
    assert never_seen.dtype == bool
    assert np.array_equal(never_seen, always)
    err = np.abs(plate.astype(int) - bg)[~never_seen]
    assert err.max() <= 2  # the noise amplitude: the median removes the square entirely


def test_erosion_keeps_soft_edges_out():
    frames, labels, bg, always = moving_square(halo_px=2)
    plate, never_seen = background_plate(frames, labels, erode_px=3)
    seen = ~never_seen
    assert np.abs(plate.astype(int) - bg)[seen].max() <= 2
    # what was never seen is the always-covered strip grown by at most the erosion
    grown = cv2.dilate(always.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert (never_seen >= always).all() and not (never_seen & ~grown).any()
    assert not never_seen[:, :2].any() and not never_seen[:2].any()  # the image border is not eroded
    # without erosion the same halo does leak: the check above can fail
    leaky, _ = background_plate(frames, labels, erode_px=0)
    assert np.abs(leaky.astype(int) - bg)[~always].max() > 20


def test_filled_pixels_are_plausible():
    frames, labels, bg, always = moving_square()
    plate, never_seen = background_plate(frames, labels, erode_px=0)
    filled = plate[never_seen].astype(int)
    ring = cv2.dilate(always.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~always
    lo, hi = plate[ring].min(axis=0).astype(int), plate[ring].max(axis=0).astype(int)
    assert ((filled >= lo - 3) & (filled <= hi + 3)).all()
    # each filled pixel next to a seen one is close to its seen neighbours' mean
    for y, x in zip(*np.nonzero(always)):
        nb = ~never_seen[y - 1 : y + 2, x - 1 : x + 2]
        if nb.any():
            mean = plate[y - 1 : y + 2, x - 1 : x + 2][nb].mean(axis=0)
            assert np.abs(plate[y, x] - mean).max() <= 20


@pytest.mark.parametrize("coarse", [False, True])
def test_fill_unseen_continues_a_gradient(coarse, monkeypatch):
    """A linear lighting gradient with a big square hole: the harmonic fill reproduces it,
    without seams or overshoot, also through the downscaled path for big holes."""
    if coarse:
        monkeypatch.setattr(bgmod, "_MAX_UNKNOWNS", 500)  # 72x72 hole -> solved at 1/4 scale
    h = w = 128
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([40 + x, 60 + 0.8 * y, 200 - 0.5 * (x + y)], axis=-1).astype(np.uint8)
    unseen = np.zeros((h, w), bool)
    unseen[64 - 36 : 64 + 36, 50 - 36 : 50 + 36] = True
    out = fill_unseen(image, unseen)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out[~unseen], image[~unseen])  # seen pixels untouched
    assert np.abs(out.astype(int) - image)[unseen].max() <= (3 if coarse else 1)
    # no seam: neighbouring pixels differ by little more than the gradient itself
    assert np.abs(np.diff(out.astype(int), axis=1)).max() <= 2
    assert np.abs(np.diff(out.astype(int), axis=0)).max() <= 2


def test_coarse_fill_meets_its_neighbours_without_a_seam(monkeypatch):
    """Wavy shading, big hole, downscaled solve: the full-resolution rim pass must blend the
    coarse fill into the real neighbours (no step bigger than the image's own) and stay close
    to the full-resolution harmonic fill."""
    h = w = 128
    y, x = np.mgrid[0:h, 0:w]
    image = np.repeat((128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0))[..., None], 3, -1).astype(np.uint8)
    unseen = np.zeros((h, w), bool)
    unseen[28:100, 14:86] = True
    exact = bgmod.harmonic_fill(image.astype(np.float64), unseen)
    monkeypatch.setattr(bgmod, "_MAX_UNKNOWNS", 500)
    out = fill_unseen(image, unseen).astype(int)
    own_step = np.abs(np.diff(image.astype(int), axis=1)).max()
    assert np.abs(np.diff(out, axis=1)).max() <= own_step + 1
    assert np.abs(np.diff(out, axis=0)).max() <= own_step + 1
    assert np.abs(out - exact)[unseen].max() <= 6


def test_harmonic_fill_solves_laplace():
    """Every unknown pixel ends up the mean of its in-image 4-neighbours (tiny, random)."""
    rng = np.random.default_rng(5)
    values = rng.random((9, 11, 2)) * 100
    unknown = rng.random((9, 11)) < 0.5
    unknown[0, 0] = False
    out = bgmod.harmonic_fill(values, unknown)
    assert np.array_equal(out[~unknown], values[~unknown])
    for y, x in zip(*np.nonzero(unknown)):
        nbrs = [out[y + dy, x + dx] for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))
                if 0 <= y + dy < 9 and 0 <= x + dx < 11]
        assert np.allclose(out[y, x], np.mean(nbrs, axis=0), atol=1e-8)


def test_fill_unseen_edge_cases():
    image = np.full((16, 16, 3), 77, np.uint8)
    assert np.array_equal(fill_unseen(image, np.zeros((16, 16), bool)), image)
    everything = fill_unseen(image, np.ones((16, 16), bool))
    assert everything.shape == image.shape and (everything == 128).all()


def test_vectorised_median_matches_reference(monkeypatch):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (11, 7, 9, 3), dtype=np.uint8)
    valid = rng.random((11, 7, 9)) < 0.4
    valid[:, 0, 0] = False  # never seen
    valid[:, 0, 1] = False
    valid[:2, 0, 1] = True  # an even count: mean of the two middle values
    valid[:, 0, 2] = True  # all seen
    expect = masked_median_reference(frames, valid)
    got = masked_median(frames, valid)
    assert np.array_equal(got[0], expect[0]) and np.array_equal(got[1], expect[1])
    assert got[1][0, 0] == 0 and got[1][0, 1] == 2
    # the row chunking must not change anything
    monkeypatch.setattr(bgmod, "_CHUNK_BYTES", 1)
    chunked = masked_median(frames, valid)
    assert np.array_equal(chunked[0], expect[0])


def test_sample_indices():
    assert sample_indices(10, 64).tolist() == list(range(10))
    idx = sample_indices(1000, 64)
    assert len(idx) == 64 and idx[0] == 0 and idx[-1] == 999 and np.all(np.diff(idx) > 0)
    assert np.ptp(np.diff(idx)) <= 1  # evenly spaced
    assert len(sample_indices(0, 64)) == 0


def test_subsampling_and_bad_input():
    frames, labels, bg, _ = moving_square()
    plate, never_seen = background_plate(frames, labels, max_samples=4, erode_px=0)
    # frames 0, 4, 7, 11: x0 = 4, 12, 14, 6: covered in all four only for x in [14, 24)
    expect = np.zeros((H, W), bool)
    expect[SQ_Y : SQ_Y + SQ_H, 14:24] = True
    assert np.array_equal(never_seen, expect)
    with pytest.raises(ValueError):
        background_plate(frames[..., 0], labels)
    with pytest.raises(ValueError):
        background_plate(frames, labels[:3])
