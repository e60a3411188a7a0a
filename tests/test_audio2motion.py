"""Audio2Motion: the shared lip space and a learnable synthetic audio -> motion mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from lokitalk.audio2motion.model import Audio2MotionConfig
from lokitalk.audio2motion.shared_basis import (decode_points, encode_points, fit_shared_basis_arrays,
                                                identity_mouth, opening_from_mouth, template_mouth)
from lokitalk.audio2motion.train import MotionClip, TrainConfig, evaluate_audio2motion, train_on_clips
from lokitalk.prepare.audio_features import AudioFeatureSpec, frame_windows

REPO = Path(__file__).resolve().parents[1]
FPS = 25.0


def motion_modes() -> tuple[np.ndarray, np.ndarray]:
    """Two unit-size mouth motions on the template mouth: jaw drop (lower lip down) and widening."""
    rest = template_mouth()
    centre = rest.mean(0)
    drop = np.zeros_like(rest)
    drop[rest[:, 1] > centre[1], 1] = 1.0  # y is down: the lower lip moves down
    widen = np.zeros_like(rest)
    widen[:, 0] = (rest[:, 0] - centre[0]) / np.abs(rest[:, 0] - centre[0]).max()
    return drop, widen


def mouth_sequence(opening: np.ndarray, width: np.ndarray, size: float) -> np.ndarray:
    """[N,40,3] mouth points of a person `size` times the template's, opening by `opening` x 6 mm
    and widening by `width` x 3 mm (both relative to the mouth size)."""
    drop, widen = motion_modes()
    motion = opening[:, None, None] * drop * 6e-3 + width[:, None, None] * widen * 3e-3
    return size * (template_mouth() + motion)


def test_shared_basis_round_trip_and_size_invariance(rng):
    n = 300
    opening = np.clip(rng.normal(0.3, 0.5, n), 0, None)  # closed (0) in about a third of frames
    width = np.where(opening > 0, rng.normal(0, 0.5, n), 0.0)
    small, large = mouth_sequence(opening, width, 1.0), mouth_sequence(opening, width, 1.3)
    other = mouth_sequence(np.clip(rng.normal(0.2, 0.4, n), 0, None), np.zeros(n), 0.9)
    basis = fit_shared_basis_arrays([small, large, other], ["a", "b", "c"], components=4)
    assert np.allclose(basis.neutral, 0.0)
    assert np.allclose(basis.components @ basis.components.T, np.eye(4), atol=1e-9)
    for points in (small, large):
        mouth = identity_mouth(points)
        feats = encode_points(points, mouth, basis)
        assert np.abs(decode_points(feats, mouth, basis) - points).max() < 1e-9  # metres
    # Same motion, mouths of different size: the same features.
    f_small = encode_points(small, identity_mouth(small), basis)
    f_large = encode_points(large, identity_mouth(large), basis)
    assert np.abs(f_small).max() > 1e-3
    assert np.allclose(f_small, f_large, atol=1e-9)
    # ... and without size normalisation they differ by the size ratio.
    raw = [encode_points(p, identity_mouth(p, normalise_size=False), basis) for p in (small, large)]
    assert np.allclose(raw[1], 1.3 * raw[0], atol=1e-9)


def synthetic_clip(name: str, rng: np.random.Generator, seconds: float = 10.0) -> MotionClip:
    """Synthetic speech features whose mid-band energy drives the opening and whose high-band
    energy drives the widening, with a per-speaker spectrum, loudness and mouth size."""
    spec = AudioFeatureSpec()
    frames = int(seconds * FPS)
    mel_frames = int(seconds / spec.hop_s) + 1
    envelopes = []
    for _ in range(2):  # syllable-rate envelopes in [0, 1] with silences
        e = gaussian_filter1d(rng.normal(size=mel_frames), 5.0)
        envelopes.append(np.clip(e / e.std() * 0.5, 0, 1))
    bands = np.arange(spec.n_mels)
    speaker = rng.normal(0, 1.0) * np.linspace(-1, 1, spec.n_mels) + rng.normal(0, 3.0) - 6.0
    mel = (speaker[None] + 4.0 * envelopes[0][:, None] * np.exp(-((bands - 25) / 8.0) ** 2)
           + 4.0 * envelopes[1][:, None] * np.exp(-((bands - 60) / 6.0) ** 2)
           + rng.normal(0, 0.3, (mel_frames, spec.n_mels)))
    windows = frame_windows(mel.astype(np.float32), frames, FPS, spec).astype(np.float16)
    centre = np.round(np.arange(frames) / FPS / spec.hop_s).astype(int)
    points = mouth_sequence(envelopes[0][centre], envelopes[1][centre], rng.uniform(0.8, 1.25))
    train = np.arange(int(frames * 0.9))
    test = np.arange(int(frames * 0.9), frames)
    return MotionClip(name, name, windows, identity_mouth(points, train), points, train, test)


def test_audio2motion_learns_synthetic_mapping():
    rng = np.random.default_rng(7)
    train_clips = [synthetic_clip(f"spk{i}", rng) for i in range(8)]
    held_out = [synthetic_clip(f"new{i}", rng) for i in range(2)]  # speakers never seen
    basis = fit_shared_basis_arrays([c.points for c in train_clips], [c.identity for c in train_clips],
                                    components=4, frames=[c.train_frames for c in train_clips])
    for c in train_clips + held_out:
        c.with_targets(basis)
    model, history = train_on_clips(
        train_clips, basis, TrainConfig(steps=250, batch_size=64, lr=3e-3, threads=1),
        Audio2MotionConfig(components=4, channels=32, hidden=64, dropout=0.0))
    assert history[-1]["loss"] < history[0]["loss"]
    result = evaluate_audio2motion(model, basis, held_out, frames="all")["mean"]
    # Stated error: on unseen speakers, mouth points within 0.6 mm on average (the motion spans
    # ~6 mm), under half the trivial baseline's error; opening follows the audio (r > 0.9).
    assert result["model_landmark_mm"] < 0.6
    assert result["model_landmark_mm"] < 0.5 * result["baseline_landmark_mm"]
    assert result["model_opening_corr"] > 0.9
    assert 0.7 < result["model_amplitude_ratio"] < 1.3


def test_opening_from_mouth_matches_signals():
    from lokitalk.face_model import load_face_template
    from lokitalk.prepare.signals import mouth_opening

    template = load_face_template()
    drop, _ = motion_modes()
    pts = template_mouth() + 4e-3 * drop
    full = np.repeat(template.vertices[None].astype(np.float64), 1, 0)
    full[0, template.mouth_points] = pts
    assert np.allclose(opening_from_mouth(pts[None]), mouth_opening(full, template))


@pytest.mark.real_data
def test_shared_basis_on_prepared_clips():
    root = REPO / "runs" / "prepare_all"
    dirs = sorted(p.parent for p in root.glob("*/summary.json"))[:4]
    if len(dirs) < 2:
        pytest.skip(f"prepared clips not available: {root}")
    from lokitalk.audio2motion.shared_basis import encode_identity, fit_shared_lip_basis
    from lokitalk.data.avatar import load_avatar

    avatars = [load_avatar(d) for d in dirs]
    basis = fit_shared_lip_basis(avatars, 16)
    assert basis.components.shape == (16, 120)
    for avatar in avatars:
        feats = encode_identity(avatar, basis)
        assert feats.shape == (avatar.num_frames, 16) and np.isfinite(feats).all()


def test_extend_context_equals_a_wider_window(rng):
    from lokitalk.audio2motion.model import extend_context

    mel = rng.normal(size=(600, 80)).astype(np.float32)
    narrow = frame_windows(mel, 140, FPS, AudioFeatureSpec())
    wide = frame_windows(mel, 140, FPS, AudioFeatureSpec(window=48))
    assert np.array_equal(extend_context(narrow, 2)[2:-2], wide[2:-2])
