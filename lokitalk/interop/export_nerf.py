"""`lokitalk export-nerf`: write an avatar in the AD-NeRF / RAD-NeRF / ER-NeRF dataset layout.

Those systems then train on exactly our preparation: our frames (byte copies), poses converted
to their convention, our regions as their parsing colours, our background plate, 68 landmarks
mapped from our 478, our eye ratio as AU45, our audio features in DeepSpeech's shape. What the
layout cannot hold goes to `lokitalk_extra/` (see extras.py) unless `extras=False`.

The dataset is written to `<out>.partial/` and renamed to `<out>` only when complete.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import __version__
from ..data.avatar import Avatar, load_avatar
from ..errors import InputError
from ..prepare.masks import Region
from . import nerf_format as nf
from .extras import content_sha, frames_digest, write_extras


@dataclass(frozen=True)
class ExportConfig:
    jpeg_quality: int = 95  # gt_imgs/ and bc.jpg; ori_imgs/ are byte copies of our JPEG frames
    extras: bool = True  # write lokitalk_extra/ so that import reproduces the avatar exactly
    au_open_quantile: float = 0.9  # AU45 = 0 at this quantile of the eye ratio (nf.au45_from_eye_ratio)


def claim_output(out: Path) -> Path:
    """Refuse to overwrite anything; return a fresh `<out>.partial` to write into."""
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise InputError(f"{out} exists: choose another --out or remove it")
        out.rmdir()
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # a killed earlier export: nothing in it is worth keeping
    partial.mkdir(parents=True)
    return partial


def export_nerf(avatar_dir: str | Path, out_dir: str | Path, config: ExportConfig = ExportConfig()
                ) -> dict[str, Any]:
    start = time.perf_counter()
    avatar = load_avatar(avatar_dir)
    if abs(avatar.fps - nf.FPS) > 1e-6:
        raise InputError(f"{avatar_dir}: {avatar.fps} fps; the NeRF dataset layout assumes {nf.FPS:.0f} fps")
    out = Path(out_dir)
    partial = claim_output(out)
    try:
        report = _write(avatar, partial, config)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.replace(out)
    report["elapsed_s"] = round(time.perf_counter() - start, 2)
    return report


def _transforms(avatar: Avatar, ids: np.ndarray, matrices: np.ndarray) -> dict[str, Any]:
    cam = avatar.camera
    return {"focal_len": float(cam.focal_px), "cx": float(cam.cx), "cy": float(cam.cy),
            "h": int(cam.height), "w": int(cam.width),
            "frames": [{"img_id": int(i), "aud_id": int(i), "transform_matrix": matrices[i].tolist()}
                       for i in ids]}


def _write(avatar: Avatar, root: Path, config: ExportConfig) -> dict[str, Any]:
    n = avatar.num_frames
    matrices = nf.nerf_transforms_from_pose(avatar.rotation, avatar.translation)
    for name, ids in (("train", avatar.split.train), ("val", avatar.split.test)):
        (root / nf.TRANSFORMS[name]).write_text(json.dumps(_transforms(avatar, ids, matrices), indent=2))

    for folder in (nf.IMAGES_DIR, nf.PARSING_DIR, nf.GT_DIR, nf.TORSO_DIR):
        (root / folder).mkdir()
    plate_bgr = cv2.imread(str(avatar.root / "background.png"), cv2.IMREAD_COLOR)
    cv2.imwrite(str(root / nf.BACKGROUND), plate_bgr, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
    lms = nf.landmarks_68(avatar.landmarks)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for i in range(n):
        shutil.copyfile(avatar.root / "frames" / f"{i:06d}.jpg", root / nf.IMAGES_DIR / f"{i}.jpg")
        nf.write_lms(root / nf.IMAGES_DIR / f"{i}.lms", lms[i])
        labels = avatar.labels(i)
        cv2.imwrite(str(root / nf.PARSING_DIR / f"{i}.png"), nf.parsing_from_labels(labels), png)
        frame_bgr = cv2.imread(str(avatar.root / "frames" / f"{i:06d}.jpg"), cv2.IMREAD_COLOR)
        background = labels[..., None] == Region.BACKGROUND
        cv2.imwrite(str(root / nf.GT_DIR / f"{i}.jpg"), np.where(background, plate_bgr, frame_bgr), jpeg)
        body = np.isin(labels, [Region.TORSO, Region.NECK])[..., None]
        torso = np.concatenate([np.where(body, frame_bgr, 0), body * np.uint8(255)], axis=-1)
        cv2.imwrite(str(root / nf.TORSO_DIR / f"{i}.png"), torso.astype(np.uint8), png)

    shutil.copyfile(avatar.root / "audio.wav", root / nf.AUDIO)
    ds = nf.deepspeech_shaped(avatar.audio_features)
    for name in nf.AUDIO_FEATURES:
        np.save(root / name, ds)
    au45, open_level = nf.au45_from_eye_ratio(avatar.eye_ratio, avatar.valid, config.au_open_quantile)
    closed = np.zeros(n, bool)
    for a, b in avatar.blinks:
        closed[a:b + 1] = True
    nf.write_au_csv(root / nf.AU_CSV, au45, avatar.valid, avatar.fps, closed)

    au_meta = {"open_level": open_level, "open_quantile": config.au_open_quantile,
               "formula": "AU45 = 5 * clip(1 - mean(eye_ratio) / open_level, 0, 1)"}
    if config.extras:
        meta = {"lokitalk_version": __version__, "frames": n, "width": avatar.camera.width,
                "height": avatar.camera.height, "fps": avatar.fps,
                "frames_sha256": frames_digest(root / nf.IMAGES_DIR / f"{i}.jpg" for i in range(n)),
                "audio_sha256": content_sha(root / nf.AUDIO),
                "focal_source": json.loads((avatar.root / "camera.json").read_text()).get("focal_source"),
                "au45": au_meta, "summary": avatar.summary,
                "avatar": json.loads((avatar.root / "avatar.json").read_text())}
        write_extras(avatar.root, root, meta)
    return {"frames": n, "train_frames": len(avatar.split.train), "val_frames": len(avatar.split.test),
            "focal_len": avatar.camera.focal_px, "au45_open_level": round(open_level, 4),
            "au45_max": round(float(au45.max()), 3), "extras": config.extras}
