"""LMD, eye-ratio error, lip motion and blink depth of frames rendered on another machine (e.g. a
GPU box without the landmarker): `benchmarks/region_vs_global.py` writes <avatar>_<arm>_test.npz
and <avatar>_<arm>_blink.npz.

    python benchmarks/lmd_from_frames.py RESULTS_DIR --avatars runs/prepare_all

For each npz (frames uint8 [N,H,W,3] and their avatar frame indices), the landmarks of the
rendered frames are found with the same landmarker as `prepare` and compared with the avatar's
own landmarks of those frames (lokitalk.evaluate.run), and their mouth opening with the real one
(`lip_amp`, `lip_r`: benchmarks/lip_response.py). Where a blink npz is there, the open/closed
pairs give `blink_amp` and `blink_closes` (benchmarks/blink_response.py). results.json in
RESULTS_DIR gains these for each run; a line per run is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from blink_response import measure_blink_pairs
from lip_response import lip_motion
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
        found.pop("lmd_frames", None)  # per-frame distances: not needed in the summary
        found |= lip_motion(saved["frames"], saved["indices"], avatar, scale)
        blink_file = args.results / f"{run['avatar']}_{run['arm']}_blink.npz"
        if blink_file.is_file():
            blink = measure_blink_pairs(np.load(blink_file))
            found |= {"blink_amp": blink["blink_amp"], "blink_closes": blink["closes_fraction"]}
        run["metrics"].update(found)
        print(f"{run['avatar']} {run['arm']}: " + ", ".join(
            f"{k} {found.get(k)}" for k in ("lmd", "lmd_mouth_shape", "mouth_offset_px", "eye_ratio_error",
                                            "landmark_frames", "lip_amp", "lip_r",
                                            "blink_amp", "blink_closes")), flush=True)
    tmp = args.results / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(args.results / "results.json")


if __name__ == "__main__":
    main()
