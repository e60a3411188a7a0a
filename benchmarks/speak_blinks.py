"""How many of the blinks `speak` plans show in the video: several seeds, one model, one speech file.

    .venv/bin/python benchmarks/speak_blinks.py --model runs/stream/models/id05_a \
        --audio ../shared/data/audio/speech_zh_01.wav --seeds 0,1,2,3,4 --out runs/speak_blinks/id05

For each seed: `speak` (replayed head motion, planned blinks), then the face mesh on the video
(lokitalk.evaluate.sync: the detector `prepare` uses, on the mean of both eyes). Prints, per seed
and in all, the blinks planned and the blinks found, and the planned blinks' depth (both eyes'
mean eye ratio at the deepest frame over the open level). JSON in OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from lokitalk.evaluate.sync import evaluate_video
from lokitalk.speak import SpeakConfig, speak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        video = args.out / f"seed{seed}.mp4"
        summary = speak(args.model, args.audio, video, SpeakConfig(seed=seed), device="cpu", show_progress=False)
        report = evaluate_video(args.model, video, write=False)
        row = {"seed": seed, "planned": summary["blinks"], "found": report["blinks"],
               "found_frames_mean": report.get("blink_frames_mean"), "real_blink_frames_mean":
               report.get("real_blink_frames_mean"), "frames": summary["frames"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    total = {"planned": int(np.sum([r["planned"] for r in rows])), "found": int(np.sum([r["found"] for r in rows]))}
    result = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, torch {torch.__version__}",
              "model": str(args.model), "audio": str(args.audio), "rows": rows, "total": total}
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(total))


if __name__ == "__main__":
    main()
