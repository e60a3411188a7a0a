"""Build the shipped Audio2Motion (lokitalk/assets/audio2motion.safetensors).

    .venv/bin/python benchmarks/prepare_all.py            # prepare every clip of ../shared/data first
    .venv/bin/python tools/build_audio2motion.py [--root runs/prepare_all] [--steps 3000]

Fits the shared lip basis and trains Audio2Motion on the train split (never the held-out last
10 %) of every prepared clip under ROOT, all identities at once, identity-balanced
(audio2motion/train.py), and stores the log-mel statistics of that audio (the prior of `lokitalk
stream`'s running normalisation; `--audio-prior-only` adds just these to an existing file). Deterministic for a given set of avatars, seed and thread count. The
file is ~0.5 MB: the weights, the basis and, in its metadata, what it was trained on. It holds
no media, only learnt weights.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from lokitalk.audio2motion.io import SHIPPED, load_audio2motion, save_audio2motion
from lokitalk.audio2motion.model import Audio2MotionConfig
from lokitalk.audio2motion.predict import band_statistics, pooled_band_statistics
from lokitalk.audio2motion.shared_basis import fit_shared_lip_basis, identity_name
from lokitalk.audio2motion.train import TrainConfig, load_motion_clip, train_on_clips
from lokitalk.data.avatar import load_avatar

REPO = Path(__file__).resolve().parents[1]


def training_audio_prior(avatars) -> tuple:
    """Log-mel statistics of the clips' training audio, each clip weighted equally: the prior of a
    stream's running normalisation (lokitalk/speak/stream_lips.py)."""
    stats = []
    for avatar in avatars:
        train = np.asarray(avatar.split.train, int)
        stats.append(band_statistics(avatar.audio_for_frames(int(train[0]), int(train[-1])), avatar.audio_spec))
    return pooled_band_statistics(stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "prepare_all")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=SHIPPED)
    parser.add_argument("--audio-prior-only", action="store_true", help="keep OUT's weights, basis and info; "
                        "(re)compute only the training audio's log-mel statistics (the stream prior)")
    args = parser.parse_args()
    avatars = [load_avatar(p.parent) for p in sorted(args.root.glob("*/summary.json"))]
    if len(avatars) < 2:
        raise SystemExit(f"need prepared clips under {args.root} (run benchmarks/prepare_all.py)")
    prior = training_audio_prior(avatars)
    if args.audio_prior_only:
        model, basis, info = load_audio2motion(args.out)
        info["audio_prior"] = {"clips": [a.root.name for a in avatars], "frames": "train split of each clip"}
        path = save_audio2motion(args.out, model, basis, info, prior)
        print(f"{path}: audio prior of {len(avatars)} clips added; weights unchanged")
        return
    basis = fit_shared_lip_basis(avatars, 16)
    clips = [load_motion_clip(a, basis) for a in avatars]
    config = TrainConfig(steps=args.steps, seed=args.seed, threads=1)
    model_config = Audio2MotionConfig(components=16)
    start = time.perf_counter()
    model, history = train_on_clips(clips, basis, config, model_config)
    info = {"clips": [a.root.name for a in avatars], "identities": sorted({identity_name(a) for a in avatars}),
            "frames": "train split of each clip (held-out test frames never used)", "steps": args.steps,
            "seed": args.seed, "train_s": round(time.perf_counter() - start, 1), "final": history[-1],
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "built_by": "tools/build_audio2motion.py"}
    info["audio_prior"] = {"clips": [a.root.name for a in avatars], "frames": "train split of each clip"}
    path = save_audio2motion(args.out, model, basis, info, prior)
    print(f"{path}: {len(clips)} clips of {len(info['identities'])} identities, {args.steps} steps in "
          f"{info['train_s']} s, final {history[-1]}; {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
