"""`lokitalk stream`: speech that arrives while it is spoken in, talking-head frames out as soon
as they can be made (a live digital human).

`speak` plans a whole file before its first frame. Here the audio comes in pieces (a microphone
pipe, a TTS engine writing as it speaks, a file read at its own pace) and each frame is rendered,
watermarked and written as soon as its signals are final:

- the signals (stream_plan.py `StreamPlanner`): lips from `StreamingLips` (stream_lips.py),
  Audio2Motion with a running utterance normalisation, final ~0.33 s of audio after the frame's
  own time (its window and the smoothing); blinks at the person's rate from their own blink
  library; the `replay` head motion planned one segment at a time, or `still` (`reference`
  replays the test split and has no meaning for live speech);
- this module: the audio source read on its own thread, the frames rendered, watermarked and
  written as they become final.

The output is a fragmented MP4 (media/video_writer.py `LiveVideoWriter`) with the audio muxed in sync,
to a file (renamed into place when the stream ends) or to stdout for a player or a restreamer
(`lokitalk stream MODEL --audio - --out - | ffplay -`). Every frame carries the invisible
watermark and the file the AI-generated manifest, as `speak`'s do; C2PA signing needs the
finished file, so a stream is not signed (sign a recording with `speak`).

Latency (reported per frame): the time from the arrival of a frame's last audio sample to the
frame being written. It is the lookahead plus the rendering time; a stream rendered more slowly
than real time falls behind and its latency grows (the summary says so).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from ..errors import InputError
from .audio_input import SAMPLE_RATE
from .config import SpeakConfig
from .stream_lips import StreamLipsConfig
from .stream_plan import StreamedFrame, StreamPlanner

def rechunk(pieces: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Audio pieces of any size -> pieces of `size` samples (the last may be shorter)."""
    held = np.zeros(0, np.float32)
    for piece in pieces:
        held = np.concatenate([held, np.asarray(piece, np.float32).reshape(-1)])
        while len(held) >= size:
            yield held[:size]
            held = held[size:]
    if len(held):
        yield held


def paced(pieces: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Deliver each piece when it would have finished arriving from a live source: piece i once
    its last sample's time has passed since the first piece (a file standing in for a microphone)."""
    start, sent = None, 0
    for piece in pieces:
        sent += len(piece)
        if start is None:
            start = time.perf_counter() - sent / sample_rate
        delay = start + sent / sample_rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield piece


class _Clock:
    """When each piece of audio arrived, to measure each frame's latency. Frames ask in order,
    so what is older than the frame asked about is forgotten (bounded on endless streams)."""

    def __init__(self):
        self.pieces: deque[tuple[int, float]] = deque()  # (samples received after the piece, arrival)

    def arrived(self, samples: int, when: float) -> None:
        self.pieces.append((samples, when))

    def time_of(self, sample: int) -> float:
        """When the piece holding sample index `sample - 1` arrived (the last piece if beyond)."""
        while len(self.pieces) > 1 and self.pieces[0][0] < sample:
            self.pieces.popleft()
        return self.pieces[0][1]


class _Reader:
    """Reads the audio source on its own thread and stamps each piece with its arrival time, so
    that a source that keeps arriving while a frame renders (a pipe, a paced file) is neither
    held up nor timed late. `get` returns (piece, time), None when nothing has arrived yet (with
    block=False), or END; an error of the source is raised here."""

    END = object()

    def __init__(self, pieces: Iterable[np.ndarray]):
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(pieces,), daemon=True, name="lokitalk-audio")
        self.thread.start()

    def _run(self, pieces: Iterable[np.ndarray]) -> None:
        try:
            for piece in pieces:
                self.queue.put((np.asarray(piece, np.float32).reshape(-1), time.perf_counter()))
            self.queue.put(self.END)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self.queue.put(err)

    def get(self, block: bool):
        try:
            item = self.queue.get(block=block)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item


