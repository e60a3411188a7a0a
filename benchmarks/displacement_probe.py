"""How far a trained region model's two deformation stages move the points of the head and body.

    python benchmarks/displacement_probe.py MODEL_DIR... [--points 20000] [--frames 5]

The figures are `lokitalk.evaluate.deformation.stage_displacements` (which `evaluate` also
writes into metrics.json as "deformation"). Points are drawn uniformly in the field's box and kept where the canonical density is above 4
(the occupied part of the canonical space); a point with head-frame y < 8 cm counts as head
(the chin is at about +9 cm), the rest as body. For a few evenly spaced test frames, each point
goes through the deformation with that frame's lip feature, eye ratio and pose; the face stage's
displacement is x1 - x, the torso stage's the rest. Printed: the medians over points, averaged
over the frames, in cm. Good id01 runs: face stage 1.5-4.9 cm on the head (`tiny`; `fast`,
whose nets output tenths of a metre: 0.6-1 cm); `fast` runs that blew up: 150-220 cm; the run that
scrambled its canonical space: 9.2 cm (docs/RESULTS.md, "A failed run").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lokitalk.data.avatar import load_avatar
from lokitalk.evaluate.deformation import stage_displacements
from lokitalk.render.frames import frame_conditioning
from lokitalk.render.loading import load_trained


def probe(model_dir: Path, points: int = 20000, frames: int = 5) -> dict:
    trained = load_trained(model_dir, "cpu")
    avatar = load_avatar(trained.avatar_dir)
    test = avatar.split.test
    picks = test[np.linspace(0, len(test) - 1, frames).round().astype(int)]
    figures = stage_displacements(trained.model, [frame_conditioning(avatar, int(i)) for i in picks], points)
    if figures is None:
        raise SystemExit(f"{model_dir}: not a region model (the global deformation has no stages)")
    return {"model": str(model_dir), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    for model_dir in args.models:
        print(json.dumps(probe(model_dir, args.points, args.frames)), flush=True)


if __name__ == "__main__":
    main()
