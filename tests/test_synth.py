"""The synthetic talking subject: determinism, ground truth that is self-consistent, A/V delay,
blinks, the mp4 round trip and (when mediapipe is installed) that a face tracker sees what the
ground truth says."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lokitalk.synth import SyntheticClip, make_talking_clip, synth_speech, write_clip
from lokitalk.synth.speech import ENVELOPE_RATE, plan_syllables
from lokitalk.synth.subject import ROLL_MAX_DEG, SAMPLE_RATE, SCALE_MAX, SHIFT_MAX_PX

SR = 16000


@pytest.fixture(scope="module")
def clip() -> SyntheticClip:
    return make_talking_clip(duration_s=8.0, fps=25.0, size=192, seed=0)


def _rms_envelope(audio: np.ndarray, sample_rate: int = SR, rate: int = ENVELOPE_RATE) -> np.ndarray:
    hop = sample_rate // rate
    n = len(audio) // hop
    return np.sqrt(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))


def _best_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> int:
    """Lag L (in samples) maximising sum a[t] b[t - L]: how far b must move later to match a."""
    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    scores = [np.dot(a[max(0, lag) : n + min(0, lag)], b[max(0, -lag) : n - max(0, lag)]) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


# --------------------------------------------------------------------------- speech


def test_speech_is_deterministic_and_shaped():
    a1, e1 = synth_speech(3.0, seed=7)
    a2, e2 = synth_speech(3.0, seed=7)
    a3, _ = synth_speech(3.0, seed=8)
    assert a1.dtype == np.float32 and e1.dtype == np.float32
    assert a1.shape == (3 * SR,) and e1.shape == (300,)
    assert np.array_equal(a1, a2) and np.array_equal(e1, e2)
    assert not np.array_equal(a1, a3)
    assert 0.2 < np.abs(a1).max() < 1.0
    assert e1.min() >= 0.0 and e1.max() <= 1.0


def test_speech_is_prefix_stable():
    short, env_short = synth_speech(2.0, seed=3)
    long, env_long = synth_speech(3.5, seed=3)
    assert np.array_equal(short, long[: len(short)])
    assert np.array_equal(env_short, env_long[: len(env_short)])


def test_speech_envelope_is_the_audio_loudness():
    audio, env = synth_speech(8.0, seed=2)
    rms = _rms_envelope(audio)
    assert np.corrcoef(env, rms)[0, 1] > 0.9
    # gaps and pauses are (near) silent, syllables are not
    assert rms[env == 0].mean() < 0.1 * rms[env > 0.5].mean()


def test_speech_has_syllables_gaps_and_pauses():
    syllables = plan_syllables(20.0, seed=0)
    lengths = np.array([s.end_s - s.start_s for s in syllables])
    assert np.all((lengths >= 0.12) & (lengths <= 0.30))
    gaps = np.array([b.start_s - a.end_s for a, b in zip(syllables, syllables[1:])])
    assert np.all(gaps >= 0.03)
    assert np.sum(gaps >= 0.3) >= 2  # a few pauses
    assert np.all(gaps <= 0.6)
    assert len({s.vowel for s in syllables}) >= 4  # the formants change from syllable to syllable


def test_speech_pitch_is_a_voice():
    audio, env = synth_speech(6.0, seed=1)
    hop, win = SR // 100, 640
    f0 = []
    for i in np.nonzero(env > 0.6)[0][::3]:
        seg = audio[i * hop : i * hop + win].astype(np.float64)
        if len(seg) < win:
            continue
        ac = np.correlate(seg, seg, "full")[win - 1 :]
        lo, hi = SR // 200, SR // 80
        f0.append(SR / (lo + int(np.argmax(ac[lo:hi]))))
    assert len(f0) > 20
    assert 100.0 < np.median(f0) < 150.0


# --------------------------------------------------------------------------- the clip


def test_clip_shapes_and_ranges(clip):
    n = clip.num_frames
    assert clip.frames.shape == (200, 192, 192, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 25.0 and clip.audio.dtype == np.float32
    assert len(clip.audio) == 8 * SAMPLE_RATE
    for name in ("mouth_opening", "eye_closure", "head_roll_deg", "head_scale"):
        assert getattr(clip, name).shape == (n,)
    assert clip.head_shift_px.shape == (n, 2)
    assert clip.mouth_opening.min() >= 0 and clip.mouth_opening.max() <= 1
    assert clip.mouth_opening.min() < 0.02 and clip.mouth_opening.max() > 0.6  # closes and opens
    assert clip.eye_closure.min() == 0 and clip.eye_closure.max() == pytest.approx(1.0)
    assert np.abs(clip.head_roll_deg).max() <= ROLL_MAX_DEG + 1e-4
    assert np.abs(clip.head_shift_px).max() <= SHIFT_MAX_PX * 192 / 256 + 1e-4
    assert np.abs(clip.head_scale - 1).max() <= SCALE_MAX + 1e-6
    # the head moves smoothly and actually moves
    assert np.abs(np.diff(clip.head_roll_deg)).max() < 1.0
    assert np.ptp(clip.head_roll_deg) > 1.0 and np.ptp(clip.head_shift_px[:, 0]) > 1.0


def test_clip_is_deterministic():
    a = make_talking_clip(duration_s=1.0, size=128, seed=5)
    b = make_talking_clip(duration_s=1.0, size=128, seed=5)
    c = make_talking_clip(duration_s=1.0, size=128, seed=6)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert np.array_equal(a.mouth_opening, b.mouth_opening) and a.blink_frames == b.blink_frames
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.audio, c.audio)


def test_mouth_follows_the_speech(clip):
    times = np.arange(clip.num_frames) / clip.fps
    centres = (np.arange(len(clip.envelope)) + 0.5) / ENVELOPE_RATE
    env = np.interp(times, centres, clip.envelope)
    assert np.corrcoef(env, clip.mouth_opening)[0, 1] > 0.8
    # and so does the measured loudness of the audio track (no delay: lag ~0)
    rms = _rms_envelope(clip.audio)
    mouth_100 = np.interp((np.arange(len(rms)) + 0.5) / ENVELOPE_RATE, times, clip.mouth_opening)
    assert np.corrcoef(rms, mouth_100)[0, 1] > 0.7
    assert abs(_best_lag(rms, mouth_100, 20)) <= 2  # within 20 ms


@pytest.mark.parametrize("delay_ms", [120.0, -80.0])
def test_audio_delay_shifts_only_the_audio(clip, delay_ms):
    shifted = make_talking_clip(duration_s=8.0, fps=25.0, size=192, seed=0, audio_delay_ms=delay_ms)
    assert np.array_equal(shifted.frames, clip.frames)
    assert np.array_equal(shifted.mouth_opening, clip.mouth_opening)
    assert len(shifted.audio) == len(clip.audio)
    # the audio moved later by delay_ms relative to the undelayed clip ...
    lag = _best_lag(shifted.audio, clip.audio, 4000)
    assert lag == round(delay_ms * SR / 1000)
    # ... and so relative to the lips
    rms = _rms_envelope(shifted.audio)
    times = np.arange(clip.num_frames) / clip.fps
    mouth_100 = np.interp((np.arange(len(rms)) + 0.5) / ENVELOPE_RATE, times, clip.mouth_opening)
    assert abs(_best_lag(rms, mouth_100, 30) - delay_ms / 10) <= 2


def test_blinks(clip):
    long = make_talking_clip(duration_s=12.0, size=128, seed=3)
    for c in (clip, long):
        assert len(c.blink_frames) >= 2
        inside = np.zeros(c.num_frames, bool)
        prev_start = -np.inf
        for start, end in c.blink_frames:
            assert 0 <= start <= end < c.num_frames
            frames = end - start + 1
            assert 1 <= frames <= round(0.25 * c.fps) + 1  # 100-250 ms
            assert c.eye_closure[start : end + 1].max() == pytest.approx(1.0)  # fully closed once
            assert (start - prev_start) / c.fps >= 1.7  # every 2-5 s
            prev_start = start
            inside[start : end + 1] = True
        assert np.all(c.eye_closure[~inside] == 0)
    starts = np.array([s for s, _ in long.blink_frames]) / long.fps
    assert np.all(np.diff(starts) <= 5.3)


def test_background_is_static(clip):
    # the top-left corner and the shuttle at the right edge never move
    corner = clip.frames[:, :20, :20].astype(np.int16)
    shuttle = clip.frames[:, 60:120, -12:].astype(np.int16)
    assert np.abs(corner - corner[0]).max() == 0
    assert np.abs(shuttle - shuttle[0]).max() == 0
    # while the face does
    face = clip.frames[:, 60:130, 70:120].astype(np.float32)
    assert face.std(axis=0).mean() > 3.0


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_talking_clip(duration_s=1.0, size=255)
    with pytest.raises(ValueError):
        make_talking_clip(duration_s=0.0)
    with pytest.raises(ValueError):
        synth_speech(0.0)


def test_write_clip_round_trip(tmp_path):
    av = pytest.importorskip("av")
    c = make_talking_clip(duration_s=2.0, fps=25.0, size=128, seed=1)
    path = write_clip(c, tmp_path / "sub" / "clip.mp4")
    assert path.exists() and path.suffix == ".mp4"
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert float(video.average_rate) == pytest.approx(25.0)
        assert (video.width, video.height) == (128, 128)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == c.num_frames
    err = np.abs(np.array(frames, np.float32) - c.frames).mean()
    assert err < 4.0  # crf 18: close to the rendered frames
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.rate == SAMPLE_RATE
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert abs(len(audio) / SAMPLE_RATE - 2.0) < 0.05
    n = min(len(audio), len(c.audio))
    assert abs(_best_lag(audio[:n], c.audio[:n], 400)) <= 2  # AAC priming is trimmed
    assert np.corrcoef(audio[:n], c.audio[:n])[0, 1] > 0.9


# --------------------------------------------------------------------------- a real tracker


def test_face_mesh_sees_the_ground_truth():
    os.environ.setdefault("GLOG_minloglevel", "2")
    mp = pytest.importorskip("mediapipe")
    c = make_talking_clip(duration_s=8.0, size=256, seed=2)
    # 20 frames: 16 spread over the range of mouth openings, plus the 4 most closed eyes
    order = np.argsort(c.mouth_opening)
    picks = list(order[np.linspace(0, len(order) - 1, 16).round().astype(int)])
    picks += [int(i) for i in np.argsort(-c.eye_closure)[:4]]
    lip, eye = [], []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        for i in picks:
            result = mesh.process(c.frames[i])
            assert result.multi_face_landmarks, f"no face found in frame {i}"
            p = np.array([(q.x, q.y) for q in result.multi_face_landmarks[0].landmark]) * 256
            height = np.linalg.norm(p[10] - p[152])
            lip.append(np.linalg.norm(p[13] - p[14]) / height)
            eye.append((np.linalg.norm(p[159] - p[145]) + np.linalg.norm(p[386] - p[374])) / (2 * height))
    lip, eye = np.array(lip), np.array(eye)
    assert np.corrcoef(lip, c.mouth_opening[picks])[0, 1] >= 0.7
    closure = c.eye_closure[picks]
    closed, open_ = eye[closure > 0.9], eye[closure == 0]
    assert len(closed) >= 1 and len(open_) >= 8
    assert closed.max() < 0.6 * np.median(open_)
