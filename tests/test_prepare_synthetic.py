"""`prepare` end to end on the synthetic subject, checked against its ground truth."""

import json

import numpy as np
import pytest

from conftest import consent_for
from lokitalk.data.avatar import load_avatar
from lokitalk.prepare import pipeline
from lokitalk.prepare.pipeline import prepare
from lokitalk.prepare.runner import Reporter
from lokitalk.synth import make_talking_clip, write_clip

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    clip = make_talking_clip(duration_s=8.0, size=256, seed=3)
    video = write_clip(clip, root / "clip.mp4")
    consent_for(video)
    summary = prepare(video, root / "avatar", reporter=Reporter(quiet=True))
    return clip, summary, root


def test_summary_has_the_promised_fields(prepared):
    _, summary, _ = prepared
    for key in ("frames", "fps", "duration_s", "width", "height", "face_coverage", "focal_px",
                "reprojection_error_px", "blinks", "av_offset_ms", "elapsed_s"):
        assert key in summary
    assert summary["frames"] == 200 and summary["fps"] == 25.0 and summary["width"] == 256
    assert summary["face_coverage"] == 1.0
    assert summary["reprojection_error_px"] < 1.5


def test_blinks_are_found_with_full_precision_and_recall(prepared):
    clip, summary, root = prepared
    found = load_avatar(root / "avatar").blinks
    truth = clip.blink_frames
    assert len(truth) >= 2
    matched = [any(a - 1 <= fb and fa <= b + 1 for fa, fb in found) for a, b in truth]
    assert all(matched), (truth, found.tolist())
    assert summary["blinks"] == len(truth)


def test_mouth_opening_follows_the_ground_truth(prepared):
    clip, _, root = prepared
    avatar = load_avatar(root / "avatar")
    r = np.corrcoef(avatar.mouth_opening, clip.mouth_opening)[0, 1]
    assert r > 0.85
    # the first lip component carries the opening too
    r_lip = abs(np.corrcoef(avatar.lip_feature[:, 0], clip.mouth_opening)[0, 1])
    assert r_lip > 0.7


def test_head_roll_is_recovered(prepared):
    clip, _, root = prepared
    avatar = load_avatar(root / "avatar")
    roll = np.load(root / "avatar" / "pose.npz")["euler_deg"][:, 2]
    measured = roll - roll.mean()
    truth = clip.head_roll_deg - clip.head_roll_deg.mean()
    assert np.corrcoef(measured, truth)[0, 1] > 0.9
    assert np.abs(measured - truth).mean() < 1.0  # degrees
    assert avatar.camera_to_head().shape == (200, 4, 4)


def test_no_offset_is_measured_on_a_synchronous_clip(prepared):
    _, summary, _ = prepared
    assert abs(summary["av_offset_ms"]) < 40 and summary["av_offset_applied_ms"] == 0.0


def test_split_masks_and_files_are_consistent(prepared):
    _, _, root = prepared
    avatar = load_avatar(root / "avatar")
    assert len(avatar.split.test) == 20 and avatar.split.test[-1] == 199
    assert avatar.audio_features.shape[:2] == (200, 32)
    assert len(avatar.audio()) == 200 * 640
    labels = avatar.labels(100)
    assert set(np.unique(labels)) >= {0, 3, 4, 5, 6}
    assert avatar.frame(199).shape == (256, 256, 3) and avatar.alpha(0).dtype == np.uint8
    assert (root / "avatar" / "contact_sheet.png").stat().st_size > 10_000


def test_a_second_run_is_all_cached(prepared):
    clip, summary, root = prepared
    again = prepare(root / "clip.mp4", root / "avatar", reporter=Reporter(quiet=True))
    assert again["frames"] == summary["frames"] and again["blinks"] == summary["blinks"]
    assert again["elapsed_s"] < 1.5


def test_a_planted_audio_delay_is_measured_and_removed(tmp_path):
    clip = make_talking_clip(duration_s=8.0, size=192, seed=5, audio_delay_ms=200.0)
    video = write_clip(clip, tmp_path / "late.mp4")
    consent_for(video)
    summary = prepare(video, tmp_path / "avatar", reporter=Reporter(quiet=True))
    assert abs(summary["av_offset_ms"] - 200.0) < 40.0
    assert summary["av_offset_applied_ms"] == summary["av_offset_ms"]


