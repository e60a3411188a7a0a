"""`lokitalk speak`: a tiny trained model says new speech; bad input fails cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_clean_failure, micro_model, run_cli

pytest.importorskip("mediapipe")

SR = 16000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return micro_model(tmp_path_factory.mktemp("speak"), 5.0, 96, 11, steps=20)


def speech_file(path, seconds: float, seed: int = 3, rate: int = SR, delay_s: float = 0.0):
    """Synthetic speech written as 16-bit WAV at `rate`."""
    from lokitalk.media.audio import write_wav
    from lokitalk.synth import synth_speech

    audio, _ = synth_speech(seconds, SR, seed)
    if rate != SR:
        from scipy.signal import resample_poly

        audio = resample_poly(audio, rate, SR).astype(np.float32)
    return write_wav(path, 0.8 * audio / max(np.abs(audio).max(), 1e-6), rate)


def test_speak_writes_a_stamped_video_of_the_speech_length(model, tmp_path):
    from lokitalk.media.audio import load_audio
    from lokitalk.media.video import probe_video
    from lokitalk.provenance.stamp import read_manifest
    from lokitalk.speak import SpeakConfig, speak

    audio = speech_file(tmp_path / "speech.wav", 3.3, rate=44100)  # another rate than the model's
    out = tmp_path / "out.mp4"
    summary = speak(model / "model", audio, out, SpeakConfig(segment_s=(0.8, 1.6)), device="cpu",
                    show_progress=False)
    info = probe_video(out)
    assert summary["frames"] == 82 and summary["duration_s"] == pytest.approx(3.28)
    assert info.fps == pytest.approx(25.0) and info.has_audio
    assert abs(info.duration_s - 3.3) < 0.1
    sound = load_audio(out, SR)
    assert abs(len(sound) / SR - 82 / 25) < 0.07  # AAC priming/padding at most ~1 frame
    manifest = read_manifest(out)
    assert manifest["generator"]["output"] == "speak"
    assert manifest["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert summary["head_motion"] == "replay" and summary["head_segments"] >= 2
    assert summary["lips"] == "shipped+adapted"
    assert not list(tmp_path.glob(".*partial*"))


def test_speak_cli_and_watermark(model, tmp_path, capsys):
    audio = speech_file(tmp_path / "speech.wav", 2.0)
    out = tmp_path / "cli.mp4"
    code, stdout, err = run_cli(["speak", model / "model", "--audio", audio, "--out", out, "--device", "cpu",
                                 "--quiet", "--head-motion", "still"], capsys)
    assert code in (0, None), err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["frames"] == 50 and summary["head_motion"] == "still"
    code, stdout, _ = run_cli(["verify", out], capsys)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["watermarked"] is True and result["manifest_matches_watermark"] is True


def test_speak_signs_c2pa_credentials_that_verify_and_match_the_watermark(model, tmp_path, capsys):
    pytest.importorskip("c2pa")
    from lokitalk.provenance.c2pa_sign import make_test_chain

    chain = make_test_chain(tmp_path / "certs")
    audio = speech_file(tmp_path / "speech.wav", 1.2)
    out = tmp_path / "signed.mp4"
    code, stdout, err = run_cli(["speak", model / "model", "--audio", audio, "--out", out, "--device", "cpu",
                                 "--quiet", "--head-motion", "still", "--sign-cert", chain["chain"],
                                 "--sign-key", chain["key"]], capsys)
    assert code in (0, None), err
    assert json.loads(stdout.strip().splitlines()[-1])["c2pa"]["signed"] is True
    code, stdout, err = run_cli(["verify", out], capsys)
    result = json.loads(stdout.strip().splitlines()[-1])
    model_id = json.loads((model / "model" / "model.json").read_text())["model_id"]
    c2pa = result["c2pa"]
    assert c2pa["valid"] and c2pa["digital_source_type"].endswith("trainedAlgorithmicMedia")
    assert c2pa["model_id"] == model_id
    assert result["c2pa_matches_watermark"] is True and result["c2pa_matches_manifest"] is True


def test_evaluate_video_lip_sync_report(model, capsys):
    """`evaluate --video`: the lip-sync report (a 20-step micro model renders no face, so the
    report is taken on the avatar's own source clip, a real face with its speech)."""
    video = model / "clip.mp4"
    code, _, err = run_cli(["evaluate", model / "model", "--video", video], capsys)
    assert code in (0, None), err
    report = json.loads((model / "model" / "eval" / "sync_clip.json").read_text())
    assert report["frames"] == 125 and abs(report["offset_ms"]) <= 40.0
    assert {"peak_correlation", "amplitude_ratio", "blink_rate_per_min", "real_blink_rate_per_min"} <= set(report)
    code, _, err = run_cli(["evaluate", model / "model", "--video", video, "--against-test"], capsys)
    assert code not in (0, None) and "test split" in err  # 125 frames, the test split is shorter
    code, _, err = run_cli(["evaluate", model / "model", "--against-test"], capsys)
    assert code not in (0, None) and "--video" in err


@pytest.mark.parametrize("case", ["directory", "corrupt", "short", "silent", "missing"])
def test_speak_bad_audio_is_a_one_line_error_and_writes_nothing(model, tmp_path, capsys, case):
    from lokitalk.media.audio import write_wav

    if case == "directory":
        audio = tmp_path / "folder"
        audio.mkdir()
    elif case == "corrupt":
        audio = tmp_path / "corrupt.wav"
        audio.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(200))
    elif case == "short":
        audio = speech_file(tmp_path / "short.wav", 0.4)
    elif case == "silent":
        audio = write_wav(tmp_path / "silent.wav", np.zeros(SR * 2, np.float32))
    else:
        audio = tmp_path / "nothing.wav"
    out = tmp_path / "out.mp4"
    code, _, err = run_cli(["speak", model / "model", "--audio", audio, "--out", out, "--quiet"], capsys)
    needle = {"directory": "directory", "corrupt": str(audio.name), "short": "0.5 s", "silent": "silent",
              "missing": "does not exist"}[case]
    assert_clean_failure(code, err, out, needle)


