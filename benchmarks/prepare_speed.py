"""Wall time of `lokitalk prepare` on a 20 s real clip, against real time.

    python benchmarks/prepare_speed.py [--clip ../shared/data/videos/id01_a.mp4] [--seconds 20] [--repeats 3]

The first `--seconds` of the clip are re-encoded (H.264, with its audio) to a temporary file,
then prepared from scratch `--repeats` times, each in a fresh subprocess (so imports and model
start-up count, as they do for a user). Prints each run, the median, the speed against real
time, and the median time of every step. One-time installs are excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cut_clip(src: Path, seconds: float, dst: Path) -> None:
    from lokitalk.media.audio import load_audio
    from lokitalk.media.video import iter_frames, probe_video
    from lokitalk.media.video_writer import write_video

    info = probe_video(src)
    frames = (f for i, f in enumerate(iter_frames(src, fps=info.fps)) if i < int(seconds * info.fps))
    audio = load_audio(src)[: int(seconds * 16000)]
    write_video(dst, frames, info.fps, audio=audio, crf=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=REPO.parent / "shared" / "data" / "videos" / "id01_a.mp4")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lokitalk_speed_"))
    clip = work / "clip.mp4"
    cut_clip(args.clip, args.seconds, clip)
    # a third-party research clip (public talking-head dataset): recorded as such, beside our cut
    from lokitalk.provenance.consent import create_consent, default_consent_path, save_consent

    save_consent(create_consent(clip, f"third-party research clip {args.clip.stem}"), default_consent_path(clip))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"clip: first {args.seconds:.0f} s of {args.clip.name}")
    walls, steps = [], {}
    for run in range(args.repeats):
        out = work / f"avatar{run}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lokitalk.cli", "prepare", str(clip), "--out", str(out), "-q"],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        walls.append(wall)
        for marker in (out / "steps").glob("*.json"):
            data = json.loads(marker.read_text())
            if "elapsed_s" in data:
                steps.setdefault(marker.stem, []).append(data["elapsed_s"])
        print(f"run {run + 1}: {wall:.2f} s wall")
    median = statistics.median(walls)
    print(f"median wall {median:.2f} s for {args.seconds:.0f} s of video: {args.seconds / median:.2f}x real time")
    for name, values in sorted(steps.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {name:12s} {statistics.median(values):6.2f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
