"""Audio2Motion on speech that arrives in pieces (a live stream): lip features frame by frame.

`predict_audio` (audio2motion/predict.py) sees the whole utterance before the first frame. A
stream cannot, in two places:

- **Utterance normalisation.** The network's input is the log-mel minus the utterance's mean per
  band, over its overall spread. Here frame k is normalised with the statistics of the mel
  frames received up to the end of its own window, shrunk toward a prior weighted as
  `prior_frames` mel frames (`StreamLipsConfig`, 0.5 s): the log-mel statistics of the audio the
  Audio2Motion was trained on (28 clips, many voices and microphones; stored with the model), or
  the person's own clip where the model file has none. The first frames of a stream therefore
  lean on a typical level instead of a few noisy frames (or a silent start with no spread at
  all); after a few seconds the stream's own statistics dominate, and the result approaches the
  offline one (docs/RESULTS.md, "Streaming"). With `prior_frames = 0` it is the plain running
  statistic.
- **Temporal smoothing.** The zero-phase Gaussian over predicted frames needs `radius` frames
  ahead; a frame is final once their predictions exist, or when the stream ends (the last frame
  repeated beyond it, as `gaussian_filter1d(mode="nearest")`).

Everything else is `predict_audio`'s computation: the same log-mel frames (each computed from the
audio around it: `mel_frames`), the same windows, the same network, style and clamping.

Latency: frame k's window reaches 0.16 s past the frame, and smoothing needs `radius` more frames
(4 at the default sigma of one frame), so frame k is final ~0.33 s after its own time
(`lookahead_samples`). Memory is bounded: only the audio, mel frames and predictions still needed
are kept. Frame k's values depend only on the audio, not on how it was cut into pieces (up to
float rounding of batched matrix products; tests check both against `predict_audio`'s pieces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..audio2motion.predict import band_statistics, mel_frames, num_mel_frames
from ..prepare.audio_features import log_mel
from .lips import LipDriver, predicted_opening


@dataclass(frozen=True)
class StreamLipsConfig:
    # weight of the prior statistics, in mel frames (10 ms each): 0.5 s of speech. Against the
    # offline lips on 12 recordings (docs/RESULTS.md, "Streaming"), with the training audio's
    # prior: 0 -> 50 raises the mean correlation over the first 2 s from 0.75 to 0.90 (worst
    # 0.33 -> 0.84) and is level after; 100 or 200 cost more later (0.91, 0.86 over 2-5 s)
    prior_frames: int = 50


@dataclass
class LipFrames:
    """Lip signals of consecutive frames first .. first + len - 1."""
    first: int
    lip_feature: np.ndarray  # [n,K] the avatar's own lip feature (after gain and clamping)
    shared: np.ndarray  # [n,K'] Audio2Motion's prediction in the shared space (after style)
    opening: np.ndarray  # [n] predicted mouth opening (metres)


def default_prior(driver: LipDriver) -> tuple[np.ndarray, np.ndarray]:
    """The running normalisation's prior: the Audio2Motion's training audio (28 clips, many
    microphones) when its file carries it, else the person's own clip."""
    if driver.audio_prior is not None:
        return driver.audio_prior
    return band_statistics(driver.avatar.audio(), driver.avatar.audio_spec)


def gaussian_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d's kernel (truncate=4), radius int(4 sigma + 0.5)."""
    if sigma <= 0:
        return np.ones(1)
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


