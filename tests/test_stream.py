"""`lokitalk stream`: live speech in pieces -> frames as soon as their signals are final."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conftest import assert_clean_failure, micro_model, run_cli

pytest.importorskip("mediapipe")

SR = 16000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return micro_model(tmp_path_factory.mktemp("stream"), 5.0, 96, 11, steps=20)


@pytest.fixture(scope="module")
def avatar(model):
    from lokitalk.data.avatar import load_avatar

    return load_avatar(model / "avatar")


@pytest.fixture(scope="module")
def driver(avatar):
    from lokitalk.speak.lips import lip_driver

    return lip_driver(avatar, adapt=False)


class ByteSink(io.RawIOBase):
    """stdout as a consumer of the stream sees it: the bytes, as they are written."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += bytes(b)
        return len(b)


def speech(seconds: float, seed: int = 4) -> np.ndarray:
    from lokitalk.synth import synth_speech

    audio, _ = synth_speech(seconds, SR, seed)
    return (0.7 * audio / np.abs(audio).max()).astype(np.float32)


def pieces_of(audio: np.ndarray, rng: np.random.Generator | None, largest: int = 4000) -> list[np.ndarray]:
    """`audio` cut at random places (one piece if rng is None)."""
    if rng is None:
        return [audio]
    cuts = np.cumsum(rng.integers(1, largest, size=len(audio) // 2 + 1))
    return np.split(audio, cuts[cuts < len(audio)])


def stream_lips(driver, pieces, **kwargs):
    from lokitalk.speak.stream_lips import StreamingLips

    lips = StreamingLips(driver, **kwargs)
    taken = []
    for piece in pieces:
        lips.push(piece)
        taken.append(lips.take())
    lips.finish()
    taken.append(lips.take())
    taken = [t for t in taken if t is not None]
    assert [t.first for t in taken] == list(np.cumsum([0] + [len(t.shared) for t in taken[:-1]]))
    return lips, np.concatenate([t.shared for t in taken]), np.concatenate([t.lip_feature for t in taken])


def test_streaming_lips_equal_the_slow_reference_however_the_audio_is_cut(driver):
    from lokitalk.speak.stream_lips import StreamLipsConfig, reference_stream_lips

    audio = speech(7.3)
    reference = reference_stream_lips(driver, audio)
    assert reference.shape == (182, driver.basis.components.shape[0])
    for seed in (None, 0, 1):
        rng = None if seed is None else np.random.default_rng(seed)
        _, shared, _ = stream_lips(driver, pieces_of(audio, rng))
        np.testing.assert_allclose(shared, reference, atol=1e-6 * np.abs(reference).max())
    # without the prior: the same once speech has begun. (Before, the statistics of a silent start
    # have no spread, the 1e-6 floor divides, and float rounding decides: what the prior is for.)
    _, shared, _ = stream_lips(driver, pieces_of(audio, np.random.default_rng(2)), config=StreamLipsConfig(0))
    reference0 = reference_stream_lips(driver, audio, StreamLipsConfig(0))
    np.testing.assert_allclose(shared[25:], reference0[25:], atol=1e-6 * np.abs(reference0).max())
    assert np.abs(reference0[:10] - reference[:10]).max() > 1e-4  # the prior does change the start


def test_streamed_lips_converge_to_the_offline_prediction(driver, avatar):
    from lokitalk.audio2motion.predict import predict_audio

    audio = speech(14.0, seed=6)
    _, shared, _ = stream_lips(driver, pieces_of(audio, np.random.default_rng(3)))
    offline = driver.style.apply(predict_audio(driver.model, audio, len(shared), avatar.fps, avatar.audio_spec))
    late = slice(int(6 * avatar.fps), None)  # once the running statistics hold ~6 s of speech
    centre = offline[late].mean(0)
    motion, error = offline[late] - centre, shared[late] - offline[late]
    assert np.corrcoef((shared[late] - centre).ravel(), motion.ravel())[0, 1] > 0.99
    assert np.sqrt((error ** 2).mean()) < 0.15 * np.sqrt((motion ** 2).mean())
    early = slice(0, int(2 * avatar.fps))  # the first seconds differ more, but not wildly
    assert np.corrcoef(shared[early].ravel() - centre.mean(), offline[early].ravel() - centre.mean())[0, 1] > 0.8


def test_a_frame_is_final_within_the_lookahead_and_memory_stays_bounded(driver, avatar):
    from lokitalk.speak.stream_lips import StreamingLips

    lips = StreamingLips(driver)
    hop = SR / avatar.fps
    audio = speech(30.0, seed=2)
    emitted_at = {}
    received, longest = 0, 0
    for piece in np.split(audio, np.arange(160, len(audio), 160)):  # 10 ms pieces
        lips.push(piece)
        received += len(piece)
        got = lips.take()
        if got is not None:
            for k in range(got.first, got.first + len(got.shared)):
                emitted_at[k] = received
        longest = max(longest, len(lips.audio), len(lips.mel) * 160, len(lips.pred) * hop)
    waits = np.array([emitted_at[k] - (k + 1) * hop for k in sorted(emitted_at)])
    # every frame comes out the moment its lookahead has arrived (within one 10 ms piece and the
    # one-hop rounding of frame centres), never later
    assert waits.max() <= lips.lookahead_samples + 2 * 160
    assert waits.min() >= lips.lookahead_samples - 2 * 160
    assert 0.2 * SR < lips.lookahead_samples < 0.4 * SR
    assert longest < 0.6 * SR  # what is kept does not grow with the stream
    lips.finish()
    rest = lips.take()
    assert rest.first + len(rest.shared) == int(len(audio) // hop)


def test_blink_stream_frames_do_not_depend_on_the_request_sizes_and_keep_the_persons_rate(avatar):
    from lokitalk.speak.blinks import BlinkStream, blink_style

    style = blink_style(avatar)
    whole = BlinkStream(25.0, style, np.random.default_rng(5)).take(3000)
    parts = BlinkStream(25.0, style, np.random.default_rng(5))
    sizes = np.random.default_rng(1).integers(1, 40, size=400)
    pieces, done = [], 0
    for size in sizes:
        size = int(min(size, 3000 - done))
        if size <= 0:
            break
        pieces.append(parts.take(size))
        done += size
    np.testing.assert_array_equal(np.concatenate(pieces), whole)

    stream = BlinkStream(25.0, style, np.random.default_rng(7))
    ratios = stream.take(25 * 600)  # ten minutes
    rate = len(stream.placed) / 600.0
    assert abs(rate - style.rate_per_s) < 0.2 * style.rate_per_s
    relative = ratios / style.open_level
    closed = relative.min(1)
    assert closed.min() <= min(shape.min() for shape in style.library) + 1e-6  # blinks reach the real depth
    # between blinks the open eye drifts with the measured spread (half of it, as blink_track)
    open_frames = np.ones(len(ratios), bool)
    for a, b in stream.placed:
        open_frames[a:b + 1] = False
    expected = 0.5 * style.open_std / style.open_level
    measured = (relative[open_frames] - 1).std(0)
    np.testing.assert_allclose(measured, expected, rtol=0.2)
    no_blinks = BlinkStream(25.0, style, np.random.default_rng(7), blinks=False)
    assert no_blinks.take(1000).min() > 0.5 * style.open_level.min() and not no_blinks.placed


def test_streamed_poses_replay_the_same_segments_as_speak(avatar):
    from lokitalk.speak import SpeakConfig
    from lokitalk.speak.head_motion import replay_motion
    from lokitalk.speak.stream_plan import PoseStream

    config = SpeakConfig(segment_s=(0.8, 1.6))
    offline = replay_motion(avatar, 400, np.random.default_rng(3), config.segment_s, config.blend_s)
    stream = PoseStream(avatar, config, np.random.default_rng(3))
    rot = np.concatenate([stream.take(n)[0] for n in (1, 7, 50, 3, 200, 139)])
    # all but speak's last segment, which speak cuts to fit its known length
    last_start = offline.segments[-1][0]
    np.testing.assert_array_equal(rot[:last_start], offline.rotation[:last_start])
    with pytest.raises(Exception, match="replay or still"):
        PoseStream(avatar, replace(config, head_motion="reference"), np.random.default_rng(0))


def test_stream_plan_is_the_same_whatever_the_pieces(avatar, driver):
    from lokitalk.speak import SpeakConfig
    from lokitalk.speak.stream_plan import StreamPlanner

    audio = speech(6.0)
    config = SpeakConfig(segment_s=(0.8, 1.6))
    plans = []
    for seed in (None, 0):
        planner = StreamPlanner(avatar, driver, config)
        frames = []
        for piece in pieces_of(audio, None if seed is None else np.random.default_rng(seed)):
            frames += planner.push(piece)
        frames += planner.finish()
        assert [f.index for f in frames] == list(range(150))
        plans.append(frames)
    for a, b in zip(*plans):
        for key in ("eye_ratio", "rotation", "translation"):
            assert np.array_equal(a.conditioning[key].numpy(), b.conditioning[key].numpy()), key
        np.testing.assert_allclose(a.conditioning["lip_feature"].numpy(), b.conditioning["lip_feature"].numpy(),
                                   atol=1e-5)


def test_stream_writes_a_growing_stamped_video_in_sync_with_its_audio(model, tmp_path, capsys):
    from lokitalk.media.audio import load_audio
    from lokitalk.media.video import probe_video
    from lokitalk.speak import SpeakConfig
    from lokitalk.speak.stream import paced, rechunk, stream_speak

    audio = speech(4.0)
    sink = ByteSink()
    # the audio arrives at the pace it is spoken, as from a microphone
    summary = stream_speak(model / "model", paced(rechunk([audio], 640)), sink, SpeakConfig(segment_s=(0.8, 1.6)),
                           device="cpu")
    assert summary["frames"] == 100 and summary["out"] == "-"
    out = tmp_path / "piped.mp4"
    out.write_bytes(bytes(sink.data))
    info = probe_video(out)
    assert info.num_frames == 100 and info.fps == pytest.approx(25.0) and info.has_audio
    sound = load_audio(out, SR)
    # the same speech, at the same place (no encoder delay left in: a shift would lower r)
    n = min(len(sound), len(audio))
    assert np.corrcoef(sound[:n], audio[:n])[0, 1] > 0.95
    code, stdout, _ = run_cli(["verify", out], capsys)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["watermarked"] is True and result["manifest_matches_watermark"] is True
    assert result["manifest"]["generator"]["output"] == "stream"


def test_the_live_writer_sends_the_video_while_it_is_made(tmp_path):
    from lokitalk.media.video import probe_video
    from lokitalk.media.video_writer import LiveVideoWriter

    sink = ByteSink()
    writer = LiveVideoWriter(sink, 25.0, SR)
    sizes = []
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * SR) / SR)).astype(np.float32)
    for k in range(100):
        writer.add_audio(tone[k * 640:(k + 1) * 640])
        writer.write(np.full((64, 64, 3), (3 * k) % 256, np.uint8))
        sizes.append(len(sink.data))
    writer.close()
    # a fragment per second of video reaches the reader while the rest is still being made
    assert sizes[24] == 0 < sizes[35] < sizes[60] < sizes[85] < len(sink.data)
    (tmp_path / "live.mp4").write_bytes(bytes(sink.data))
    assert probe_video(tmp_path / "live.mp4").num_frames == 100
    with pytest.raises(ValueError, match="no frames"):
        LiveVideoWriter(tmp_path / "empty.mp4", 25.0).close()
    assert not list(tmp_path.glob(".*partial*"))


