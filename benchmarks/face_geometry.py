"""Where a trained model's face surface is, against the avatar's fitted face points, and where it
puts the mouth on the test frames.

    python benchmarks/face_geometry.py MODEL_DIR [MODEL_DIR ...] [--train-frames 24] [--mouth-train-frames 24]

For each model: the face depth error (cm, lokitalk.evaluate.geometry: median |termination error|
of rays through the visible fitted face points) on a spread of its training frames and on every
test frame, the test frames split into seen and novel views (lokitalk.evaluate.novelty); and,
where `evaluate --save-frames` (or `ablation.py --motion`) kept the rendered test frames
(eval/test_frames.npz), LMD split into the mouth's offset and its shape
(`metrics.mouth_offset_and_shape`), with the mean signed offset in x and y; with
`--mouth-train-frames N`, the same on N of its training frames, rendered here (a mouth that sits
aside on the frames the model learned from is the model's, not the test poses'). One JSON line
per model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.evaluate import metrics
from lokitalk.evaluate.geometry import face_depth_errors
from lokitalk.evaluate.novelty import novel_view_mask
from lokitalk.evaluate.run import render_test
from lokitalk.face_model import load_face_template
from lokitalk.render.loading import load_trained
from lokitalk.train.face_depth import load_face_depth_points


def mouth_placement(frames: np.ndarray, indices: np.ndarray, avatar) -> dict:
    """Landmark rendered frames [N,H,W,3] (of avatar frames `indices`) against the real landmarks."""
    from lokitalk.prepare.landmarks import track_landmarks

    scale = frames.shape[2] / avatar.camera.width
    points, ok = track_landmarks(frames)
    real = avatar.landmarks[indices].copy()
    real[..., :2] *= scale
    ids = load_face_template().mouth_points
    offset, shape = metrics.mouth_offset_and_shape(points[ok], real[ok], ids)
    signed = (points[ok][:, ids, :2].mean(1) - real[ok][:, ids, :2].mean(1)).mean(0)
    return {"lmd": round(metrics.landmark_distance(points[ok], real[ok], ids), 3),
            "mouth_offset_px": round(float(offset.mean()), 3), "lmd_mouth_shape": round(float(shape.mean()), 3),
            "mouth_offset_xy_px": [round(float(v), 3) for v in signed], "landmark_frames": int(ok.sum())}


def saved_test_frames(model_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    saved = model_dir / "eval" / "test_frames.npz"
    if not saved.is_file():
        return None
    data = np.load(saved)
    return data["frames"], data["indices"]


def spread(frames: np.ndarray, count: int) -> np.ndarray:
    return frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--train-frames", type=int, default=24, help="training frames for the face depth error")
    parser.add_argument("--mouth-train-frames", type=int, default=0,
                        help="render this many training frames and measure where their mouth sits")
    args = parser.parse_args()
    for model_dir in args.models:
        trained = load_trained(model_dir)
        avatar = load_avatar(trained.avatar_dir)
        face = load_face_depth_points(avatar.root)
        trained_on = training_frames(avatar, trained.meta.get("train", {}).get("train_seconds"))
        probe = spread(trained_on, args.train_frames)
        train_err = face_depth_errors(trained.model, trained.grid, trained.render_config, avatar, probe, face)
        test = avatar.split.test
        test_err = face_depth_errors(trained.model, trained.grid, trained.render_config, avatar, test, face)
        novel, _ = novel_view_mask(avatar.rotation, test, trained_on)
        row = {"model": str(model_dir), "face_depth_cm_train": round(float(np.nanmedian(train_err)), 3),
               "face_depth_cm_test": round(float(np.nanmedian(test_err)), 3),
               "face_depth_cm_test_seen": round(float(np.nanmedian(test_err[~novel])), 3) if (~novel).any() else None,
               "face_depth_cm_test_novel": round(float(np.nanmedian(test_err[novel])), 3) if novel.any() else None,
               "novel_frames": int(novel.sum()), "test_frames": int(len(test))}
        saved = saved_test_frames(Path(model_dir))
        if saved is not None:
            row.update(mouth_placement(*saved, avatar))
        if args.mouth_train_frames > 0:
            indices = spread(trained_on, args.mouth_train_frames)
            rendered, _ = render_test(trained, avatar, indices)
            row.update({f"{key}_train": value for key, value in mouth_placement(rendered, indices, avatar).items()})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
