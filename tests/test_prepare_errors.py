"""Bad input to `lokitalk prepare`: one line naming the problem, a non-zero exit, nothing left
behind that looks like an avatar."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import conftest
from conftest import assert_clean_failure, consent_for
from lokitalk.media.audio import write_wav
from lokitalk.media.video_writer import write_video

pytest.importorskip("mediapipe")

SR = 16000


def portrait(size=256):
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut()[0:380, 60:440], (size, size), interpolation=cv2.INTER_AREA)


def tone(seconds):
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)


def still_video(path: Path, image, seconds=3.0, audio=True):
    frames = [image] * int(seconds * 25)
    return write_video(path, frames, 25.0, audio=tone(seconds) if audio else None)


def run_cli(args, capsys):
    """(exit code, stderr) of `lokitalk ARGS`."""
    code, _, err = conftest.run_cli(args, capsys)
    return code, err


def test_not_a_video(tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my meeting notes, not a video\n" * 50)
    consent_for(fake)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", fake, "--out", out], capsys), out, "not a video")


def test_missing_file_and_directory(tmp_path, capsys):
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", tmp_path / "nope.mp4", "--out", out], capsys), out, "no such")
    assert_clean_failure(*run_cli(["prepare", tmp_path, "--out", out], capsys), out, "directory")


def test_truncated_video(tmp_path, capsys):
    good = still_video(tmp_path / "good.mp4", portrait())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    consent_for(cut)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", cut, "--out", out], capsys), out, "truncated or corrupt")


def test_no_audio_and_no_audio_option(tmp_path, capsys):
    video = still_video(tmp_path / "silent.mp4", portrait(), audio=False)
    consent_for(video)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "no audio stream", "--audio")


def test_no_face(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(75)]
    video = write_video(tmp_path / "noise.mp4", frames, 25.0, audio=tone(3.0))
    consent_for(video)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "no face")


def test_two_faces(tmp_path, capsys):
    face = portrait(192)
    video = still_video(tmp_path / "pair.mp4", np.concatenate([face, face], axis=1))
    consent_for(video)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "two faces")


def test_too_short(tmp_path, capsys):
    video = still_video(tmp_path / "short.mp4", portrait(), seconds=1.5)
    consent_for(video)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "at least 2 s")


def test_audio_much_shorter_than_video(tmp_path, capsys):
    video = still_video(tmp_path / "clip.mp4", portrait(), seconds=3.0, audio=False)
    wav = write_wav(tmp_path / "short.wav", tone(1.0))
    consent_for(video)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--audio", wav, "--out", out], capsys), out,
                         "the audio lasts 1.0 s")


def test_bad_option_values(tmp_path, capsys):
    out = tmp_path / "avatar"
    video = tmp_path / "x.mp4"
    video.write_bytes(b"")
    assert_clean_failure(*run_cli(["prepare", video, "--out", out, "--av-offset", "soon"], capsys), out,
                         "--av-offset")


def test_refuses_to_write_into_a_foreign_folder(tmp_path, capsys):
    video = still_video(tmp_path / "clip.mp4", portrait())
    consent_for(video)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("do not touch")
    code, err = run_cli(["prepare", video, "--out", out], capsys)
    assert code != 0 and "is not a LokiTalk avatar" in err
    assert (out / "thesis.tex").read_text() == "do not touch"


def test_exit_code_and_single_line_from_a_real_process(tmp_path):
    fake = tmp_path / "fake.mov"
    fake.write_bytes(b"\x00" * 4096)
    consent_for(fake)
    result = subprocess.run([sys.executable, "-m", "lokitalk.cli", "prepare", str(fake), "--out",
                             str(tmp_path / "a")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")


# ----------------------------------------------------------------------------- consent


def test_no_consent_record(tmp_path, capsys):
    video = still_video(tmp_path / "clip.mp4", portrait())
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "no consent record",
                         "lokitalk consent create --subject NAME --video", "clip.mp4.consent.json", "--consent")
    assert_clean_failure(*run_cli(["prepare", video, "--out", out, "--consent", tmp_path / "nope.json"], capsys),
                         out, "no consent record", "nope.json")


def test_consent_record_of_another_video(tmp_path, capsys):
    video = still_video(tmp_path / "clip.mp4", portrait())
    other = still_video(tmp_path / "other.mp4", portrait(), seconds=2.5)
    record = consent_for(other)
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out, "--consent", record], capsys), out,
                         "for a different file")


def test_expired_consent(tmp_path, capsys):
    import datetime as dt

    from lokitalk.provenance.consent import create_consent, save_consent

    video = still_video(tmp_path / "clip.mp4", portrait())
    record = create_consent(video, "someone", expires="2020-01-31", today=dt.date(2020, 1, 1))
    save_consent(record, tmp_path / "clip.mp4.consent.json")
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "expired on 2020-01-31")


def test_consent_without_prepare_in_its_scope(tmp_path, capsys):
    video = still_video(tmp_path / "clip.mp4", portrait())
    consent_for(video, scope="render,speak")
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "does not cover 'prepare'")


def test_video_edited_after_consent(tmp_path, capsys):
    video = still_video(tmp_path / "clip.mp4", portrait())
    consent_for(video)
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0x01
    video.write_bytes(bytes(data))
    out = tmp_path / "avatar"
    assert_clean_failure(*run_cli(["prepare", video, "--out", out], capsys), out, "content hash differs",
                         "edited")


def test_consent_create_command_then_prepare_accepts_it(tmp_path, capsys):
    video = still_video(tmp_path / "clip.mp4", portrait())
    code, _ = run_cli(["consent", "create", "--subject", "Ada", "--video", video, "--scope", "prepare,train",
                       "--expires", "2999-12-31"], capsys)
    assert code in (0, None)
    from lokitalk.provenance.consent import load_consent, require_consent

    record = load_consent(tmp_path / "clip.mp4.consent.json")
    assert record.subject == "Ada" and record.scope == ("prepare", "train") and record.expires == "2999-12-31"
    assert require_consent(video, "train").consent_id == record.consent_id
