"""`lokitalk demo`: the whole pipeline on a self-made subject, with no data, no network, no GPU.

Steps (each cached in OUT/steps/NAME.json; a re-run skips what is done and resumes training):

1. subject   the synthetic astronaut speaking a short script (offline TTS: eSpeak NG), its
             ground truth (pose, blinks, mouth) and a consent record (nobody real is shown);
             plus a *different* sentence for step 5 and the subject's true mouth track for it
2. prepare   `lokitalk prepare` on the video
3. train     `lokitalk train` (tiny preset by default; from a prior when one is given)
4. calibrate `lokitalk calibrate-lips`: the model's lip gain, measured on its training frames driven
             by the lips speak plans from their own audio
5. speak     `lokitalk speak` of the new sentence -> OUT/spoken.mp4 (watermarked)
6. evaluate  `lokitalk evaluate` on the held-out frames, beside the trivial baselines
7. check     prepare against the ground truth; the spoken video's mouth against the true track
8. verify    `lokitalk verify` of OUT/spoken.mp4
9. report    OUT/report/index.html with the plots and frames; OUT/metrics.json
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

TRAINING_SCRIPT = (
    "Hello. I am a synthetic astronaut, made from a public domain photograph.",
    "My lips follow the words that I say, and my eyes blink now and then.",
    "Watch my mouth open wide on the vowels, and close on the letters p, b and m.",
    "This short video is all the training data that the model will ever see.",
    "After a few minutes of training, I will say a sentence that I never said before.",
)
NEW_SENTENCE = "Good morning! Today we are flying over the ocean, and the view from up here is amazing."
SUBJECT_NAME = "synthetic subject (public-domain NASA portrait, animated; speech by eSpeak NG)"

STEPS = ("subject", "prepare", "train", "calibrate", "speak", "evaluate", "check", "verify", "report")


CPU_STEPS = 4000  # ~2.5 min of training on an idle 2-core CPU, the whole demo ~3.5 min (docs/RESULTS.md)
GPU_STEPS = 6000


@dataclass(frozen=True)
class DemoConfig:
    size: int = 256  # the subject video's frame size (px); the tiny preset trains at half of it
    script: tuple[str, ...] = TRAINING_SCRIPT  # what the subject says in the training video
    sentence: str = NEW_SENTENCE  # what the trained model is made to say
    preset: str = "tiny"
    steps: int | None = CPU_STEPS  # training steps (None: the preset's); the CLI picks CPU_STEPS / GPU_STEPS
    device: str = "auto"  # auto: CUDA when there is one
    eval_frames: int | None = None  # evaluate N evenly spaced test frames (None: all)
    prior: Path | None = None  # a pretrained prior (lokitalk pretrain) to start training from
    seed: int = 0
    extra: dict = field(default_factory=dict)  # reserved: recorded in metrics.json

    def key(self, *names: str) -> str:
        d = asdict(self)
        d["prior"] = None if self.prior is None else str(self.prior)
        return json.dumps({n: d[n] for n in names}, sort_keys=True, default=str)


# what each step depends on (a change redoes that step and every later one)
_STEP_INPUTS = {
    "subject": ("size", "script", "sentence", "seed"),
    "prepare": (),
    "train": ("preset", "steps", "prior", "seed"),
    "calibrate": (),
    "speak": ("seed",),
    "evaluate": ("eval_frames",),
    "check": (),
    "verify": (),
    "report": (),
}


class _Display:
    """Step headers and timings on the console (rich); steps with their own progress bars show them."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        if not quiet:
            from rich.console import Console

            self.console = Console()

    def print(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False)

    def status(self, text: str):
        import contextlib

        if self.quiet:
            return contextlib.nullcontext()
        return self.console.status(text)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_demo(out: Path, config: DemoConfig | None = None, quiet: bool = False,
             on_step: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the demo into OUT; returns the metrics written to OUT/metrics.json."""
    config = config or DemoConfig()
    out = Path(out)
    (out / "steps").mkdir(parents=True, exist_ok=True)
    show = _Display(quiet)
    from ..train.trainer import choose_device

    device = str(choose_device(config.device))
    show.print(f"[bold]lokitalk demo[/bold] -> {out}   (device {device}, preset {config.preset}, "
               f"{config.steps or 'preset'} steps)")
    started = time.perf_counter()
    results: dict[str, dict] = {}
    chain = ""
    redo = False
    for index, name in enumerate(STEPS, 1):
        chain = _digest(chain + name + config.key(*_STEP_INPUTS[name]))
        marker = out / "steps" / f"{name}.json"
        label = f"[{index}/{len(STEPS)}] {name}"
        cached = None
        if marker.exists() and not redo:
            saved = json.loads(marker.read_text())
            if saved.get("key") == chain:
                cached = saved["result"]
        if cached is not None and name != "report":
            results[name] = cached
            show.print(f"[dim]{label}: done before ({cached.get('elapsed_s', 0):.1f} s)[/dim]")
            continue
        redo = True  # everything after a redone step is redone too
        if on_step is not None:
            on_step(name)
        show.print(f"[bold cyan]{label}[/bold cyan] {_DESCRIPTIONS[name]}")
        t0 = time.perf_counter()
        result = _STEP_FUNCTIONS[name](out, config, device, results, show)
        result["elapsed_s"] = round(time.perf_counter() - t0, 2)
        results[name] = result
        marker.write_text(json.dumps({"key": chain, "result": result}, indent=2, default=_jsonable))
        show.print(f"{label}: done in {result['elapsed_s']:.1f} s")
    total = round(time.perf_counter() - started, 1)
    metrics = json.loads((out / "metrics.json").read_text())
    show.print(f"[bold green]demo finished[/bold green] in {total:.0f} s: video {out / 'spoken.mp4'}, "
               f"report {out / 'report' / 'index.html'}")
    return metrics


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


# --------------------------------------------------------------------------- steps


def _step_subject(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    from ..media.audio import write_wav
    from ..media.video_writer import write_video
    from ..provenance.consent import create_consent, default_consent_path, save_consent
    from ..synth.subject import make_talking_clip, write_clip
    from ..synth.tts import join_speech, speech_for_text

    folder = out / "subject"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with show.status("speaking the script (eSpeak NG) and animating the subject"):
        script = join_speech([speech_for_text(s, seed=config.seed + k) for k, s in enumerate(config.script)])
        clip = make_talking_clip(duration_s=None, size=config.size, seed=config.seed, speech=script)
        video = write_clip(clip, folder / "talking_astronaut.mp4")
        consent = save_consent(create_consent(video, SUBJECT_NAME), default_consent_path(video))
        np.savez(folder / "truth.npz", head_roll_deg=clip.head_roll_deg, head_shift_px=clip.head_shift_px,
                 head_scale=clip.head_scale, mouth_opening=clip.mouth_opening, eye_closure=clip.eye_closure,
                 blink_frames=np.array(clip.blink_frames, np.int64).reshape(-1, 2))
        (folder / "script.txt").write_text("\n".join(config.script) + "\n")
        # the new sentence, and the subject saying it: the true mouth track speak should reproduce
        sentence = speech_for_text(config.sentence, seed=config.seed + 100)
        write_wav(folder / "sentence.wav", sentence.audio, sentence.sample_rate)
        (folder / "sentence.txt").write_text(config.sentence + "\n")
        reference = make_talking_clip(duration_s=None, size=config.size, seed=config.seed + 1, speech=sentence)
        write_video(folder / "reference.mp4", reference.frames, reference.fps, audio=reference.audio,
                    sample_rate=reference.sample_rate)
        np.savez(folder / "sentence_truth.npz", mouth_opening=reference.mouth_opening,
                 words=np.array([w for _, w in sentence.words]), word_times=np.array([t for t, _ in sentence.words]))
    return {"video": str(video), "consent": str(consent), "frames": clip.num_frames,
            "duration_s": round(clip.duration_s, 2), "blinks": len(clip.blink_frames), "tts": script.engine,
            "sentence_s": round(sentence.duration_s, 2), "size": config.size}


def _step_prepare(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    from ..prepare.pipeline import prepare
    from ..prepare.runner import Reporter

    avatar = out / "avatar"
    for stale in (avatar, avatar.with_name("avatar.partial")):
        if stale.exists():  # made from an older subject video
            shutil.rmtree(stale)
    summary = prepare(Path(results["subject"]["video"]), avatar, reporter=Reporter(quiet=show.quiet))
    keys = ("frames", "width", "face_coverage", "focal_px", "reprojection_error_px", "blinks", "av_offset_ms",
            "elapsed_s")
    return {k: summary.get(k) for k in keys}


def _step_train(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    from ..train.config import preset, with_steps
    from ..train.trainer import train

    model = out / "model"
    marker = out / "steps" / "train.partial.json"  # which settings the model folder was started with
    started_with = config.key(*_STEP_INPUTS["train"]) + _digest(json.dumps(results["prepare"], sort_keys=True,
                                                                              default=str))
    resume = model.exists() and marker.exists() and marker.read_text() == started_with
    if model.exists() and not resume:
        shutil.rmtree(model)
    marker.write_text(started_with)
    train_config = with_steps(preset(config.preset), config.steps)
    kwargs = {}
    if config.prior is not None:
        import inspect

        if "prior" not in inspect.signature(train).parameters:
            raise RuntimeError("this LokiTalk has no training from a prior yet (lokitalk pretrain)")
        kwargs["prior"] = config.prior
    if resume:
        show.print("  resuming the training from its last checkpoint")
    summary = train(out / "avatar", model, train_config, device=device, resume=resume,
                    show_progress=not show.quiet, **kwargs)
    if not summary.get("finished"):
        raise RuntimeError(f"training stopped at step {summary.get('steps')}: run the demo again to resume")
    return {"steps": summary["steps"], "preset": config.preset, "last_loss": summary["last_loss"],
            "device": summary["device"], "train_s": summary["elapsed_s"],
            "prior": None if config.prior is None else str(config.prior)}


def _step_calibrate(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    """The model's lip gain (lokitalk.speak.lip_gain), which speak then applies; skipped where
    the face mesh is missing (e.g. a GPU box) or finds no face in a briefly trained model."""
    from ..errors import InputError
    from ..speak.lip_gain import GAIN_FILE, calibrate_lip_gain

    (out / "model" / GAIN_FILE).unlink(missing_ok=True)
    try:
        with show.status("calibrating the lip gain on training frames"):
            return calibrate_lip_gain(out / "model", device=device)
    except (ImportError, InputError) as err:
        return {"gain": 1.0, "skipped": str(err).splitlines()[0][:200]}


def _step_speak(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    try:
        from ..speak import speak
    except ImportError as err:
        raise RuntimeError(f"lokitalk speak is not available in this install: {err}") from err
    video = out / "spoken.mp4"
    if video.exists():
        video.unlink()
    summary = speak(out / "model", out / "subject" / "sentence.wav", video, device=device,
                    show_progress=not show.quiet)
    return {k: v for k, v in summary.items() if isinstance(v, (str, int, float, bool, list, type(None)))}


def _step_evaluate(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    from ..evaluate.run import evaluate

    with show.status("rendering the held-out frames and measuring them"):
        return evaluate(out / "model", max_frames=config.eval_frames, device=device)


def _step_check(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    from ..media.video import read_frames
    from .truth import lip_sync, mouth_opening_px, prepare_vs_truth

    with show.status("comparing with the ground truth"):
        truth = dict(np.load(out / "subject" / "truth.npz"))
        prepared = prepare_vs_truth(out / "avatar", truth)
        true_mouth = np.load(out / "subject" / "sentence_truth.npz")["mouth_opening"]
        spoken, _ = mouth_opening_px(read_frames(out / "spoken.mp4"))
        reference, _ = mouth_opening_px(read_frames(out / "subject" / "reference.mp4"))
        np.savez(out / "steps" / "mouth_tracks.npz", truth=true_mouth, spoken=spoken, reference=reference)
        shifted = np.roll(true_mouth, len(true_mouth) // 2)  # chance level: the truth half a clip away
    return {"prepare_vs_truth": prepared,
            "lip_sync": {"spoken_vs_truth": lip_sync(spoken, true_mouth),
                         "reference_vs_truth": lip_sync(reference, true_mouth),
                         "chance_spoken_vs_shifted_truth": lip_sync(spoken, shifted),
                         "note": "mouth opening seen by the face mesh in the video vs the mouth track the "
                                 "synthetic subject follows when it says the sentence; reference = the "
                                 "synthetic subject itself saying it (what a perfect model would score)"}}


def _step_verify(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    with show.status("looking for the watermark and the manifest"):
        return verify_video(out / "spoken.mp4")


def verify_video(video: Path) -> dict:
    """What `lokitalk verify VIDEO` reports, as a dict."""
    from ..provenance import detect_video
    from ..provenance.stamp import read_manifest

    detection = detect_video(video)
    payload = detection.payload
    found = read_manifest(video)
    agree = None
    if found is not None and payload is not None and "watermark" in found:
        mark = found["watermark"]
        agree = (mark.get("model_tag"), mark.get("consent_tag"), mark.get("serial")) == (
            payload.model_id, payload.consent_id, payload.serial)
    result = {"summary": detection.summary(), "watermarked": bool(detection.watermarked),
              "score": round(float(detection.score), 2), "bit_accuracy": round(float(detection.bit_accuracy), 3),
              "frames_used": int(detection.frames_used), "payload": None if payload is None else str(payload),
              "manifest_statement": None if found is None else found.get("statement"),
              "manifest_matches_watermark": agree}
    try:
        from ..provenance.c2pa_sign import read_c2pa

        credentials = read_c2pa(video, None)
        result["c2pa"] = credentials if isinstance(credentials, (dict, type(None), str, bool)) else str(credentials)
    except Exception:  # C2PA is optional (not installed, or not written without a certificate)
        pass
    return result


def _step_report(out: Path, config: DemoConfig, device: str, results: dict, show: _Display) -> dict:
    from .report import write_report

    metrics = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
               "device": device, "steps": {k: v for k, v in results.items()},
               "total_s": round(sum(v.get("elapsed_s", 0.0) for v in results.values()), 1)}
    with show.status("writing the report"):
        path = write_report(out, metrics)
    metrics["report"] = str(path)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, default=_jsonable))
    tmp.replace(out / "metrics.json")
    return {"report": str(path)}


_STEP_FUNCTIONS = {"subject": _step_subject, "prepare": _step_prepare, "train": _step_train,
                   "calibrate": _step_calibrate, "speak": _step_speak,
                   "evaluate": _step_evaluate, "check": _step_check, "verify": _step_verify,
                   "report": _step_report}
_DESCRIPTIONS = {
    "subject": "make the synthetic talking subject (TTS speech, blinks, head motion) and its consent record",
    "prepare": "lokitalk prepare: landmarks, pose, signals, masks, background",
    "train": "lokitalk train: the region NeRF on the prepared frames",
    "calibrate": "lokitalk calibrate-lips: how much the model damps lip motion (speak makes up for it)",
    "speak": "lokitalk speak: the trained model says a new sentence",
    "evaluate": "lokitalk evaluate: held-out frames vs baselines",
    "check": "ground truth: prepare's pose/blinks/mouth, the spoken mouth vs the true track",
    "verify": "lokitalk verify: watermark and manifest of the spoken video",
    "report": "HTML report",
}




def default_steps(preset: str, device: str = "auto") -> int | None:
    """Training steps for the demo: the CPU budget, more on a GPU; the preset's own for fast/full."""
    if preset != "tiny":
        return None
    from ..train.trainer import choose_device

    return GPU_STEPS if choose_device(device).type == "cuda" else CPU_STEPS


def miniature(config: DemoConfig | None = None) -> DemoConfig:
    """A seconds-long setting for tests: two short sentences, small frames, a few steps."""
    return replace(config or DemoConfig(), size=160, steps=20, eval_frames=3,
                   script=("Hello, I am a small test astronaut.", "My mouth moves when I speak."),
                   sentence="Say hello to the camera.")