def test_a_stream_that_cannot_keep_up_holds_frames_instead_of_falling_behind(model, tmp_path):
    from lokitalk.media.video import probe_video
    from lokitalk.speak import SpeakConfig
    from lokitalk.speak.stream import rechunk, stream_speak

    audio = speech(3.0)
    out = tmp_path / "late.mp4"
    # all the audio arrives at once, so every frame but the first is already late
    summary = stream_speak(model / "model", rechunk([audio], SR * 3), out, SpeakConfig(head_motion="still"),
                           device="cpu", max_latency_s=1e-3)
    assert summary["frames"] == 75 and summary["frames_repeated"] == 74
    assert probe_video(out).num_frames == 75


def test_stream_cli_reads_raw_pcm_from_stdin_and_writes_the_video_to_stdout(model, tmp_path):
    pcm = (speech(2.0) * 32767).astype("<i2").tobytes()
    run = subprocess.run([sys.executable, "-m", "lokitalk.cli", "stream", str(model / "model"), "--audio", "-",
                          "--out", "-", "--device", "cpu", "--quiet", "--head-motion", "still"],
                         input=pcm, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    summary = json.loads(run.stderr.decode().strip().splitlines()[-1])  # stdout carries the video
    assert summary["frames"] == 50 and summary["audio_s"] == pytest.approx(2.0)
    out = tmp_path / "stdout.mp4"
    out.write_bytes(run.stdout)
    from lokitalk.media.video import probe_video

    assert probe_video(out).num_frames == 50


@pytest.mark.parametrize("case", ["directory", "short stdin", "reference motion", "bad chunk", "signing"])
def test_stream_bad_input_is_a_one_line_error_and_writes_nothing(model, tmp_path, capsys, monkeypatch, case):
    out = tmp_path / "out.mp4"
    args = ["stream", model / "model", "--out", out, "--device", "cpu", "--quiet"]
    if case == "directory":
        args += ["--audio", tmp_path]
        needle = "is a directory"
    elif case == "short stdin":
        tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(int(0.3 * SR)) / SR)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tone * 32767).astype("<i2").tobytes())))
        args += ["--audio", "-"]
        needle = "at least 0.5 s"
    elif case == "reference motion":
        from lokitalk.media.audio import write_wav

        write_wav(tmp_path / "a.wav", speech(1.0))
        args += ["--audio", tmp_path / "a.wav", "--head-motion", "reference"]
        needle = "replay or still"
    elif case == "bad chunk":
        args += ["--audio", "-", "--chunk-ms", "0"]
        needle = "--chunk-ms"
    else:
        from lokitalk.media.audio import write_wav

        write_wav(tmp_path / "a.wav", speech(1.0))
        args += ["--audio", tmp_path / "a.wav"]
        monkeypatch.setenv("LOKITALK_C2PA_CERT", str(tmp_path / "none.pem"))
        from lokitalk.speak import SpeakConfig
        from lokitalk.speak.stream import stream_speak

        with pytest.raises(Exception, match="not C2PA-signed"):
            stream_speak(model / "model", [speech(1.0)], out, SpeakConfig(sign_cert=tmp_path / "c.pem"))
        assert not out.exists()
        return
    code, _, err = run_cli(args, capsys)
    assert_clean_failure(code, err, out, needle)
    assert not list(tmp_path.glob(".*partial*"))


