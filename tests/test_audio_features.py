import json

import numpy as np
import pytest

from lokitalk.prepare.audio_features import (AudioFeatureSpec, audio_features, frame_energy_db, frame_windows,
                                             frame_windows_reference, log_mel)


def test_log_mel_equals_librosa(rng):
    librosa = pytest.importorskip("librosa")
    spec = AudioFeatureSpec()
    audio = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    ours = log_mel(audio, spec)
    mel = librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=spec.n_fft, win_length=spec.win_length,
                                         hop_length=spec.hop_length, n_mels=spec.n_mels, fmin=spec.fmin,
                                         fmax=spec.fmax)
    np.testing.assert_allclose(ours, np.log(np.maximum(mel, spec.log_floor)).T, atol=1e-4)


def test_frame_windows_match_the_slow_reference(rng):
    spec = AudioFeatureSpec(window=8)
    mel = rng.standard_normal((257, 5)).astype(np.float32)
    for fps in (25.0, 30.0):
        np.testing.assert_array_equal(frame_windows(mel, 70, fps, spec), frame_windows_reference(mel, 70, fps, spec))


def test_a_click_lands_in_the_centre_of_its_frames_window():
    spec = AudioFeatureSpec()
    audio = np.zeros(16000 * 3, np.float32)
    click_frame = 40  # t = 1.6 s at 25 fps
    audio[int(click_frame / 25 * 16000)] = 1.0
    features = audio_features(audio, 75, 25.0, spec).astype(np.float32)
    energy = features[click_frame].mean(1)
    peak = int(np.argmax(energy))
    assert abs(peak - spec.window // 2) <= 1
    # neighbouring video frames see the click 4 mel frames (one video frame) earlier/later
    assert abs(int(np.argmax(features[click_frame + 1].mean(1))) - (peak - 4)) <= 1


def test_silence_outside_the_clip_is_the_log_floor():
    spec = AudioFeatureSpec()
    features = audio_features(np.ones(1600, np.float32) * 0.01, 10, 25.0, spec)
    assert features.dtype == np.float16
    assert np.all(features[9, -5:] == np.float16(np.log(spec.log_floor)))


def test_spec_round_trips_through_json(tmp_path):
    spec = AudioFeatureSpec(n_mels=64, window=16)
    spec.save(tmp_path / "spec.json")
    assert AudioFeatureSpec.load(tmp_path / "spec.json") == spec
    assert json.loads((tmp_path / "spec.json").read_text())["kind"] == "logmel"


def test_frame_energy_follows_loudness():
    audio = np.concatenate([np.zeros(6400), 0.5 * np.ones(6400)]).astype(np.float32)
    energy = frame_energy_db(audio, 20, 25.0, 16000)
    assert energy[2] < -90 and energy[15] == pytest.approx(20 * np.log10(0.5), abs=0.1)


def test_mel_filterbank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    from lokitalk.prepare.audio_features import mel_filterbank

    for sr, n_fft, n_mels, fmin, fmax in [(16000, 512, 80, 55.0, 7600.0), (22050, 1024, 40, 0.0, 8000.0)]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        np.testing.assert_allclose(ours, ref, atol=1e-6)
