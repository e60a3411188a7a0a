"""Run `prepare` on every video of ../shared/data/manifest.json; print a table of the summaries.

    python benchmarks/prepare_all.py [--data ../shared/data] [--out runs/prepare_all] [--only id01_a,vox07_a]

Each clip is prepared from scratch (its avatar folder is removed first) in a fresh process-free
call, timed by wall clock, and reported with the figures of its summary.json, or with the
one-line error when it fails. Also prints the speed against real time (clip duration / wall).
A JSON copy of the table is written to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

from lokitalk.errors import LokiTalkError
from lokitalk.prepare.pipeline import prepare
from lokitalk.prepare.runner import Reporter
from lokitalk.provenance.consent import create_consent, save_consent

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "prepare_all")
    parser.add_argument("--only", default="", help="comma-separated clip stems")
    args = parser.parse_args()
    manifest = json.loads((args.data / "manifest.json").read_text())
    videos = [e for e in manifest if e["file"].startswith("videos/") and e["file"].endswith(".mp4")]
    if args.only:
        wanted = set(args.only.split(","))
        videos = [e for e in videos if Path(e["file"]).stem in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"# prepare on {len(videos)} clips; {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    header = ("clip", "src", "fps", "dur_s", "out_px", "frames", "face_cov", "focal_px", "reproj_px",
              "yaw_range", "blinks", "av_off_ms", "confident", "applied_ms", "wall_s", "x_realtime")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for entry in videos:
        video = args.data / entry["file"]
        stem = video.stem
        wav = video.with_suffix(".wav")
        out = args.out / stem
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
        # third-party research clips (public talking-head datasets): the record, written in our own
        # output folder and never beside the shared data, states that it is not a personal consent
        consent = save_consent(create_consent(video, f"third-party research clip {stem}"),
                               args.out / f"{stem}.consent.json")
        start = time.perf_counter()
        try:
            s = prepare(video, out, audio=wav if wav.exists() else None, reporter=Reporter(quiet=True),
                        consent=consent)
            wall = time.perf_counter() - start
            row = {"clip": stem, "src": entry["resolution"], "fps": entry["fps"], "dur_s": s["duration_s"],
                   "out_px": s["width"], "frames": s["frames"], "face_cov": s["face_coverage"],
                   "focal_px": s["focal_px"], "reproj_px": s["reprojection_error_px"],
                   "yaw_range": f"{s['yaw_range_deg'][0]:.0f}..{s['yaw_range_deg'][1]:.0f}",
                   "blinks": s["blinks"], "av_off_ms": s["av_offset_ms"],
                   "confident": "yes" if s["av_offset_confident"] else "no",
                   "applied_ms": s["av_offset_applied_ms"], "wall_s": round(wall, 1),
                   "x_realtime": round(s["duration_s"] / wall, 2)}
        except LokiTalkError as err:
            wall = time.perf_counter() - start
            row = {"clip": stem, "src": entry["resolution"], "fps": entry["fps"], "error": str(err),
                   "wall_s": round(wall, 1)}
        rows.append(row)
        if "error" in row:
            print(f"| {stem} | {row['src']} | {row['fps']} | FAILED: {row['error']} |")
        else:
            print("| " + " | ".join(str(row[h]) for h in header) + " |", flush=True)
    ok = [r for r in rows if "error" not in r]
    if ok:
        import numpy as np

        print(f"\nprepared {len(ok)}/{len(rows)} clips; median speed {np.median([r['x_realtime'] for r in ok]):.2f}x "
              f"real time; median reprojection error {np.median([r['reproj_px'] for r in ok]):.2f} px")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
