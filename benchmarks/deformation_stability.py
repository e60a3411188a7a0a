"""Do the deformation nets blow up early in training? Seeds x offset scales, a few hundred steps each.

    python benchmarks/deformation_stability.py AVATAR_DIR [--preset fast] [--deformation region]
        [--schedule-steps 3000] [--stop-after 250] [--seeds 0,1,2,3] [--offset-scales 1.0,0.1]
        [--warmups 0] [--out runs/deformation_stability]

Each run trains the preset with its full learning-rate schedule (`--schedule-steps`) but stops
after `--stop-after` steps (a multiple of the preset's checkpoint interval): a blow-up happens in
the first 50-200 steps, while the learning rate is near its start. Printed, one JSON row a run:
the mean training PSNR of the last 50 logged steps, and for a region model the median face- and
torso-stage displacement of the occupied points (benchmarks/displacement_probe.py; healthy id01
models: a few cm; a blown-up one: metres, every sample thrown out of the field's box, where
density and its gradient are zero, so the run cannot recover).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from ablation import configured
from displacement_probe import probe

from lokitalk.train.config import preset
from lokitalk.train.trainer import train


def training_psnr(model_dir: Path, last_steps: int = 50) -> float:
    with open(model_dir / "train_log.csv") as handle:
        rows = [(int(r["step"]), float(r["psnr"])) for r in csv.DictReader(handle)]
    end = rows[-1][0]
    tail = [p for s, p in rows if s > end - last_steps]
    return round(sum(tail) / len(tail), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--deformation", default="region")
    parser.add_argument("--schedule-steps", type=int, default=3000)
    parser.add_argument("--stop-after", type=int, default=250)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--offset-scales", default="1.0,0.1")
    parser.add_argument("--warmups", default="0", help="deformation learning-rate warm-ups, in steps")
    parser.add_argument("--out", type=Path, default=Path("runs/deformation_stability"))
    args = parser.parse_args()
    base = preset(args.preset, args.deformation)
    if args.stop_after % base.checkpoint_every:
        raise SystemExit(f"--stop-after must be a multiple of the preset's checkpoint interval ({base.checkpoint_every})")
    runs = [(float(scale), int(warmup), int(seed)) for scale in args.offset_scales.split(",")
            for warmup in args.warmups.split(",") for seed in args.seeds.split(",")]
    for scale, warmup, seed in runs:
        config = configured(base, args.schedule_steps, {"seed": seed, "deformation.offset_scale": scale,
                                                         "deformation_warmup": warmup})
        model_dir = args.out / f"{args.avatar.name}_{args.deformation}_scale{scale:g}_warm{warmup}_seed{seed}"
        shutil.rmtree(model_dir, ignore_errors=True)
        train(args.avatar, model_dir, config, device="cpu", show_progress=False, stop_after=args.stop_after)
        # the probe reads a model folder: the unfinished run's last checkpoint, under the
        # finished model's name, in this benchmark's own output only
        shutil.copyfile(model_dir / "checkpoint.safetensors", model_dir / "model.safetensors")
        row = {"avatar": args.avatar.name, "deformation": args.deformation, "offset_scale": scale,
               "deformation_warmup": warmup, "seed": seed, "steps": args.stop_after,
               "train_psnr_last50": training_psnr(model_dir)}
        if args.deformation == "region":
            figures = probe(model_dir, points=5000, frames=2)
            row.update({k: figures[k] for k in ("face_stage_head_cm", "torso_stage_body_cm")})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