def test_a_killed_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    clip = make_talking_clip(duration_s=4.0, size=160, seed=7)
    video = write_clip(clip, tmp_path / "clip.mp4")
    consent_for(video)
    out = tmp_path / "avatar"
    real_masks = pipeline.step_masks

    def killed(ctx):
        raise KeyboardInterrupt

    steps_run = []
    monkeypatch.setattr(pipeline, "step_masks", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare(video, out, reporter=Reporter(quiet=True))
    assert not out.exists() and (tmp_path / "avatar.partial" / "steps" / "pose.json").exists()
    pose_marker = json.loads((tmp_path / "avatar.partial" / "steps" / "pose.json").read_text())

    def counting(ctx):
        steps_run.append("masks")
        return real_masks(ctx)

    monkeypatch.setattr(pipeline, "step_masks", counting)
    summary = prepare(video, out, reporter=Reporter(quiet=True))
    assert steps_run == ["masks"] and summary["frames"] == 100
    assert json.loads((out / "steps" / "pose.json").read_text()) == pose_marker  # not redone


# --------------------------------------------------------------------------- ground-truth scores
# The synthetic subject's head pose (it only rolls: yaw and pitch are truly constant), blink spans
# and mouth opening are known exactly, so `prepare` is scored in the units a user cares about.
# Thresholds: mean pose error < 0.6 deg and 95th percentile < 1.5 deg (after removing each
# angle's clip mean, since the portrait's own pose is not known); blinks matched within +-1 frame
# with precision and recall 1.0; mouth-opening correlation > 0.85.

POSE_MEAN_DEG, POSE_P95_DEG = 0.6, 1.5


def _truth(clip) -> dict:
    return {"head_roll_deg": clip.head_roll_deg, "mouth_opening": clip.mouth_opening,
            "blink_frames": clip.blink_frames}


def test_pose_error_in_degrees_and_blink_precision_recall(prepared):
    from lokitalk.demo.truth import prepare_vs_truth

    clip, _, root = prepared
    scores = prepare_vs_truth(root / "avatar", _truth(clip))
    pose = scores["pose_error_deg"]
    assert pose["mean"] < POSE_MEAN_DEG and pose["p95"] < POSE_P95_DEG, pose
    assert pose["roll_mean"] < POSE_MEAN_DEG and scores["roll_correlation"] > 0.95
    blinks = scores["blinks"]
    assert blinks["true_blinks"] >= 2 and blinks["precision"] == 1.0 and blinks["recall"] == 1.0, blinks
    assert scores["mouth_correlation"] > 0.85


def test_prepare_on_the_subject_speaking_real_words(tmp_path):
    """The demo's subject: eSpeak NG speech (words, pauses, p/b/m closures) drives the mouth."""
    from lokitalk.demo.truth import prepare_vs_truth
    from lokitalk.synth.tts import say, tts_available

    if not tts_available():
        pytest.skip("espeakng-loader not installed (scripts/setup.sh)")
    speech = say("Hello there. My name is Ada, and I speak slowly, with a pause now and then. "
                 "Bob bought a map of the moon.")
    clip = make_talking_clip(duration_s=None, size=192, seed=11, speech=speech)
    video = write_clip(clip, tmp_path / "words.mp4")
    consent_for(video)
    summary = prepare(video, tmp_path / "avatar", reporter=Reporter(quiet=True))
    scores = prepare_vs_truth(tmp_path / "avatar", _truth(clip))
    assert scores["pose_error_deg"]["mean"] < POSE_MEAN_DEG and scores["pose_error_deg"]["p95"] < POSE_P95_DEG
    assert scores["blinks"]["precision"] == 1.0 and scores["blinks"]["recall"] == 1.0
    assert scores["mouth_correlation"] > 0.8  # 0.85 at 192 px measured; 0.92 in the 256 px demo
    assert abs(summary["av_offset_ms"]) < 40  # the words' energy and the mouth agree on the timing