def test_iter_audio_gives_load_audios_samples_and_raw_pcm_reads_back(tmp_path):
    from lokitalk.media.audio import iter_audio, iter_raw_pcm, load_audio, write_wav
    from lokitalk.media.video_writer import write_video

    audio = speech(2.3)
    write_video(tmp_path / "v.mp4", [np.zeros((32, 32, 3), np.uint8)] * 57, 25, audio, SR)  # AAC: padded
    for path in (write_wav(tmp_path / "a.wav", audio), tmp_path / "v.mp4"):
        pieces = list(iter_audio(path, SR))
        assert len(pieces) > 1
        np.testing.assert_array_equal(np.concatenate(pieces), load_audio(path, SR))
    pcm = (audio * 32767).astype("<i2")
    read = np.concatenate(list(iter_raw_pcm(io.BytesIO(pcm.tobytes() + b"\x01"), SR, SR, 0.02)))
    np.testing.assert_array_equal(read, pcm.astype(np.float32) / 32768.0)  # a trailing odd byte is dropped
    from scipy.signal import resample_poly

    pcm44 = (resample_poly(audio, 441, 160) * 32767).clip(-32768, 32767).astype("<i2")
    back = np.concatenate(list(iter_raw_pcm(io.BytesIO(pcm44.tobytes()), 44100, SR, 0.02)))
    assert abs(len(back) - len(audio)) <= 32
    n = min(len(back), len(audio))
    assert np.corrcoef(back[:n], audio[:n])[0, 1] > 0.99


