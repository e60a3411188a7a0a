"""The `lokitalk_extra/` sidecar of an exported dataset: what the NeRF layout has no place for.

The layout cannot hold our 478 landmarks, 7 region labels, person matte, exact eye ratio, lip
feature and basis, log-mel features, lossless background plate or the pose fit's diagnostics.
Export copies those files byte for byte into `lokitalk_extra/` (their loaders never look there);
import uses them when they belong to the same frames (an exact round trip) and derives
everything when they are absent or stale. Poses, intrinsics and the split are deliberately NOT
in the sidecar: they travel only in the transforms files, so a round trip exercises the
conversion.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from . import nerf_format as nf

EXTRA_FORMAT = "lokitalk-nerf-extra/1"
META = "meta.json"
COPIED = ("landmarks.npy", "valid.npy", "signals.npz", "lip_basis.npz", "audio_features.npy",
          "audio_features.json", "av_offset.npz", "audio_source.wav", "background.png",
          "background_unseen.png")
FRAME_DIRS = ("alpha", "masks")  # per-frame PNGs, same names as in the avatar
POSE_EXTRA = "pose_extra.npz"  # pose.npz minus rotation and translation


def frames_digest(paths: Iterable[Path]) -> str:
    """Hash of the frame images' bytes, in frame order: ties the sidecar to these exact frames."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:32]


def content_sha(path: Path) -> str:
    """Hash of one file's bytes (e.g. aud.wav: the sidecar's audio features belong to it)."""
    return frames_digest([path])


def write_extras(avatar_root: Path, dataset_root: Path, meta: dict) -> Path:
    dest = dataset_root / nf.EXTRA_DIR
    dest.mkdir()
    for name in COPIED:
        shutil.copyfile(avatar_root / name, dest / name)
    for name in FRAME_DIRS:
        shutil.copytree(avatar_root / name, dest / name)
    pose = np.load(avatar_root / "pose.npz")
    np.savez(dest / POSE_EXTRA, **{k: pose[k] for k in pose.files if k not in ("rotation", "translation")})
    (dest / META).write_text(json.dumps({"format": EXTRA_FORMAT, **meta}, indent=2))  # last: complete
    return dest


@dataclass(frozen=True)
class Extras:
    root: Path
    meta: dict

    def path(self, name: str) -> Path:
        return self.root / name

    def frame(self, kind: str, index: int) -> Path:
        return self.root / kind / f"{index:06d}.png"


def find_extras(dataset_root: Path, num_frames: int, width: int, height: int, digest: str
                ) -> tuple[Extras | None, str]:
    """The sidecar if it is complete and belongs to these frames, else (None, why not)."""
    root = dataset_root / nf.EXTRA_DIR
    if not (root / META).is_file():
        return None, "none"
    try:
        meta = json.loads((root / META).read_text())
    except json.JSONDecodeError:
        return None, f"ignored: unreadable {nf.EXTRA_DIR}/{META}"
    if meta.get("format") != EXTRA_FORMAT:
        return None, f"ignored: format {meta.get('format')!r}, this LokiTalk reads {EXTRA_FORMAT}"
    if (meta.get("frames"), meta.get("width"), meta.get("height")) != (num_frames, width, height):
        return None, "ignored: written for other frames (count or size differ)"
    if meta.get("frames_sha256") != digest:
        return None, "ignored: the frame images changed since export"
    missing = [n for n in (*COPIED, POSE_EXTRA) if not (root / n).is_file()]
    missing += [f"{d}/{i:06d}.png" for d in FRAME_DIRS for i in (0, num_frames - 1)
                if not (root / d / f"{i:06d}.png").is_file()]
    if missing:
        return None, f"ignored: incomplete (no {missing[0]})"
    return Extras(root, meta), "used"
