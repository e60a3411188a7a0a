"""`prepare` on real clips from ../shared/data (skipped when the folder is absent)."""

import numpy as np
import pytest

from conftest import consent_for, shared_file
from lokitalk.data.avatar import load_avatar
from lokitalk.prepare.masks import Region
from lokitalk.prepare.pipeline import prepare
from lokitalk.prepare.runner import Reporter

pytest.importorskip("mediapipe")
pytestmark = pytest.mark.real_data


def test_a_turned_head_in_the_wild(tmp_path):
    video = shared_file("videos/vox07_a.mp4")  # 224 px, 25 fps, AAC in the file, head turned ~35 deg
    consent = consent_for(video, tmp_path / "clip.consent.json", subject="third-party research clip vox07_a")
    summary = prepare(video, tmp_path / "avatar", reporter=Reporter(quiet=True), consent=consent)
    assert summary["frames"] == 106 and summary["width"] == 224
    assert summary["face_coverage"] == 1.0
    assert summary["reprojection_error_px"] < 3.0
    assert 20 < np.mean(summary["yaw_range_deg"]) < 50  # the head is clearly turned one way
    avatar = load_avatar(tmp_path / "avatar")
    labels = avatar.labels(50)
    face = np.isin(labels, [Region.FACE, Region.MOUTH, Region.EYES]).mean()
    assert 0.1 < face < 0.5
    assert (labels == Region.BACKGROUND).mean() > 0.05
    # the mouth region sits on the lip landmarks
    lips = avatar.landmarks[50, [13, 14], :2].mean(0).round().astype(int)
    assert labels[lips[1], lips[0]] == Region.MOUTH


def test_a_30fps_clip_with_separate_audio(tmp_path):
    video = shared_file("videos/id03_c.mp4")  # 30 fps, no audio stream, 7 s
    wav = shared_file("videos/id03_c.wav")
    consent = consent_for(video, tmp_path / "clip.consent.json", subject="third-party research clip id03_c")
    summary = prepare(video, tmp_path / "avatar", audio=wav, reporter=Reporter(quiet=True), consent=consent)
    assert summary["frames"] == 176  # 7.07 s resampled to 25 fps
    assert summary["face_coverage"] > 0.95 and summary["reprojection_error_px"] < 3.5
    avatar = load_avatar(tmp_path / "avatar")
    assert len(avatar.split.test) == 18
    assert abs(len(avatar.audio()) / 16000 - 176 / 25) < 1e-3
    assert np.isfinite(avatar.rotation).all() and avatar.eye_ratio.min() > 0
