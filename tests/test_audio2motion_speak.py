"""Audio2Motion as `speak` uses it: chunked prediction, the saved file, per-identity adaptation."""

from __future__ import annotations

import numpy as np
import pytest

from lokitalk.audio2motion.model import Audio2Motion, Audio2MotionConfig
from lokitalk.prepare.audio_features import AudioFeatureSpec, audio_features, log_mel


def test_mel_frames_equal_slices_of_the_whole(rng):
    from lokitalk.audio2motion.predict import mel_frames

    spec = AudioFeatureSpec()
    audio = rng.normal(0, 0.1, 16000 * 3 + 77).astype(np.float32)
    whole = log_mel(audio, spec)
    for a, b in [(0, 5), (3, 40), (100, 180), (len(whole) - 9, len(whole))]:
        assert np.allclose(mel_frames(audio, a, b, spec), whole[a:b], atol=1e-4)


def test_windows_for_frames_equal_prepare_windows(rng):
    from lokitalk.audio2motion.predict import windows_for_frames

    spec = AudioFeatureSpec()
    audio = rng.normal(0, 0.1, 16000 * 4).astype(np.float32)
    ref = audio_features(audio, 100, 25.0, spec).astype(np.float32)
    for frames in (np.arange(0, 10), np.arange(37, 64), np.arange(90, 100)):
        got = windows_for_frames(audio, frames, 25.0, spec, spec.window)
        assert np.allclose(got, ref[frames], atol=2e-2)  # ref is float16


def test_chunked_prediction_equals_one_pass(rng):
    from lokitalk.audio2motion.predict import predict_audio

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = Audio2Motion(Audio2MotionConfig(components=4, channels=8, hidden=16, dropout=0.0))
    torch.nn.init.normal_(model.head[-1].weight, std=0.1)
    audio = rng.normal(0, 0.1, 16000 * 5).astype(np.float32)
    one = predict_audio(model, audio, 125, chunk_frames=1000)
    many = predict_audio(model, audio, 125, chunk_frames=9)
    assert np.abs(one - many).max() < 1e-5
    # and it agrees with predict_clip on prepare's windows (utterance statistics from mel frames
    # instead of overlapping windows: nearly the same normalisation)
    clip = model.predict_clip(audio_features(audio, 125, 25.0))
    assert np.corrcoef(clip[:, 0], one[:, 0])[0, 1] > 0.99


def test_save_and_load_round_trip(tmp_path, rng):
    import torch

    from lokitalk.audio2motion.io import load_audio2motion, save_audio2motion
    from lokitalk.errors import InputError
    from lokitalk.prepare.signals import LipBasis

    model = Audio2Motion(Audio2MotionConfig(components=4, channels=8, hidden=16), rng.normal(size=4), np.ones(4))
    basis = LipBasis(np.arange(40, dtype=np.int32), np.zeros(120), np.linalg.qr(rng.normal(size=(120, 4)))[0].T,
                     np.ones(4))
    path = save_audio2motion(tmp_path / "a2m.safetensors", model, basis, {"note": "test"})
    loaded, basis2, info = load_audio2motion(path)
    x = torch.randn(3, 32, 80)
    assert torch.allclose(model.eval()(x), loaded(x)) and info == {"note": "test"}
    assert np.allclose(basis2.components, basis.components, atol=1e-6)
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(InputError):
        load_audio2motion(tmp_path / "bad.safetensors")


def test_shipped_model_loads():
    from lokitalk.audio2motion.io import SHIPPED, load_audio2motion

    if not SHIPPED.exists():
        pytest.skip("shipped Audio2Motion not built (tools/build_audio2motion.py)")
    model, basis, info = load_audio2motion()
    assert basis.components.shape == (model.config.components, 120)
    assert SHIPPED.stat().st_size < 2_000_000 and len(info["identities"]) >= 10


def test_adaptation_learns_a_person_s_larger_lip_motion():
    """A shared model trained on speakers with normal lip motion, then one person whose lips move
    twice as much: adaptation on that person's training frames raises the predicted amplitude on
    their held-out frames towards the truth and lowers the error, and keeps the frozen encoder."""
    from test_audio2motion import synthetic_clip

    from lokitalk.audio2motion.adapt import AdaptConfig, adapt_to_identity
    from lokitalk.audio2motion.shared_basis import fit_shared_basis_arrays, identity_mouth
    from lokitalk.audio2motion.train import MotionClip, TrainConfig, evaluate_clip, train_on_clips

    rng = np.random.default_rng(7)
    train = [synthetic_clip(f"spk{i}", rng) for i in range(6)]
    person = synthetic_clip("person", rng, seconds=20.0)
    rest = person.mouth.rest
    big = rest + 2.0 * (person.points - rest)  # same timing, twice the motion
    person = MotionClip("person", "person", person.windows, identity_mouth(big, person.train_frames), big,
                        person.train_frames, person.test_frames)
    basis = fit_shared_basis_arrays([c.points for c in train], [c.identity for c in train], components=4,
                                    frames=[c.train_frames for c in train])
    for c in train + [person]:
        c.with_targets(basis)
    model, _ = train_on_clips(train, basis, TrainConfig(steps=200, batch_size=64, lr=3e-3, threads=1),
                              Audio2MotionConfig(components=4, channels=32, hidden=64, dropout=0.0))
    before = evaluate_clip(model, basis, person, person.test_frames)
    adapted, style, report = adapt_to_identity(model, basis, person, AdaptConfig(steps=200))
    pred = style.apply(adapted.predict_clip(person.windows))

    from lokitalk.audio2motion.shared_basis import decode_points, opening_from_mouth

    pts = decode_points(np.ascontiguousarray(pred[person.test_frames]), person.mouth, basis)
    real = person.points[person.test_frames]
    err = float(np.linalg.norm(pts - real, axis=-1).mean() * 1e3)
    amp = opening_from_mouth(pts).std() / opening_from_mouth(real).std()
    assert before["model_amplitude_ratio"] < 0.75
    assert 0.8 < amp < 1.25, (amp, report)
    assert err < 0.8 * before["model_landmark_mm"], (err, before)
    for a, b in zip(model.encoder.parameters(), adapted.encoder.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
