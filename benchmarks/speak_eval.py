"""`speak` measured: lip sync, lip amplitude and blinks of spoken videos, and the sync measure itself.

    .venv/bin/python benchmarks/speak_eval.py [--models runs/speak/models] [--ids id01_a,id05_a]
        [--seconds 5] [--out runs/speak/eval] [--validate id01_a,id02_a,id04_a,id05_a]

1. Validation of the sync measure (lokitalk/evaluate/sync.py) on real clips: the raw source video
   (with its paired wav) measured against the offset `prepare` found, and a copy whose audio is
   delayed by a further 200 ms (re-encoded): the measure must find offset + 200 ms.
2. For each trained model (MODEL/model.json names its avatar):
   - Audio2Motion alone on the identity's held-out test frames: the shipped shared model vs the
     same adapted to the person (mouth-landmark error, opening correlation, amplitude ratio);
   - the real held-out frames with their audio, measured like a rendered video (what "in sync"
     looks like for this person with this measure);
   - `speak` driven by the identity's own held-out audio with the test split's real poses and
     eyes (`--head-motion reference`): offset, correlation, LMD and head-frame mouth error
     against the real frames, amplitude;
   - `speak` driven by other people's speech (../shared/data/audio: English, German, Japanese,
     Chinese, Spanish; first SECONDS of each) with replayed head motion and synthesised blinks:
     offset, correlation, amplitude, blink rate and length against the person's own; the same
     lag scan on all of them end to end (`pooled_sync`: 4 s is too short for one scan);
   - the lag scan on the driving signal itself (the mouth opening speak plans, before the
     NeRF) for every speech file, whole, and pooled (`signal_sync`).
JSON in OUT/results.json; the videos in OUT/.  `--reuse` measures videos already in OUT again.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from lokitalk.data.avatar import load_avatar
from lokitalk.evaluate.sync import evaluate_video, measure_sync
from lokitalk.media.audio import load_audio, write_wav
from lokitalk.media.video import iter_frames
from lokitalk.media.video_writer import write_video
from lokitalk.speak import SpeakConfig, speak

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
FOREIGN = ["speech_en_01", "speech_de_01", "speech_ja_01", "speech_zh_01", "speech_es_01"]
SR = 16000


def validate_measure(clips: list[str], out: Path) -> list[dict]:
    prepared = {r["clip"]: r for r in json.loads((REPO / "runs" / "prepare_all" / "results.json").read_text())}
    rows = []
    for clip in clips:
        video = DATA / "videos" / f"{clip}.mp4"
        wav = video.with_suffix(".wav")
        audio = load_audio(wav if wav.exists() else video, SR)
        base = measure_sync(video, audio)
        base.pop("_track")
        delayed = np.concatenate([np.zeros(int(0.2 * SR), np.float32), audio])[:len(audio)]
        shifted_path = out / f"validate_{clip}_plus200.mp4"
        if not shifted_path.exists():
            write_video(shifted_path, iter_frames(video, 25.0), 25.0, audio=delayed, sample_rate=SR)
        shifted = measure_sync(shifted_path)
        shifted.pop("_track")
        row = {"clip": clip, "prepare_offset_ms": prepared.get(clip, {}).get("av_off_ms"),
               "measured_ms": base["offset_ms"], "peak": base["peak_correlation"], "confident": base["confident"],
               "plus200_measured_ms": shifted["offset_ms"], "plus200_peak": shifted["peak_correlation"],
               "found_shift_ms": round(shifted["offset_ms"] - base["offset_ms"], 1)}
        print(row, flush=True)
        rows.append(row)
    return rows


def audio2motion_rows(avatar) -> dict:
    from lokitalk.audio2motion.adapt import adapt_to_identity
    from lokitalk.audio2motion.io import load_audio2motion
    from lokitalk.audio2motion.shared_basis import decode_points, opening_from_mouth
    from lokitalk.audio2motion.train import _pearson, evaluate_clip, load_motion_clip

    model, basis, _ = load_audio2motion()
    clip = load_motion_clip(avatar, basis)
    shared = evaluate_clip(model, basis, clip, clip.test_frames)
    adapted, style, report = adapt_to_identity(model, basis, clip)
    pred = style.apply(adapted.predict_clip(clip.windows))[clip.test_frames]
    pts = decode_points(np.ascontiguousarray(pred), clip.mouth, basis)
    real = clip.points[clip.test_frames]
    opening, real_open = opening_from_mouth(pts), opening_from_mouth(real)
    return {"test_frames": int(len(clip.test_frames)),
            "shared": {"landmark_mm": shared["model_landmark_mm"], "opening_corr": shared["model_opening_corr"],
                       "amplitude_ratio": shared["model_amplitude_ratio"]},
            "still_mouth_baseline": {"landmark_mm": shared["baseline_landmark_mm"]},
            "adapted": {"landmark_mm": float(np.linalg.norm(pts - real, axis=-1).mean() * 1e3),
                        "opening_corr": _pearson(opening, real_open),
                        "amplitude_ratio": float(opening.std() / max(real_open.std(), 1e-12)),
                        "gain": report["gain"]}}


def real_test_video(avatar, path: Path) -> Path:
    """The avatar's real held-out frames with their audio, at the size a tiny model renders."""
    import cv2

    test = np.asarray(avatar.split.test, int)
    if not path.exists():
        size = (avatar.camera.width // 2, avatar.camera.height // 2)
        frames = (cv2.resize(avatar.frame(int(i)), size, interpolation=cv2.INTER_AREA) for i in test)
        audio = avatar.audio_for_frames(int(test[0]), int(test[-1]))
        write_video(path, frames, avatar.fps, audio=audio, sample_rate=SR)
    return path


def slim(report: dict) -> dict:
    keys = ["frames", "offset_ms", "peak_correlation", "correlation_at_0", "confident", "opening_std_mm",
            "real_opening_std_mm", "amplitude_ratio", "blinks", "blink_rate_per_min", "blink_frames_mean",
            "real_blink_rate_per_min", "real_blink_frames_mean", "lmd", "mouth_mm"]
    return {k: report[k] for k in keys if k in report}


def signal_sync(avatar, wavs: dict[str, Path]) -> dict:
    """The lag scan on the *driving signal* (the mouth opening speak plans, before the NeRF)
    against the speech: whether Audio2Motion's timing is right, apart from how well a model
    renders it. Whole files; 'pooled' = all other people's speech end to end."""
    from lokitalk.evaluate.sync import sync_offset
    from lokitalk.speak.audio_input import frames_for
    from lokitalk.speak.drive import plan_drive
    from lokitalk.speak.lips import lip_driver

    lips = lip_driver(avatar)
    rows, pool_open, pool_audio = {}, [], []
    for label, wav in wavs.items():
        n, audio = frames_for(load_audio(wav, SR), 25.0)
        drive = plan_drive(avatar, audio, n, SpeakConfig(), lips=lips)
        rows[label] = sync_offset(drive.opening, audio) | {"seconds": round(n / 25.0, 1),
                                                           "opening_std_mm": round(float(drive.opening.std() * 1e3), 2)}
        if label != "own held-out audio":
            pool_open.append(drive.opening)
            pool_audio.append(audio)
    rows["other speech pooled"] = sync_offset(np.concatenate(pool_open), np.concatenate(pool_audio))
    return rows


def pooled_sync(videos: list[Path]) -> dict:
    """One lag scan over several short videos put end to end (their openings and speech energies
    concatenated): a 4 s clip is too short for a reliable scan (speech is rhythmic, a syllable
    away can win), 20 s of them together is not."""
    from lokitalk.evaluate.sync import track_video
    from lokitalk.prepare.av_offset import estimate_offset, speech_energy_db

    openings, energies = [], []
    for video in videos:
        opening = track_video(video)["opening"]
        openings.append(opening)
        energies.append(speech_energy_db(load_audio(video, SR), len(opening), 25.0, SR))
    opening, energy = np.concatenate(openings), np.concatenate(energies)
    est = estimate_offset(opening, energy, 25.0)
    zero = int(np.argmin(np.abs(est.lags_s)))
    return {"videos": len(videos), "frames": int(len(opening)), "offset_ms": round(est.offset_s * 1e3, 1),
            "peak_correlation": round(est.peak_correlation, 3),
            "correlation_at_0": round(float(est.correlations[zero]), 3),
            "confident": bool(est.confident)}


def identity_rows(model_dir: Path, seconds: float, out: Path, reuse: bool = False) -> dict:
    import json as _json

    meta = _json.loads((model_dir / "model.json").read_text())
    avatar = load_avatar(meta["avatar"])
    name = avatar.root.name
    result = {"identity": name, "audio2motion": audio2motion_rows(avatar), "videos": {}}
    print(name, result["audio2motion"], flush=True)
    real = real_test_video(avatar, out / f"{name}_real_test.mp4")
    result["videos"]["real held-out frames"] = slim(evaluate_video(model_dir, real, against_test=True, write=False))
    print(name, "real", result["videos"]["real held-out frames"], flush=True)
    test = np.asarray(avatar.split.test, int)
    resign = out / f"{name}_real_signals.mp4"  # the NeRF re-enacting the test frames from their real signals
    if not (reuse and resign.exists()):
        from lokitalk.evaluate.run import render_test
        from lokitalk.provenance.stamp import manifest, manifest_tags, next_serial, stamp_frames
        from lokitalk.render.loading import load_trained

        trained = load_trained(model_dir, "cpu")
        frames, _ = render_test(trained, avatar, test)
        serial = next_serial(model_dir)
        write_video(resign, stamp_frames(iter(frames), trained.meta, serial), 25.0,
                    audio=avatar.audio_for_frames(int(test[0]), int(test[-1])), sample_rate=SR,
                    metadata=manifest_tags(manifest(trained.meta, serial, "render")))
    result["videos"]["real signals (NeRF ceiling)"] = slim(evaluate_video(model_dir, resign, against_test=True,
                                                                          write=False))
    print(name, "real signals", result["videos"]["real signals (NeRF ceiling)"], flush=True)
    own = write_wav(out / f"{name}_heldout.wav", avatar.audio_for_frames(int(test[0]), int(test[-1])))
    drives = [("own held-out audio", own, "reference")] + [
        (stem.split("_")[1] + "_" + stem.split("_")[2], DATA / "audio" / f"{stem}.wav", "replay") for stem in FOREIGN]
    for label, audio, mode in drives:
        if mode == "replay" and seconds > 0:  # the first SECONDS of other people's speech
            clip = load_audio(audio, SR)[:int(seconds * SR)]
            audio = write_wav(out / f"{label}_{int(seconds)}s.wav", clip)
        video = out / f"{name}_{label.replace(' ', '_')}.mp4"
        start = time.perf_counter()
        summary = {}
        if not (reuse and video.exists()):  # --reuse: measure a video an earlier run left
            summary = speak(model_dir, audio, video, SpeakConfig(head_motion=mode), device="cpu", show_progress=False)
        report = slim(evaluate_video(model_dir, video, against_test=(mode == "reference"), write=False))
        report.update({"speak_s": round(time.perf_counter() - start, 1), "render_fps": summary.get("render_fps"),
                       "driven_blinks_per_min": summary.get("blink_rate_per_min"),
                       "gain": summary.get("amplitude_gain")})
        result["videos"][label] = report
        print(name, label, report, flush=True)
    result["driving signal sync"] = signal_sync(avatar, {"own held-out audio": own} | {
        stem.split("_", 1)[1]: DATA / "audio" / f"{stem}.wav" for stem in FOREIGN})
    print(name, "driving signal", result["driving signal sync"], flush=True)
    result["other speech pooled"] = pooled_sync([out / f"{name}_{label.replace(' ', '_')}.mp4"
                                                 for label, _, mode in drives if mode == "replay"])
    print(name, "pooled", result["other speech pooled"], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO / "runs" / "speak" / "models")
    parser.add_argument("--ids", default="id01_a,id05_a")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--validate", default="id01_a,id02_a,id04_a,id05_a")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "speak" / "eval")
    parser.add_argument("--reuse", action="store_true", help="measure spoken videos already in OUT again "
                        "instead of rendering them")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores", "seconds": args.seconds}
    results["validation"] = validate_measure([c for c in args.validate.split(",") if c], args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    results["identities"] = []
    for ident in [i for i in args.ids.split(",") if i]:
        results["identities"].append(identity_rows(args.models / ident, args.seconds, args.out, args.reuse))
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"written: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
