"""Pack a prepared avatar compactly for a GPU run (the device tool carries at most 64 MiB).

    python tools/pack_avatar.py runs/prepare_all/id01_a --out .gpu/id01_a

Writes a copy that `load_avatar`, `train`, `render` and `evaluate` accept, without what only
people or re-runs of `prepare` need: the step cache, the pre-correction soundtrack, the
inspection PNGs, and the head-frame landmark copy inside signals.npz (derivable from
landmarks.npy). Mattes and label maps are re-compressed at PNG level 9 (prepare writes them fast,
at level 1). Prints the size before and after.

    python tools/pack_avatar.py runs/prepare_all/id01_a --out .gpu/id01_a --max-size 128

`--max-size N` also shrinks an avatar larger than N px (frames, mattes, label maps, background)
and scales what is in pixels to match: the focal length and principal point in camera.json
(as `Camera.scaled`), the landmarks' x, y and z (mediapipe's z is in x's pixel scale), and the
sizes in summary.json. Poses, signals and audio are unchanged (metres and seconds).

For NeRF-only runs on a machine with a small transfer limit (e.g. `lokitalk pretrain` and the
prior experiment), `--max-train-seconds S` keeps only the first S s of the training frames (the
test split is unchanged; images of other frames are not copied, split.json lists what is kept)
and `--lean` drops what only audio-driven models and landmark metrics read: audio.wav and the
log-mel windows (audio_features.npy keeps its frame count with an empty window) and stores the
landmarks as float16.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

SKIP = {"steps", "audio_source.wav", "contact_sheet.png", "signals.png", "background_unseen.png"}


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _scaled_camera(avatar: Path, max_size: int | None) -> tuple[dict, float, float] | None:
    """(new camera.json, sx, sy) when the avatar is larger than max_size, else None."""
    cam = json.loads((avatar / "camera.json").read_text())
    if max_size is None or max(cam["width"], cam["height"]) <= max_size:
        return None
    factor = max_size / max(cam["width"], cam["height"])
    width, height = int(round(cam["width"] * factor)), int(round(cam["height"] * factor))
    sx, sy = width / cam["width"], height / cam["height"]
    return dict(cam, focal_px=cam["focal_px"] * sx, cx=cam["cx"] * sx, cy=cam["cy"] * sy, width=width,
                height=height), sx, sy


def pack(avatar: Path, out: Path, max_size: int | None = None, max_train_seconds: float | None = None,
         lean: bool = False) -> None:
    if not (avatar / "summary.json").exists():
        raise SystemExit(f"error: {avatar} is not a prepared avatar")
    scaled = _scaled_camera(avatar, max_size)
    split = json.loads((avatar / "split.json").read_text())
    keep = None
    if max_train_seconds is not None:
        fps = json.loads((avatar / "summary.json").read_text())["fps"]
        train = [i for i in split["train"] if i < split["train"][0] + round(max_train_seconds * fps)]
        split = dict(split, train=train)
        keep = {f"{i:06d}" for i in train + list(split["test"])}
    size = None if scaled is None else (scaled[0]["width"], scaled[0]["height"])
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
                if keep is not None and png.stem not in keep:
                    continue
                image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                if size is not None:  # labels by nearest neighbour, mattes by area average
                    image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if item.name == "masks"
                                       else cv2.INTER_AREA)
                cv2.imwrite(str(tmp / item.name / png.name), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        elif size is not None and item.name == "frames":
            (tmp / item.name).mkdir()
            for jpg in sorted(item.glob("*.jpg")):
                if keep is not None and jpg.stem not in keep:
                    continue
                image = cv2.resize(cv2.imread(str(jpg), cv2.IMREAD_COLOR), size, interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(tmp / item.name / jpg.name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        elif size is not None and item.name == "background.png":
            image = cv2.resize(cv2.imread(str(item), cv2.IMREAD_COLOR), size, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(tmp / item.name), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        elif size is not None and item.name == "camera.json":
            (tmp / item.name).write_text(json.dumps(scaled[0], indent=2))
        elif item.name == "frames" and keep is not None:
            (tmp / item.name).mkdir()
            for jpg in sorted(item.glob("*.jpg")):
                if jpg.stem in keep:
                    shutil.copy2(jpg, tmp / item.name / jpg.name)
        elif item.name == "split.json":
            (tmp / item.name).write_text(json.dumps(split))
        elif lean and item.name == "audio.wav":
            continue
        elif lean and item.name == "audio_features.npy":
            windows = np.load(item, mmap_mode="r")
            np.save(tmp / item.name, np.zeros((windows.shape[0], 0, windows.shape[2]), windows.dtype))
        elif item.name == "landmarks.npy" and (size is not None or lean):
            points = np.load(item)
            dtype = np.float16 if lean else points.dtype
            if size is not None:
                points = points * np.array([scaled[1], scaled[2], scaled[1]], dtype=points.dtype)
            np.save(tmp / item.name, points.astype(dtype))
        elif size is not None and item.name == "summary.json":
            summary = json.loads(item.read_text())
            summary.update(width=size[0], height=size[1], focal_px=scaled[0]["focal_px"],
                           packed_from_size=[int(round(size[0] / scaled[1])), int(round(size[1] / scaled[2]))])
            (tmp / item.name).write_text(json.dumps(summary, indent=2))
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
    parser.add_argument("--max-size", type=int, default=None,
                        help="shrink frames larger than this many px (camera and landmarks follow)")
    parser.add_argument("--max-train-seconds", type=float, default=None,
                        help="keep only the first S s of the training frames (test frames unchanged)")
    parser.add_argument("--lean", action="store_true",
                        help="NeRF-only: no audio or log-mel windows, float16 landmarks")
    args = parser.parse_args()
    pack(args.avatar, args.out, args.max_size, args.max_train_seconds, args.lean)


if __name__ == "__main__":
    main()