def test_an_error_of_the_audio_source_mid_stream_stops_it_and_leaves_no_file(model, tmp_path):
    from lokitalk.errors import InputError
    from lokitalk.speak import SpeakConfig
    from lokitalk.speak.stream import rechunk, stream_speak

    def breaks(pieces):
        for n, piece in enumerate(pieces):
            if n == 60:  # 2.4 s in: frames have been written by then
                raise InputError("speech.m4a has an audio stream that cannot be decoded: damaged packet")
            yield piece

    out = tmp_path / "broken.mp4"
    with pytest.raises(InputError, match="cannot be decoded"):
        stream_speak(model / "model", breaks(rechunk([speech(4.0)], 640)), out, SpeakConfig(head_motion="still"),
                     device="cpu")
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_the_stream_prior_is_stored_with_the_model_and_falls_back_to_the_persons_clip(tmp_path, avatar):
    from lokitalk.audio2motion.io import load_audio2motion, load_audio_prior, save_audio2motion
    from lokitalk.audio2motion.predict import band_statistics, pooled_band_statistics
    from lokitalk.speak.lips import lip_driver
    from lokitalk.speak.stream_lips import default_prior

    # pooled statistics of equal-length recordings = the statistics of them end to end
    a, b = speech(2.0, seed=1), 0.3 * speech(2.0, seed=2)
    stats = [band_statistics(a, avatar.audio_spec), band_statistics(b, avatar.audio_spec)]
    from lokitalk.prepare.audio_features import log_mel

    both = np.concatenate([log_mel(a, avatar.audio_spec), log_mel(b, avatar.audio_spec)]).astype(np.float64)
    pooled = pooled_band_statistics(stats)
    np.testing.assert_allclose(pooled[0], both.mean(0), rtol=1e-9)
    np.testing.assert_allclose(pooled[1], both.var(0), rtol=1e-6)

    model, basis, info = load_audio2motion()
    with_prior = save_audio2motion(tmp_path / "with.safetensors", model, basis, info, pooled)
    back = load_audio_prior(with_prior)
    np.testing.assert_allclose(back[0], pooled[0], rtol=1e-6)
    np.testing.assert_allclose(back[1], pooled[1], rtol=1e-6)
    assert lip_driver(avatar, adapt=False, model_path=with_prior).audio_prior is not None
    without = save_audio2motion(tmp_path / "without.safetensors", model, basis, info)
    driver = lip_driver(avatar, adapt=False, model_path=without)
    assert driver.audio_prior is None and load_audio_prior(without) is None
    np.testing.assert_allclose(default_prior(driver)[0], band_statistics(avatar.audio(), avatar.audio_spec)[0])


def test_an_interrupted_stream_says_its_file_was_not_written(tmp_path, capsys, monkeypatch):
    import lokitalk.speak.stream as stream_module
    from lokitalk.media.audio import write_wav

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stream_module, "stream_speak", interrupted)
    audio = write_wav(tmp_path / "a.wav", speech(1.0))
    out = tmp_path / "live.mp4"
    code, _, err = run_cli(["stream", tmp_path, "--audio", audio, "--out", out], capsys)
    assert code == 130 and "was not written" in err and "resume" not in err