def stream_speak(model_dir: Path, audio: Iterable[np.ndarray], out: Path | BinaryIO, config: SpeakConfig = SpeakConfig(),
                 lips_config: StreamLipsConfig = StreamLipsConfig(), device: str = "auto",
                 show_progress: bool = False, max_latency_s: float | None = None) -> dict:
    """Render MODEL_DIR's person saying the audio pieces of `audio` (float32 mono at 16 kHz, as
    they arrive) into `out` (a path: written under a temporary name, renamed at the end; or a
    binary file object such as stdout). Returns a summary with the per-frame latency.
    `max_latency_s`: a frame whose audio arrived longer ago than this is not rendered; the last
    frame is shown again (a live stream that cannot keep up drops frames instead of falling
    ever further behind). None: every frame is rendered, however late.
    Bad input raises InputError; a stream shorter than `config.min_audio_s` writes nothing."""
    from ..data.avatar import resize_image
    from ..media.video_writer import LiveVideoWriter
    from ..provenance.stamp import manifest, manifest_tags, next_serial, payload_for
    from ..provenance.watermark import FrameStamper
    from ..render.frames import render_frame
    from .api import check_config, check_output, load_speaker
    from .lip_gain import load_lip_gain
    from .lips import lip_driver

    started = time.perf_counter()
    check_config(config)
    if config.sign_cert is not None or config.sign_key is not None:
        raise InputError("a stream is not C2PA-signed (signing needs the finished file): sign a recording with "
                         "`lokitalk speak --sign-cert ... --sign-key ...`")
    if isinstance(out, (str, Path)):
        out = Path(out)
        check_output(out)
    model_dir = Path(model_dir)
    trained, avatar, dev = load_speaker(model_dir, device)
    lip_gain = load_lip_gain(model_dir) if config.lip_gain is None else float(config.lip_gain)
    driver = lip_driver(avatar, config.adapt, config.audio2motion, device="cpu")
    planner = StreamPlanner(avatar, driver, config, lip_gain, lips_config)

    camera = avatar.camera.scaled(trained.image_scale)
    background = resize_image(avatar.background(), camera)
    serial = next_serial(model_dir)
    meta = manifest(trained.meta, serial, "stream")
    stamp = FrameStamper(payload_for(trained.meta, serial))
    writer = LiveVideoWriter(out, avatar.fps, SAMPLE_RATE, config.crf, manifest_tags(meta))
    hop = SAMPLE_RATE / avatar.fps
    min_samples = int(round(config.min_audio_s * SAMPLE_RATE))
    clock, latencies = _Clock(), []
    report = _Progress(show_progress)
    ready_at = None

    last_image, repeated = None, 0

    def render(frames: list[StreamedFrame]) -> None:
        nonlocal last_image, repeated
        for item in frames:
            arrived = clock.time_of(int(round((item.index + 1) * hop)))
            if (max_latency_s is not None and last_image is not None
                    and time.perf_counter() - arrived > max_latency_s):
                image = last_image  # behind: hold the last frame, keep picture and sound in step
                repeated += 1
            else:
                with trained.acceleration.autocast(trained.device):
                    image = stamp(render_frame(trained.model, avatar, item.conditioning, trained.grid,
                                               trained.render_config, background, scale=trained.image_scale))
                last_image = image
            writer.write(image)
            latencies.append(time.perf_counter() - arrived)
            report(len(latencies), latencies[-1])

    received = 0
    reader = _Reader(audio)
    pending: deque[StreamedFrame] = deque()
    try:
        while True:
            # wait for audio only when there is nothing to render; else take what has arrived
            item = reader.get(block=not pending or received < min_samples)
            if item is reader.END:
                break
            if item is not None:
                piece, when = item
                if len(piece):
                    received += len(piece)
                    clock.arrived(received, when)
                    writer.add_audio(piece)
                    pending.extend(planner.push(piece))
            if pending and received >= min_samples:  # nothing is written before the stream is long enough
                ready_at = ready_at or time.perf_counter()
                render([pending.popleft()])
        if received < min_samples:
            raise InputError(f"the stream held {received / SAMPLE_RATE:.2f} s of audio: at least "
                             f"{config.min_audio_s:g} s of speech is needed")
        ready_at = ready_at or time.perf_counter()
        render(list(pending) + planner.finish())
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        report(None, None)
    elapsed = time.perf_counter() - started
    frames = len(latencies)
    lat = np.asarray(latencies) * 1e3
    rendering_s = time.perf_counter() - ready_at
    return {
        "out": str(out) if isinstance(out, Path) else "-", "frames": frames, "fps": float(avatar.fps),
        "duration_s": round(frames / avatar.fps, 3), "audio_s": round(received / SAMPLE_RATE, 3),
        "size": [camera.width, camera.height], "serial": serial,
        "consent_id": (trained.meta.get("consent") or {}).get("consent_id"),
        "head_motion": config.head_motion, "head_segments": planner.poses.segments,
        "blinks": len(planner.eyes.placed),
        "blink_rate_per_min": round(60.0 * len(planner.eyes.placed) / (frames / avatar.fps), 1),
        "lips": driver.source, "lip_gain": lip_gain,
        "lookahead_ms": round(1e3 * planner.lips.lookahead_samples / SAMPLE_RATE, 1),
        "latency_ms": {"median": round(float(np.median(lat)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "max": round(float(lat.max()), 1)},
        "frames_repeated": repeated, "render_fps": round(frames / max(rendering_s, 1e-9), 2), "device": str(dev),
        "elapsed_s": round(elapsed, 2),
    }


class _Progress:
    """A line on stderr every two seconds (stdout may be carrying the video)."""

    def __init__(self, show: bool):
        self.show, self.last = show, 0.0

    def __call__(self, frames: int | None, latency: float | None) -> None:
        if not self.show:
            return
        now = time.perf_counter()
        if frames is None:
            print(file=sys.stderr)
        elif now - self.last >= 2.0:
            self.last = now
            print(f"\rstream: {frames} frames, latency {latency * 1e3:.0f} ms", end="", file=sys.stderr, flush=True)
