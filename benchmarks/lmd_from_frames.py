"""LMD and eye-ratio error of rendered test frames saved on another machine (e.g. a GPU box
without the landmarker): `benchmarks/region_vs_global.py` writes <avatar>_<arm>_test.npz.

    python benchmarks/lmd_from_frames.py RESULTS_DIR --avatars runs/prepare_all

For each npz (frames uint8 [N,H,W,3] and their avatar frame indices), the landmarks of the
rendered frames are found with the same landmarker as `prepare` and compared with the avatar's
own landmarks of those frames (lokitalk.evaluate.run). results.json in RESULTS_DIR gains `lmd`,
`eye_ratio_error` and `landmark_frames` for each run; the table is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lokitalk.data.avatar import load_avatar
from lokitalk.evaluate.run import _lip_and_eye_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--avatars", type=Path, default=Path("runs/prepare_all"))
    args = parser.parse_args()
    results = json.loads((args.results / "results.json").read_text())
    for run in results["runs"]:
        saved = np.load(args.results / f"{run['avatar']}_{run['arm']}_test.npz")
        avatar = load_avatar(args.avatars / run["avatar"])
        scale = run["metrics"].get("image_scale", 1.0)
        found = _lip_and_eye_metrics(saved["frames"], avatar, saved["indices"], scale)
        run["metrics"].update(found)
        print(f"{run['avatar']} {run['arm']}: lmd {found.get('lmd')} px, eye ratio error "
              f"{found.get('eye_ratio_error')} ({found.get('landmark_frames')} frames)")
    tmp = args.results / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(args.results / "results.json")


if __name__ == "__main__":
    main()
