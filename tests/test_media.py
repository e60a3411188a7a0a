"""lokitalk.media on small synthetic clips made here with PyAV (plus one optional real clip).

Each source frame i carries its index as 8 black/white stripes (bit b of i in stripe b), which
survives lossy coding, so a test can tell exactly which source frame an output frame shows.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lokitalk.errors import InputError
from lokitalk.media import (
    SAMPLE_RATE,
    has_audio_stream,
    iter_frames,
    load_audio,
    probe_video,
    read_frames,
    write_video,
    write_wav,
)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BITS = 8


# --------------------------------------------------------------------------- synthetic media


def index_image(i: int, width: int, height: int) -> np.ndarray:
    """RGB frame whose 8 vertical stripes spell `i` in binary (stripe 0 = least significant bit)."""
    img = np.zeros((height, width, 3), np.uint8)
    edges = np.linspace(0, width, BITS + 1).astype(int)
    for b in range(BITS):
        if (i >> b) & 1:
            img[:, edges[b] : edges[b + 1]] = 255
    return img


def read_index(img: np.ndarray) -> int:
    """Inverse of index_image, reading only the middle of each stripe (edges blur under coding)."""
    width = img.shape[1]
    edges = np.linspace(0, width, BITS + 1).astype(int)
    value = 0
    for b in range(BITS):
        lo, hi = edges[b], edges[b + 1]
        pad = (hi - lo) // 4
        if img[:, lo + pad : hi - pad].mean() > 128:
            value |= 1 << b
    return value


def encode_clip(
    path: Path,
    times: list[Fraction],
    codec: str = "libx264",
    size: tuple[int, int] = (64, 48),
    rate: Fraction = Fraction(25),
    time_base: Fraction | None = None,
    pix_fmt: str = "yuv420p",
    faststart: bool = False,
    codec_options: dict[str, str] | None = None,
) -> Path:
    """Encode frame i (showing index i) at presentation time times[i] seconds."""
    width, height = size
    time_base = time_base or 1 / rate
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        stream = out.add_stream(codec, rate=rate, options=codec_options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 2_000_000  # default 200k smears the stripes
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(index_image(i, width, height), format="rgb24")
            frame.pts, frame.time_base = int(t / time_base), time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def constant_rate_clip(path: Path, n: int, rate: Fraction, **kw) -> Path:
    return encode_clip(path, [i / rate for i in range(n)], rate=rate, **kw)


def tone(seconds: float, rate: int, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode_audio(path: Path, samples: np.ndarray, rate: int, codec: str, fmt: str) -> Path:
    """Encode float samples (channels, n) with PyAV; skips the test if the encoder is missing."""
    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg in PyAV lacks the {codec} encoder")
    layout = {1: "mono", 2: "stereo"}[samples.shape[0]]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, samples.shape[1], 1152):
            chunk = np.ascontiguousarray(samples[:, start : start + 1152])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[spectrum.argmax()])


def expected_indices(times: list[float], duration: float, fps: float) -> list[int]:
    """Reference resampling: output k shows the last source frame with time <= k/fps."""
    count = math.floor(duration * fps + 1e-6)
    return [max(i for i, t in enumerate(times) if t <= k / fps + 1e-9) for k in range(count)]


# --------------------------------------------------------------------------- video: resampling


@pytest.mark.parametrize(
    ("codec", "rate", "size"),
    [
        ("libx264", Fraction(30), (64, 48)),
        ("libx264", Fraction(30000, 1001), (64, 48)),
        ("libx264", Fraction(25), (64, 48)),
        ("mpeg4", Fraction(30), (67, 49)),  # odd size: mpeg4 allows it, x264 4:2:0 does not
        ("libx264", Fraction(24), (65, 47)),  # odd size via 4:4:4; 24 -> 25 fps repeats a frame
    ],
)
def test_iter_frames_resamples_by_presentation_time(
    tmp_path: Path, codec: str, rate: Fraction, size: tuple[int, int]
) -> None:
    n = 60
    pix_fmt = "yuv444p" if codec == "libx264" and size[0] % 2 else "yuv420p"
    clip = constant_rate_clip(tmp_path / "clip.mp4", n, rate, codec=codec, size=size, pix_fmt=pix_fmt)

    info = probe_video(clip)
    assert (info.width, info.height, info.num_frames) == (size[0], size[1], n)
    assert info.fps == pytest.approx(float(rate), rel=1e-4)
    assert info.duration_s == pytest.approx(n / rate, abs=1e-3)

    frames = list(iter_frames(clip, fps=25.0))
    want = expected_indices([float(i / rate) for i in range(n)], float(n / rate), 25.0)
    assert len(frames) == len(want) == math.floor(n / rate * 25)
    assert all(f.shape == (size[1], size[0], 3) and f.dtype == np.uint8 for f in frames)
    assert [read_index(f) for f in frames] == want


def test_iter_frames_uses_real_timestamps_for_variable_frame_rate(tmp_path: Path) -> None:
    # Irregular gaps (a phone dropping frames) and a stream that does not start at pts 0.
    # No B-frames: with them, FFmpeg's mp4 muxer derives sample durations from shifted dts and the
    # track's declared duration no longer covers the last VFR frames (0.77 s instead of 1.01 s).
    ms = [130, 170, 210, 330, 370, 380, 500, 700, 740, 780, 900, 1100]
    clip = encode_clip(
        tmp_path / "vfr.mp4",
        [Fraction(t, 1000) for t in ms],
        rate=Fraction(25),
        time_base=Fraction(1, 1000),
        codec_options={"bf": "0"},
    )
    info = probe_video(clip)
    times = [(t - ms[0]) / 1000 for t in ms]
    frames = list(iter_frames(clip, fps=25.0))
    assert len(frames) == math.floor(info.duration_s * 25 + 1e-6)
    assert info.duration_s == pytest.approx(times[-1] + 0.04, abs=0.05)
    assert [read_index(f) for f in frames] == expected_indices(times, info.duration_s, 25.0)


def test_iter_frames_streams_and_yields_independent_arrays(tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "c.mp4", 10, Fraction(10))
    frames = iter_frames(clip, fps=25.0)  # 10 fps -> 25 fps: every source frame shown 2-3 times
    first = next(frames)
    first[:] = 77  # a caller drawing on its frame must not change the next (repeated) one
    second = next(frames)
    assert read_index(second) == 0 and not np.all(second == 77)
    frames.close()  # abandoning the generator must not hang or leak the container


def test_read_frames_applies_transform_per_frame(tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "c.mp4", 30, Fraction(30))
    seen: list[tuple[int, ...]] = []

    def half(img: np.ndarray) -> np.ndarray:
        seen.append(img.shape)
        return img[::2, ::2].copy()

    out = read_frames(clip, fps=25.0, transform=half)
    assert out.shape == (25, 24, 32, 3) and out.dtype == np.uint8
    assert seen == [(48, 64, 3)] * 25
    plain = read_frames(clip, fps=25.0)
    assert plain.shape == (25, 48, 64, 3)
    assert [read_index(f) for f in plain] == expected_indices([i / 30 for i in range(30)], 1.0, 25.0)


# --------------------------------------------------------------------------- video: bad input


def test_truncated_mp4_without_index_is_reported_as_truncated(tmp_path: Path) -> None:
    # Default mp4 muxing puts the index (moov) at the end, so half a file has no index at all.
    clip = constant_rate_clip(tmp_path / "full.mp4", 50, Fraction(25))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        probe_video(cut)
    assert "cut.mp4" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="truncated or corrupt"):
        list(iter_frames(cut))


def test_truncated_mp4_with_index_first_stops_with_position(tmp_path: Path) -> None:
    # faststart puts the index first: the header survives and promises 4 s the data cannot deliver.
    clip = constant_rate_clip(tmp_path / "full.mp4", 100, Fraction(25), faststart=True, size=(128, 96))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    assert probe_video(cut).duration_s == pytest.approx(4.0)
    message = r"cut\.mp4 is truncated or corrupt: video stops at \d+\.\ds of 4\.0s"
    with pytest.raises(InputError, match=message):
        list(iter_frames(cut))


def test_slightly_short_stream_is_padded_not_rejected(tmp_path: Path) -> None:
    # Under 10 % missing is normal muxing slop: repeat the last frame up to the declared length.
    clip = constant_rate_clip(tmp_path / "full.mp4", 100, Fraction(25), faststart=True)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 60])  # lose only the tail of the last frame(s)
    frames = list(iter_frames(cut))
    assert len(frames) == 100
    assert read_index(frames[0]) == 0


def test_garbage_in_the_middle_is_corrupt(tmp_path: Path) -> None:
    clip = constant_rate_clip(tmp_path / "full.mp4", 100, Fraction(25), faststart=True, size=(128, 96))
    data = bytearray(clip.read_bytes())
    start, stop = int(len(data) * 0.4), int(len(data) * 0.7)
    data[start:stop] = np.random.default_rng(0).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"bad\.mp4 is truncated or corrupt"):
        list(iter_frames(bad))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.mp4", b"this is a text file, not a video\n" * 20, "is not a video file"),
        ("empty.mp4", b"", "is empty"),
    ],
)
def test_non_video_files_raise_input_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        probe_video(bad)
    assert name in str(err.value)
    with pytest.raises(InputError, match=message):
        iter_frames(bad)  # checked when called, before any frame is requested


def test_missing_file_directory_and_audio_only_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.mp4 does not exist"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="is a directory"):
        probe_video(tmp_path)
    wav = write_wav(tmp_path / "a.wav", tone(0.2, SAMPLE_RATE))
    with pytest.raises(InputError, match=r"a\.wav is not a video file"):
        probe_video(wav)


# --------------------------------------------------------------------------- audio


def test_load_audio_wav_downmixes_and_resamples(tmp_path: Path) -> None:
    left, right = tone(1.5, 44100, amp=0.6), tone(1.5, 44100, amp=0.2)
    wav = write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), 44100)
    audio = load_audio(wav)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 1.5 * SAMPLE_RATE) <= 0.03 * SAMPLE_RATE
    assert peak_hz(audio, SAMPLE_RATE) == pytest.approx(1000, abs=5)
    # The mono mix is the channel average: amplitude 0.4 (RMS 0.4/sqrt 2) away from the edges.
    middle = audio[1000:-1000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.02)
    assert np.abs(audio).max() <= 1.0


@pytest.mark.parametrize(
    ("codec", "fmt", "name"), [("aac", "ipod", "t.m4a"), ("libmp3lame", "mp3", "t.mp3")]
)
def test_load_audio_compressed_formats(tmp_path: Path, codec: str, fmt: str, name: str) -> None:
    stereo = np.stack([tone(1.5, 44100), tone(1.5, 44100)])
    path = encode_audio(tmp_path / name, stereo, 44100, codec, fmt)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 1.5 * SAMPLE_RATE) <= 0.03 * SAMPLE_RATE
    assert peak_hz(audio, SAMPLE_RATE) == pytest.approx(1000, abs=5)
    assert np.sqrt(np.mean(audio[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_load_audio_other_target_rate(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "m.wav", tone(1.0, 16000, freq=440), 16000)
    audio = load_audio(wav, sample_rate=22050)
    assert abs(len(audio) - 22050) <= 0.03 * 22050
    assert peak_hz(audio, 22050) == pytest.approx(440, abs=5)


def test_load_audio_filters_instead_of_aliasing(tmp_path: Path) -> None:
    # 10 kHz is above the 8 kHz Nyquist limit of 16 kHz audio: a proper resampler removes it, a
    # naive one (decimation, linear interpolation) folds it down to a loud 6 kHz tone.
    wav = write_wav(tmp_path / "hi.wav", tone(1.0, 44100, freq=10000, amp=0.5), 44100)
    audio = load_audio(wav)
    assert np.sqrt(np.mean(audio**2)) < 0.02  # the tone itself has RMS 0.35


def test_load_audio_errors(tmp_path: Path) -> None:
    silent = constant_rate_clip(tmp_path / "silent.mp4", 5, Fraction(25))
    assert not has_audio_stream(silent)
    with pytest.raises(InputError, match=r"silent\.mp4 has no audio stream"):
        load_audio(silent)
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(InputError, match="is a directory"):
        load_audio(tmp_path)
    text = tmp_path / "speech.wav"
    text.write_text("not audio at all\n" * 20)
    with pytest.raises(InputError, match=r"speech\.wav is not an audio or video file"):
        load_audio(text)
    assert not has_audio_stream(text)


def test_write_wav_is_16bit_and_atomic(tmp_path: Path) -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], np.float32)  # 2.0 must clip, not wrap
    path = write_wav(tmp_path / "x.wav", samples, 16000)
    import wave

    with wave.open(str(path)) as w:
        assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 16000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32767, 32767]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


# --------------------------------------------------------------------------- writing video


def test_write_video_round_trip_with_audio(tmp_path: Path) -> None:
    n, fps = 50, 25.0
    frames = (index_image(i, 63, 47) for i in range(n))  # a generator, odd size -> padded to 64x48
    voice = tone(2.0, SAMPLE_RATE, freq=1000)
    out = write_video(tmp_path / "out" / "talk.mp4", frames, fps, audio=voice)

    assert out == tmp_path / "out" / "talk.mp4"
    assert sorted(p.name for p in out.parent.iterdir()) == ["talk.mp4"]  # no temporary left over
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames) == (64, 48, n)
    assert (info.codec, info.has_audio) == ("h264", True)
    assert info.duration_s == pytest.approx(2.0, abs=1e-3)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert container.streams.audio[0].codec_context.name == "aac"

    back = read_frames(out, fps=fps)
    assert back.shape == (n, 48, 64, 3)
    assert [read_index(f[:, :63]) for f in back] == list(range(n))
    audio = load_audio(out)
    assert abs(len(audio) - len(voice)) <= 0.03 * SAMPLE_RATE
    assert peak_hz(audio, SAMPLE_RATE) == pytest.approx(1000, abs=5)


def test_write_video_29_97_without_audio(tmp_path: Path) -> None:
    rate = 30000 / 1001
    out = write_video(tmp_path / "ntsc.mp4", [index_image(i, 64, 48) for i in range(30)], rate)
    info = probe_video(out)
    assert not info.has_audio and info.num_frames == 30
    assert info.fps == pytest.approx(rate, rel=1e-6)
    assert [read_index(f) for f in iter_frames(out, fps=rate)] == list(range(30))


def test_write_video_failure_leaves_nothing(tmp_path: Path) -> None:
    def broken():
        # Enough frames that packets (and the file header) are already written when it fails.
        for i in range(80):
            yield index_image(i, 64, 48)
        raise RuntimeError("renderer crashed")

    target = tmp_path / "render.mp4"
    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(target, broken(), 25.0)
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(ValueError, match="same shape"):
        write_video(target, [index_image(0, 64, 48), index_image(1, 32, 48)], 25.0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- real data


@pytest.mark.real_data
def test_real_clip_30fps_to_25fps() -> None:
    clip = REAL_DATA / "videos" / "id02_a.mp4"
    if not clip.is_file():
        pytest.skip(f"real data not available ({clip})")
    info = probe_video(clip)
    assert (info.width, info.height, info.fps) == (256, 256, 30.0)
    assert info.duration_s == pytest.approx(25.07, abs=0.01)
    count = 0
    for frame in iter_frames(clip, fps=25.0):
        assert frame.shape == (256, 256, 3)
        count += 1
    assert count == math.floor(info.duration_s * 25) == 626