def test_speak_refuses_a_model_without_speak_consent(model, tmp_path, capsys):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model / "model", copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["consent"]["scope"] = ["prepare", "train", "render"]
    (copy / "model.json").write_text(json.dumps(meta))
    out = tmp_path / "x.mp4"
    code, _, err = run_cli(["speak", copy, "--audio", speech_file(tmp_path / "s.wav", 1.0), "--out", out], capsys)
    assert_clean_failure(code, err, out, "does not cover 'speak'")


def test_speak_output_must_be_a_video_file(model, tmp_path, capsys):
    code, _, err = run_cli(["speak", model / "model", "--audio", speech_file(tmp_path / "s.wav", 1.0),
                            "--out", tmp_path], capsys)
    assert code not in (0, None) and "is a directory" in err


def test_lip_features_are_the_same_in_chunks(model):
    """Speech of any length goes through Audio2Motion in chunks: the result does not depend on them."""
    from lokitalk.data.avatar import load_avatar
    from lokitalk.speak.lips import lip_driver
    from lokitalk.synth import synth_speech

    avatar = load_avatar(model / "avatar")
    driver = lip_driver(avatar, adapt=False)
    audio, _ = synth_speech(6.0, SR, 5)
    whole = driver.shared_features(audio, 150, chunk_frames=1000)
    chunked = driver.shared_features(audio, 150, chunk_frames=7)
    assert np.abs(whole - chunked).max() < 1e-5
    feats = driver.lip_features(whole)
    assert feats.shape == (150, avatar.lip_feature.shape[1]) and np.isfinite(feats).all()


def test_own_clip_fallback_without_the_shipped_model(model, monkeypatch):
    from lokitalk.audio2motion import io
    from lokitalk.data.avatar import load_avatar
    from lokitalk.speak.lips import lip_driver

    monkeypatch.setattr(io, "SHIPPED", model / "no_such_file.safetensors")
    driver = lip_driver(load_avatar(model / "avatar"), own_steps=30)
    assert driver.source == "own clip"
    assert np.isfinite(driver.shared_features(np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32), 25)).all()


def test_choose_gain_prefers_the_smallest_gain_that_reaches_the_real_amplitude():
    from lokitalk.speak.lip_gain import LipGainConfig, choose_gain

    config = LipGainConfig(target=0.95, max_r_drop=0.05)
    gains = (1.0, 1.5, 2.0)
    assert choose_gain(gains, [0.6, 0.97, 1.2], [0.8, 0.79, 0.78], config) == 1.5  # first to reach 0.95
    assert choose_gain(gains, [1.0, 1.3, 1.6], [0.8, 0.8, 0.8], config) == 1.0  # already there
    assert choose_gain(gains, [0.5, 0.7, 0.9], [0.8, 0.77, 0.6], config) == 1.5  # 2.0 costs too much sync
    assert choose_gain(gains, [0.5, 0.6, 0.7], [0.8, 0.81, 0.80], config) == 2.0  # never reached: the largest safe


