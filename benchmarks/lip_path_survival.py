"""How often the lip path dies in training: short runs over several seeds, per activation.

    python benchmarks/lip_path_survival.py AVATAR_DIR [--activation relu] [--seeds 10,11,12,13]
        [--steps 1500] [--preset tiny] [--out runs/lip_path]

For each seed: train the region model, then measure `lip_sensitivity` (benchmarks/lip_response.py:
the mouth's mean colour change when the lip feature moves by 2 training standard deviations)
and the test PSNR on 30 test frames. A sensitivity near 0 means no lip feature moves the mouth
any more: the lips will be frozen whatever the speech (with ReLU deformation nets this happened
in some tiny runs; docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from lip_response import lip_sensitivity

from lokitalk.data.avatar import load_avatar
from lokitalk.evaluate.run import evaluate
from lokitalk.train.config import preset
from lokitalk.train.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--seeds", default="10,11,12,13")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--out", type=Path, default=Path("runs/lip_path"))
    args = parser.parse_args()
    avatar = load_avatar(args.avatar)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        config = preset(args.preset, "region")
        config = replace(config, steps=args.steps, seed=seed, model=replace(
            config.model, deformation=replace(config.model.deformation, activation=args.activation)))
        model_dir = args.out / f"{args.avatar.name}_{args.activation}_{seed}"
        shutil.rmtree(model_dir, ignore_errors=True)
        start = time.perf_counter()
        train(args.avatar, model_dir, config, device="cpu", show_progress=False)
        metrics = evaluate(model_dir, max_frames=30, write_video=False)
        row = {"activation": args.activation, "seed": seed, "steps": args.steps,
               "train_s": round(time.perf_counter() - start, 1),
               "lip_sensitivity": round(lip_sensitivity(model_dir, avatar), 4), "psnr": round(metrics["psnr"], 3),
               "psnr_mouth": round(metrics["psnr_mouth"], 3), "lmd": metrics.get("lmd")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / f"{args.avatar.name}_{args.activation}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
