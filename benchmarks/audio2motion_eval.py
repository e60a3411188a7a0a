"""Audio2Motion on speakers it has never heard: leave identities out.

    python benchmarks/audio2motion_eval.py [--root runs/prepare_all] [--holdout id01,id07,vox05,vox12]
        [--steps 1500] [--out runs/audio2motion_eval]

Fits the shared lip basis and trains Audio2Motion on every prepared clip except the held-out
identities (all their clips), then prints per held-out clip: mouth-landmark error (mm) of the
model vs the trivial baseline (the speaker-independent mean feature), mouth-opening correlation
model vs baseline, and the amplitude ratio std(predicted opening) / std(real opening). Then runs
the model on the foreign-language speech of ../shared/data/audio and prints the predicted
opening's spread and its correlation with speech energy. JSON copy in OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lokitalk.audio2motion.model import Audio2MotionConfig
from lokitalk.audio2motion.shared_basis import (IdentityMouth, decode_points, fit_shared_lip_basis,
                                                identity_name, opening_from_mouth, template_mouth)
from lokitalk.audio2motion.train import TrainConfig, _pearson, evaluate_audio2motion, load_motion_clip, train_on_clips
from lokitalk.data.avatar import load_avatar

REPO = Path(__file__).resolve().parents[1]


def foreign_language(model, basis, audio_dir: Path) -> list[dict]:
    from lokitalk.media.audio import load_audio
    from lokitalk.prepare.audio_features import audio_features
    from lokitalk.prepare.av_offset import speech_energy_db

    mouth = IdentityMouth(template_mouth(), 1.0)  # decode on the template's mouth: no identity
    rows = []
    for path in sorted(audio_dir.glob("speech_*_01.wav")):
        audio = load_audio(path, 16000)
        n = int(len(audio) / 16000 * 25)
        opening = opening_from_mouth(decode_points(model.predict_clip(audio_features(audio, n, 25.0)), mouth, basis))
        energy = speech_energy_db(audio, n, 25.0, 16000)
        energy = np.maximum(energy, np.percentile(energy, 99) - 40.0)  # floor silence like av_offset
        rows.append({"language": path.stem.split("_")[1], "seconds": len(audio) / 16000,
                     "opening_std_mm": float(opening.std() * 1e3), "opening_mean_mm": float(opening.mean() * 1e3),
                     "energy_corr": _pearson(opening, energy)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "runs" / "prepare_all"))
    parser.add_argument("--holdout", default="id01,id07,vox05,vox12")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--dropout", type=float, default=Audio2MotionConfig.dropout)
    parser.add_argument("--channels", type=int, default=Audio2MotionConfig.channels)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--context", type=int, default=Audio2MotionConfig.context_frames)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--audio", default=str(REPO.parent / "shared" / "data" / "audio"))
    parser.add_argument("--out", default=str(REPO / "runs" / "audio2motion_eval"))
    args = parser.parse_args()
    holdout = set(args.holdout.split(","))
    avatars = [load_avatar(p.parent) for p in sorted(Path(args.root).glob("*/summary.json"))]
    train_av = [a for a in avatars if identity_name(a) not in holdout]
    test_av = [a for a in avatars if identity_name(a) in holdout]
    print(f"train: {len(train_av)} clips, {len({identity_name(a) for a in train_av})} identities; "
          f"held out: {[a.root.name for a in test_av]}")

    basis = fit_shared_lip_basis(train_av, 16)
    clips = [load_motion_clip(a, basis) for a in train_av]
    config = TrainConfig(steps=args.steps, seed=args.seed, threads=args.threads, verbose=args.verbose)
    start = time.perf_counter()
    model_config = Audio2MotionConfig(components=16, channels=args.channels, dropout=args.dropout,
                                      context_frames=args.context)
    model, history = train_on_clips(clips, basis, config, model_config)
    train_s = time.perf_counter() - start
    print(f"trained {config.steps} steps in {train_s:.0f} s; last loss {history[-1]}")

    held = evaluate_audio2motion(model, basis, test_av, frames="all")
    seen = evaluate_audio2motion(model, basis, clips, frames="test")
    header = (f"{'clip':10s} {'frames':>6s} {'lmk mm':>7s} {'base mm':>7s} {'corr':>6s} {'base':>6s} "
              f"{'amp':>5s} {'open std mm':>11s}")
    print("\nHeld-out identities (all frames):\n" + header)
    for r in held["clips"] + [dict(held["mean"], clip="MEAN", frames=0)]:
        print(f"{r['clip']:10s} {r['frames']:6d} {r['model_landmark_mm']:7.2f} {r['baseline_landmark_mm']:7.2f} "
              f"{r['model_opening_corr']:6.2f} {r['baseline_opening_corr']:6.2f} "
              f"{r['model_amplitude_ratio']:5.2f} {r['real_opening_std_mm']:11.2f}")
    m = seen["mean"]
    print(f"\nSeen identities, their test split (mean of {len(seen['clips'])} clips): lmk {m['model_landmark_mm']:.2f} mm "
          f"vs {m['baseline_landmark_mm']:.2f}, corr {m['model_opening_corr']:.2f}")

    foreign = foreign_language(model, basis, Path(args.audio)) if Path(args.audio).exists() else []
    if foreign:
        print("\nForeign-language speech (decoded on the template mouth):")
        print(f"{'lang':5s} {'s':>5s} {'open std mm':>11s} {'open mean mm':>12s} {'corr(energy)':>12s}")
        for r in foreign:
            print(f"{r['language']:5s} {r['seconds']:5.1f} {r['opening_std_mm']:11.2f} {r['opening_mean_mm']:12.2f} "
                  f"{r['energy_corr']:12.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"holdout": sorted(holdout), "config": asdict(config), "model_config": asdict(model_config), "train_s": train_s, "history": history,
         "held_out": held, "seen_test": seen, "foreign": foreign}, indent=2))
    torch.save({"state": model.state_dict(), "basis": basis.to_arrays()}, out / "model.pt")


if __name__ == "__main__":
    main()