def test_speak_scales_the_lips_by_the_calibrated_gain(model, tmp_path, capsys):
    import shutil

    from lokitalk.data.avatar import load_avatar
    from lokitalk.speak import SpeakConfig, speak
    from lokitalk.speak.lip_gain import GAIN_FILE, scale_about, training_mean
    from lokitalk.speak.lips import lip_driver, training_range
    from lokitalk.synth import synth_speech

    avatar = load_avatar(model / "avatar")
    driver = lip_driver(avatar, adapt=False)
    shared = driver.shared_features(synth_speech(2.0, SR, 5)[0], 50)
    raw = avatar.lip_basis.encode(driver.mouth_points(shared))
    mean = training_mean(avatar)
    np.testing.assert_allclose(scale_about(raw, mean, 1.0), raw, atol=1e-5)
    lo, hi = training_range(avatar)
    np.testing.assert_allclose(driver.lip_features(shared, 1.5), np.clip(mean + 1.5 * (raw - mean), lo, hi), atol=1e-5)
    # a model folder with a calibrated gain: speak uses it, and --lip-gain overrides it
    copy = tmp_path / "model"
    shutil.copytree(model / "model", copy)
    (copy / GAIN_FILE).write_text(json.dumps({"gain": 1.5}))
    audio = speech_file(tmp_path / "s.wav", 1.0)
    assert speak(copy, audio, tmp_path / "a.mp4", SpeakConfig(), device="cpu", show_progress=False)["lip_gain"] == 1.5
    assert speak(copy, audio, tmp_path / "b.mp4", SpeakConfig(lip_gain=1.0), device="cpu",
                 show_progress=False)["lip_gain"] == 1.0
    code, _, err = run_cli(["speak", copy, "--audio", audio, "--out", tmp_path / "c.mp4", "--lip-gain", "0"], capsys)
    assert code not in (0, None) and "lip gain" in err and not (tmp_path / "c.mp4").exists()


def test_speech_driven_calibration_commands_the_lips_speak_plans(model):
    """The calibration must measure what `speak` renders: its commanded lips on training frames are
    the ones `plan_drive` makes from the same stretch of the clip's soundtrack."""
    from lokitalk.data.avatar import load_avatar
    from lokitalk.speak.drive import plan_drive
    from lokitalk.speak.lip_gain import _commanded_lips
    from lokitalk.speak.lips import valid_training_frames

    avatar = load_avatar(model / "avatar")
    frames = valid_training_frames(avatar)[[3, 10, 17, 30, 44]]
    real_opening = np.arange(5.0)
    lips, opening = _commanded_lips(avatar, frames, "speech", real_opening, "cpu")
    first, last = int(frames[0]), int(frames[-1])
    drive = plan_drive(avatar, avatar.audio_for_frames(first, last), last - first + 1)
    np.testing.assert_allclose(lips, drive.lip_feature[frames - first], atol=1e-5)
    np.testing.assert_allclose(opening, drive.opening[frames - first], atol=1e-9)
    real_lips, real = _commanded_lips(avatar, frames, "real", real_opening, "cpu")
    np.testing.assert_array_equal(real_lips, avatar.lip_feature[frames])
    assert real is real_opening


def test_calibrate_lips_with_an_unknown_drive_is_a_one_line_error(model, capsys):
    code, _, err = run_cli(["calibrate-lips", model / "model", "--drive", "tts", "--device", "cpu"], capsys)
    assert code not in (0, None) and "speech or real" in err and len(err.strip().splitlines()) == 1


def test_calibrate_lips_on_a_model_without_a_recognisable_face_is_a_one_line_error(model, tmp_path, capsys):
    code, _, err = run_cli(["calibrate-lips", model / "model", "--frames", "6", "--device", "cpu"], capsys)
    assert code not in (0, None) and "no face" in err and len(err.strip().splitlines()) == 1
    assert not (model / "model" / "lip_gain.json").exists()
