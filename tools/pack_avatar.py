"""Pack a prepared avatar compactly for a GPU run (the device tool carries at most 64 MiB).

    python tools/pack_avatar.py runs/prepare_all/id01_a --out .gpu/id01_a

Writes a copy that `load_avatar`, `train`, `render` and `evaluate` accept, without what only
people or re-runs of `prepare` need: the step cache, the pre-correction soundtrack, the
inspection PNGs, and the head-frame landmark copy inside signals.npz (derivable from
landmarks.npy). Mattes and label maps are re-compressed at PNG level 9 (prepare writes them fast,
at level 1). Prints the size before and after.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

SKIP = {"steps", "audio_source.wav", "contact_sheet.png", "signals.png", "background_unseen.png"}


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pack(avatar: Path, out: Path) -> None:
    if not (avatar / "summary.json").exists():
        raise SystemExit(f"error: {avatar} is not a prepared avatar")
    if out.exists():
        raise SystemExit(f"error: {out} exists")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in avatar.iterdir():
        if item.name in SKIP:
            continue
        if item.name in ("alpha", "masks"):
            (tmp / item.name).mkdir()
            for png in sorted(item.glob("*.png")):
                image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                cv2.imwrite(str(tmp / item.name / png.name), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        elif item.name == "signals.npz":
            signals = dict(np.load(item))
            signals.pop("head_landmarks", None)
            np.savez(tmp / item.name, **signals)
        elif item.is_dir():
            shutil.copytree(item, tmp / item.name)
        else:
            shutil.copy2(item, tmp / item.name)
    tmp.replace(out)
    print(f"{avatar}: {folder_size(avatar) / 2**20:.1f} MiB -> {out}: {folder_size(out) / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pack(args.avatar, args.out)


if __name__ == "__main__":
    main()
