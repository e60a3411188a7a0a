"""`lokitalk stream` measured against `speak` on the same model and the same speech.

    .venv/bin/python benchmarks/stream_eval.py --model runs/stream/models/id01_a [--seconds 15]
        [--priors 0,50,200] [--out runs/stream/eval_id01]

1. The driving signal (no rendering): the mouth opening `stream` plans (StreamingLips, 20 ms
   pieces) against the one `speak` plans from the whole file, for other people's speech
   (../shared/data/audio: en, de, ja, zh, es, whole files) and the identity's own held-out audio,
   for several prior weights: correlation, relative RMS error and amplitude ratio over 0-2 s,
   2-5 s and after 5 s; and the lag scan of each opening against its speech, pooled.
2. Rendered videos of the first SECONDS of each foreign file, made by `speak` and by `stream` (as
   fast as it can, so that no frame is held): the same measures as benchmarks/speak_eval.py
   (offset, correlation, lip amplitude against the person's own, blinks), and the pooled lag scan.
3. Latency on this machine: one file streamed at its own pace (`paced`, a stand-in for a live
   source), every frame rendered, and again with --max-latency 0.5 s.
JSON in OUT/results.json; videos in OUT/.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speak_eval import DATA, FOREIGN, pooled_sync, slim  # noqa: E402

from lokitalk.data.avatar import load_avatar  # noqa: E402
from lokitalk.evaluate.sync import evaluate_video, sync_offset  # noqa: E402
from lokitalk.media.audio import load_audio, write_wav  # noqa: E402
from lokitalk.speak import SpeakConfig, speak  # noqa: E402
from lokitalk.speak.stream import paced, rechunk, stream_speak  # noqa: E402

SR = 16000
SEGMENTS = (("0-2 s", 0.0, 2.0), ("2-5 s", 2.0, 5.0), ("after 5 s", 5.0, None))


def streamed_opening(driver, audio: np.ndarray, prior_frames: int, gain: float) -> np.ndarray:
    from lokitalk.speak.stream_lips import StreamingLips, StreamLipsConfig

    lips = StreamingLips(driver, gain, StreamLipsConfig(prior_frames))
    out = []
    for piece in rechunk([audio], 320):
        lips.push(piece)
        out.append(lips.take())
    lips.finish()
    out.append(lips.take())
    return np.concatenate([o.opening for o in out if o is not None])


def compare(streamed: np.ndarray, offline: np.ndarray, fps: float) -> dict:
    rows = {}
    for label, a, b in SEGMENTS:
        part = slice(int(a * fps), None if b is None else int(b * fps))
        s, o = streamed[part], offline[part]
        if len(o) < 10:
            continue
        rows[label] = {"r": round(float(np.corrcoef(s, o)[0, 1]), 3),
                       "rel_rms_error": round(float(np.sqrt(np.mean((s - o) ** 2)) / max(o.std(), 1e-12)), 3),
                       "amplitude_ratio": round(float(s.std() / max(o.std(), 1e-12)), 3)}
    return rows


def signal_rows(avatar, model_dir: Path, wavs: dict[str, Path], priors: list[int]) -> dict:
    from lokitalk.speak.audio_input import frames_for
    from lokitalk.speak.lip_gain import load_lip_gain
    from lokitalk.speak.lips import lip_driver, predicted_opening

    driver = lip_driver(avatar)
    gain = load_lip_gain(model_dir)
    rows, pooled = {}, {"offline": ([], []), **{f"prior {p}": ([], []) for p in priors}}
    for label, wav in wavs.items():
        audio = load_audio(wav, SR)
        n, trimmed = frames_for(audio, avatar.fps)
        offline = predicted_opening(driver, driver.shared_features(trimmed, n))
        rows[label] = {"seconds": round(n / avatar.fps, 1)}
        if label != "own held-out audio":
            pooled["offline"][0].append(offline)
            pooled["offline"][1].append(trimmed)
        for prior in priors:
            streamed = streamed_opening(driver, audio, prior, gain)[:n]
            rows[label][f"prior {prior}"] = compare(streamed, offline, avatar.fps)
            if label != "own held-out audio":
                pooled[f"prior {prior}"][0].append(streamed)
                pooled[f"prior {prior}"][1].append(trimmed)
        print(label, json.dumps(rows[label]), flush=True)
    rows["pooled lag scan, other speech"] = {
        key: sync_offset(np.concatenate(o), np.concatenate(a)) for key, (o, a) in pooled.items()}
    print("pooled", json.dumps(rows["pooled lag scan, other speech"]), flush=True)
    return rows


def video_rows(model_dir: Path, clips: dict[str, Path], out: Path, kinds: list[str]) -> dict:
    rows, made = {}, {kind: [] for kind in kinds}
    for label, wav in clips.items():
        for kind in kinds:
            video = out / f"{label}_{kind}.mp4"
            start = time.perf_counter()
            if kind == "speak":
                summary = speak(model_dir, wav, video, SpeakConfig(), device="cpu", show_progress=False)
            else:
                summary = stream_speak(model_dir, rechunk([load_audio(wav, SR)], 320), video, SpeakConfig(),
                                       device="cpu")
            report = slim(evaluate_video(model_dir, video, write=False))
            report.update({"wall_s": round(time.perf_counter() - start, 1), "render_fps": summary["render_fps"]})
            rows.setdefault(label, {})[kind] = report
            made[kind].append(video)
            print(label, kind, json.dumps(report), flush=True)
    rows["pooled lag scan"] = {kind: pooled_sync(videos) for kind, videos in made.items()}
    print("pooled", json.dumps(rows["pooled lag scan"]), flush=True)
    return rows


def latency_rows(model_dir: Path, wav: Path, out: Path) -> dict:
    rows = {}
    for label, limit in (("every frame rendered", None), ("--max-latency 0.5", 0.5)):
        summary = stream_speak(model_dir, paced(rechunk([load_audio(wav, SR)], 320), SR), out / f"paced_{limit}.mp4",
                               SpeakConfig(), device="cpu", max_latency_s=limit)
        rows[label] = {k: summary[k] for k in ("frames", "lookahead_ms", "latency_ms", "frames_repeated",
                                               "render_fps", "size")}
        print("latency", label, json.dumps(rows[label]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--priors", default="0,50,200")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: signal,video,latency")
    parser.add_argument("--kinds", default="speak,stream", help="which commands make the rendered videos")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    meta = json.loads((args.model / "model.json").read_text())
    avatar = load_avatar(meta["avatar"])
    test = np.asarray(avatar.split.test, int)
    own = write_wav(args.out / "own_heldout.wav", avatar.audio_for_frames(int(test[0]), int(test[-1])))
    foreign = {stem.split("_", 1)[1]: DATA / "audio" / f"{stem}.wav" for stem in FOREIGN}
    results = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, torch "
                          f"{torch.__version__}, {torch.get_num_threads()} threads",
               "model": str(args.model), "identity": avatar.root.name}
    skip = set(args.skip.split(","))
    if "signal" not in skip:
        results["driving signal"] = signal_rows(avatar, args.model, {"own held-out audio": own} | foreign,
                                                [int(p) for p in args.priors.split(",")])
    clips = {}
    for label, wav in foreign.items():
        clips[label] = write_wav(args.out / f"{label}_{int(args.seconds)}s.wav",
                                 load_audio(wav, SR)[:int(args.seconds * SR)])
    if "video" not in skip:
        results["videos"] = video_rows(args.model, clips, args.out, args.kinds.split(","))
    if "latency" not in skip:
        results["latency"] = latency_rows(args.model, clips[next(iter(clips))], args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"written: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