class StreamingLips:
    """Push audio as it arrives (`push`), take the lip features of the frames that became final
    (`take`); `finish` at the end of the stream makes the rest final."""

    def __init__(self, driver: LipDriver, lip_gain: float = 1.0, config: StreamLipsConfig = StreamLipsConfig(),
                 prior: tuple[np.ndarray, np.ndarray] | None = None):
        self.driver, self.lip_gain, self.config = driver, lip_gain, config
        avatar = driver.avatar
        self.fps, self.spec = float(avatar.fps), avatar.audio_spec
        model_config = driver.model.config
        self.window = model_config.input_length
        self.half = self.window // 2
        self.weights = gaussian_weights(model_config.smooth_sigma_frames)
        self.radius = len(self.weights) // 2
        self.floor = np.float32(np.log(self.spec.log_floor))
        mean0, var0 = prior if prior is not None else default_prior(driver)
        n0 = float(config.prior_frames)
        self.prior_s1, self.prior_s2, self.prior_n = n0 * mean0, n0 * (var0 + mean0 ** 2), n0
        # how many mel frames the STFT of frame j reaches before and after its centre
        self.mel_margin = math.ceil(self.spec.n_fft / 2 / self.spec.hop_length)
        # received audio, from sample `audio_base` (a multiple of the hop)
        self.audio = np.zeros(0, np.float32)
        self.audio_base = 0
        self.received = 0
        self.finished = False
        # mel frames computed so far: [mel_base, mel_base + len(mel)); running sums over all of them
        self.mel = np.zeros((0, self.spec.n_mels), np.float32)
        self.mel_base = 0
        self.s1 = np.zeros(self.spec.n_mels)
        self.s2 = np.zeros(self.spec.n_mels)
        self.frame_stats: dict[int, tuple[np.ndarray, float]] = {}  # frame -> its normalisation
        # raw (unsmoothed) predictions of frames [pred_base, pred_base + len(pred))
        self.pred = np.zeros((0, model_config.components))
        self.pred_base = 0
        self.next_output = 0
        self.total_frames: int | None = None  # known once finished

    # ------------------------------------------------------------------ geometry of a frame

    def centre(self, frame: int) -> int:
        """Frame `frame`'s centre mel frame (as windows_for_frames)."""
        return int(np.round(frame / self.fps / self.spec.hop_s))

    def window_end(self, frame: int) -> int:
        """One past the last mel frame of frame `frame`'s window."""
        return self.centre(frame) - self.half + self.window

    @property
    def lookahead_samples(self) -> int:
        """Audio past frame k's own end that frame k waits for (at frame 100; it varies by a hop
        with rounding): its window, the smoothing radius and the STFT's half width."""
        k = 100
        last_mel = self.window_end(k + self.radius) - 1
        need = last_mel * self.spec.hop_length + self.spec.n_fft // 2
        return int(need - round((k + 1) * self.spec.sample_rate / self.fps))

    # ------------------------------------------------------------------ input

    def push(self, audio: np.ndarray) -> None:
        if self.finished:
            raise ValueError("the stream has finished")
        audio = np.asarray(audio, np.float32).reshape(-1)
        self.audio = np.concatenate([self.audio, audio])
        self.received += len(audio)
        self._advance()

    def finish(self) -> None:
        """The stream ended: every frame of the received audio becomes final (the last partial
        frame dropped, as `frames_for`)."""
        if not self.finished:
            self.finished = True
            hop_v = self.spec.sample_rate / self.fps
            self.total_frames = max(1, int(self.received // hop_v))
            self._compute_mel(self._mel_available())
            self._stats_at_end()
            self._predict()

    # ------------------------------------------------------------------ output

    def take(self) -> LipFrames | None:
        """The frames that became final since the last call (None if none did)."""
        ready = self._final_frames()
        if ready <= self.next_output:
            return None
        first = self.next_output
        raw = self._smoothed(first, ready)
        self.next_output = ready
        self._forget()
        driver = self.driver
        shared = driver.style.apply(raw)
        return LipFrames(first, driver.lip_features(shared, self.lip_gain), shared, predicted_opening(driver, shared))

    # ------------------------------------------------------------------ the work

    def _mel_available(self) -> int:
        """Mel frames computable from the audio received so far."""
        if self.finished:
            return num_mel_frames(self.received, self.spec)
        # frame j needs the samples up to j*hop + n_fft/2
        return max(0, (self.received - self.spec.n_fft // 2) // self.spec.hop_length + 1)

    def _advance(self) -> None:
        self._compute_mel(self._mel_available())
        self._predict()

    def _compute_mel(self, stop: int) -> None:
        first = self.mel_base + len(self.mel)
        if stop <= first:
            return
        # mel_frames slices the audio it is given by global indices: hand it the kept audio as if
        # it started at sample 0 (audio_base is a multiple of the hop), then shift back
        offset = self.audio_base // self.spec.hop_length
        if self.finished:
            mel = mel_frames(self.audio, first - offset, stop - offset, self.spec)
        else:
            # the kept audio ends mid-signal: log_mel's zero padding at its end must not reach
            # the frames kept, so compute them from exactly the samples they need
            lo = max(0, first - offset - self.mel_margin)
            hi = (stop - 1 - offset) * self.spec.hop_length + self.spec.n_fft // 2
            segment = self.audio[lo * self.spec.hop_length:hi]
            mel = log_mel(segment, self.spec)[first - offset - lo:stop - offset - lo]
        self._accumulate(first, mel.astype(np.float32))
        self.mel = np.concatenate([self.mel, mel.astype(np.float32)])

    def _accumulate(self, first: int, mel: np.ndarray) -> None:
        """Running sums over mel frames first.., and the normalisation of every frame whose window
        ends among them. np.cumsum adds in order, so the sums do not depend on the pieces."""
        values = mel.astype(np.float64)
        c1 = np.cumsum(np.concatenate([self.s1[None], values]), 0)[1:]
        c2 = np.cumsum(np.concatenate([self.s2[None], values ** 2]), 0)[1:]
        stop = first + len(mel)
        frame = self.pred_base + len(self.pred) + len(self.frame_stats)
        # windows end in order, each after the previous stop (else it was done then)
        while self.window_end(frame) <= stop and (self.total_frames is None or frame < self.total_frames):
            row = self.window_end(frame) - first - 1
            self.frame_stats[frame] = self._normaliser(c1[row], c2[row], self.window_end(frame))
            frame += 1
        self.s1, self.s2 = c1[-1], c2[-1]

    def _stats_at_end(self) -> None:
        """At the end of the stream: the frames whose windows reach past the last mel frame are
        normalised with the statistics of all of them."""
        frame = self.pred_base + len(self.pred) + len(self.frame_stats)
        count = self.mel_base + len(self.mel)
        for frame in range(frame, self.total_frames):
            self.frame_stats[frame] = self._normaliser(self.s1, self.s2, count)

    def _normaliser(self, s1: np.ndarray, s2: np.ndarray, count: int) -> tuple[np.ndarray, float]:
        """utterance_stats' (per-band mean, pooled std) of `count` mel frames, with the prior."""
        n = self.prior_n + count
        mean = (self.prior_s1 + s1) / n
        var = ((self.prior_s2 + s2) / n - mean ** 2).sum() / self.spec.n_mels
        return mean.astype(np.float32), float(max(np.sqrt(max(var, 0.0)), 1e-6))

    def _predict(self) -> None:
        """Raw predictions of every frame whose window (and normalisation) is complete."""
        first = self.pred_base + len(self.pred)
        frames = []
        frame = first
        while frame in self.frame_stats:
            frames.append(frame)
            frame += 1
        if not frames:
            return
        mel_stop = self.mel_base + len(self.mel)
        windows = []
        for frame in frames:
            index = np.arange(self.window_end(frame) - self.window, self.window_end(frame))
            rows = np.where((index >= 0) & (index < mel_stop), index - self.mel_base, -1)
            win = np.where((rows >= 0)[:, None], self.mel[np.maximum(rows, 0)], self.floor)
            mean, std = self.frame_stats.pop(frame)
            windows.append((win - mean) / std)
        model = self.driver.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.stack(windows).astype(np.float32)).to(model.feature_mean.device)
            pred = model(x).double().cpu().numpy()
        model.train(was_training)
        self.pred = np.concatenate([self.pred, pred])

    def _final_frames(self) -> int:
        """Frames before this one are final: their smoothing neighbourhood is predicted."""
        predicted = self.pred_base + len(self.pred)
        if self.finished:
            return predicted
        return max(0, predicted - self.radius)

    def _smoothed(self, first: int, stop: int) -> np.ndarray:
        last = (self.total_frames if self.finished else self.pred_base + len(self.pred)) - 1
        out = np.zeros((stop - first, self.pred.shape[1]))
        frames = np.arange(first, stop)
        for offset, weight in zip(range(-self.radius, self.radius + 1), self.weights):
            index = np.clip(frames + offset, 0, last) - self.pred_base
            out += weight * self.pred[index]
        return out

    def _forget(self) -> None:
        """Drop what no frame will need again (bounded memory on endless streams)."""
        keep_pred = max(self.pred_base, self.next_output - self.radius)
        self.pred = self.pred[keep_pred - self.pred_base:]
        self.pred_base = keep_pred
        next_frame = self.pred_base + len(self.pred)
        keep_mel = max(self.mel_base, min(self.mel_base + len(self.mel), self.window_end(next_frame) - self.window))
        self.mel = self.mel[keep_mel - self.mel_base:]
        self.mel_base = keep_mel
        # audio: the next mel frame's STFT reaches mel_margin hops back
        next_mel = self.mel_base + len(self.mel)
        keep_audio = max(self.audio_base, (next_mel - self.mel_margin - 1) * self.spec.hop_length)
        self.audio = self.audio[keep_audio - self.audio_base:]
        self.audio_base = keep_audio


def reference_stream_lips(driver: LipDriver, audio: np.ndarray, config: StreamLipsConfig = StreamLipsConfig(),
                          prior: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Slow reference of `StreamingLips` on a whole recording: frame by frame, from the whole
    clip's log-mel, each frame normalised with the statistics of the mel frames up to the end of
    its window (with the prior), then scipy's Gaussian. Returns the shared features (after style)."""
    from scipy.ndimage import gaussian_filter1d

    avatar, spec = driver.avatar, driver.avatar.audio_spec
    model_config = driver.model.config
    window, half = model_config.input_length, model_config.input_length // 2
    mean0, var0 = prior if prior is not None else default_prior(driver)
    n0 = float(config.prior_frames)
    mel = log_mel(np.asarray(audio, np.float32), spec).astype(np.float64)
    frames = max(1, int(len(audio) // (spec.sample_rate / avatar.fps)))
    floor = np.log(spec.log_floor)
    rows = []
    for k in range(frames):
        centre = int(np.round(k / avatar.fps / spec.hop_s))
        end = min(centre - half + window, len(mel))
        seen = mel[:end]
        mean = (n0 * mean0 + seen.sum(0)) / (n0 + end)
        second = (n0 * (var0 + mean0 ** 2) + (seen ** 2).sum(0)) / (n0 + end)
        std = max(np.sqrt(max(((second - mean ** 2).sum() / spec.n_mels), 0.0)), 1e-6)
        win = np.full((window, spec.n_mels), floor)
        for i, j in enumerate(range(centre - half, centre - half + window)):
            if 0 <= j < len(mel):
                win[i] = mel[j]
        rows.append((win - mean) / std)
    model = driver.model
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(np.stack(rows).astype(np.float32))).double().numpy()
    model.train(was_training)
    sigma = model_config.smooth_sigma_frames
    if sigma > 0 and len(pred) > 1:
        pred = gaussian_filter1d(pred, sigma, axis=0, mode="nearest")
    return driver.style.apply(pred)
