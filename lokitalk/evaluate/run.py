"""`lokitalk evaluate MODEL_DIR`: re-enact the held-out test frames and measure them.

Writes MODEL_DIR/eval/: metrics.json (the model's figures beside the two trivial baselines on
the same frames), side_by_side.mp4 (real | rendered, with the clip's audio) and
worst_frames.png (the frames with the largest errors, real above rendered). `render_test`
is also what `lokitalk render --split test` uses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.avatar import Avatar, load_avatar, resize_image, training_frames
from ..face_model import load_face_template
from ..prepare.masks import Region
from ..render.frames import frame_conditioning, render_frame
from ..render.loading import TrainedModel, load_trained
from . import metrics
from .baselines import trivial_baselines
from .deformation import stage_displacements
from .novelty import NOVEL_VIEW_DEG, novel_view_mask, split_summary


def render_test(trained: TrainedModel, avatar: Avatar, frames: np.ndarray) -> tuple[np.ndarray, float]:
    """Render `frames` from their own driving signals -> (uint8 [N,H,W,3], frames per second)."""
    camera = avatar.camera.scaled(trained.image_scale)
    background = resize_image(avatar.background(), camera)
    out = []
    start = time.perf_counter()
    with trained.acceleration.autocast(trained.device):
        for index in frames:
            out.append(render_frame(trained.model, avatar, frame_conditioning(avatar, int(index)), trained.grid,
                                    trained.render_config, background, scale=trained.image_scale))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return np.stack(out), len(frames) / max(elapsed, 1e-9)


def _lip_and_eye_metrics(rendered: np.ndarray, avatar: Avatar, frames: np.ndarray, scale: float) -> dict:
    """Landmarks of the rendered frames (same landmarker as prepare) against the real ones."""
    try:
        from ..prepare.landmarks import track_landmarks
        from ..prepare.signals import align_to_head_frame, eye_ratio
    except ImportError:  # pragma: no cover
        return {"lmd": None, "eye_ratio_error": None, "landmark_note": "mediapipe not installed"}
    try:
        points, detected = track_landmarks(rendered)
    except Exception as err:  # mediapipe missing on this machine (e.g. a GPU box without it)
        return {"lmd": None, "eye_ratio_error": None, "landmark_note": f"landmarker unavailable: {err}"}
    if not detected.any():
        return {"lmd": None, "eye_ratio_error": None, "landmark_note": "no face found in the rendered frames"}
    template = load_face_template()
    real = avatar.landmarks[frames].copy()
    real[..., :2] *= scale  # landmarks at the size the model renders
    ok = detected
    lmd = metrics.landmark_distance(points[ok], real[ok], template.mouth_points)
    lmd_frames = np.full(len(frames), np.nan)  # NaN where no face was found in the rendered frame
    lmd_frames[ok] = metrics.landmark_distance_per_frame(points[ok], real[ok], template.mouth_points)
    offset, shape = metrics.mouth_offset_and_shape(points[ok], real[ok], template.mouth_points)
    rendered_eyes = eye_ratio(align_to_head_frame(points[ok], template), template)
    eye_error = float(np.abs(rendered_eyes - avatar.eye_ratio[frames][ok]).mean())
    return {"lmd": lmd, "lmd_mouth_shape": float(shape.mean()), "mouth_offset_px": float(offset.mean()),
            "eye_ratio_error": eye_error, "landmark_frames": int(ok.sum()), "lmd_frames": lmd_frames}


def evaluate(model_dir: Path, max_frames: int | None = None, device: str = "cpu", write_video: bool = True,
             save_frames: bool = False, signer=None) -> dict:
    """`save_frames`: also keep the rendered frames (eval/test_frames.npz, uint8, with their
    indices), e.g. to measure LMD later on a machine that has the landmarker. `signer`: a
    `provenance.c2pa_sign.load_signer` result; the side-by-side video is then C2PA-signed."""
    trained = load_trained(model_dir, device)
    avatar = load_avatar(trained.avatar_dir)
    frames = avatar.split.test
    if max_frames is not None and len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    rendered, fps = render_test(trained, avatar, frames)
    camera = avatar.camera.scaled(trained.image_scale)
    real, labels = reference_frames(avatar, frames, camera)
    mouth, eyes = labels == Region.MOUTH, labels == Region.EYES
    per_frame = {
        "psnr": np.array([metrics.psnr(p, r) for p, r in zip(rendered, real)]),
        "ssim": np.array([metrics.ssim(p, r) for p, r in zip(rendered, real)]),
        "psnr_mouth": np.array([metrics.psnr(p, r, m) for p, r, m in zip(rendered, real, mouth)]),
        "psnr_eyes": np.array([metrics.psnr(p, r, m) for p, r, m in zip(rendered, real, eyes)]),
    }
    lpips_frames = _lpips(rendered, real)
    if lpips_frames is not None:
        per_frame["lpips"] = lpips_frames
    result = {
        "frames": int(len(frames)),
        **{key: float(np.nanmean(values)) for key, values in per_frame.items()},
        "render_fps": float(fps),
        "render_size": [int(real.shape[2]), int(real.shape[1])],
        "device": str(device),
    }
    result.setdefault("lpips", None)  # weights not installed: reported as null, never made up
    landmarks = _lip_and_eye_metrics(rendered, avatar, frames, trained.image_scale)
    if "lmd_frames" in landmarks:
        per_frame["lmd"] = landmarks.pop("lmd_frames")
    result.update(landmarks)
    result["image_scale"] = trained.image_scale
    result["error_budget"] = error_budget(rendered, real, labels, resize_image(avatar.background(), camera))
    for key, errors in _face_depth(trained, avatar, frames).items():
        per_frame[key] = errors
        result[key] = float(np.nanmedian(errors)) if np.isfinite(errors).any() else None
    probe_frames = frames[np.linspace(0, len(frames) - 1, min(5, len(frames))).round().astype(int)]
    result["deformation"] = stage_displacements(trained.model, [frame_conditioning(avatar, int(i)) for i in probe_frames])
    trained_on = training_frames(avatar, trained.meta.get("train", {}).get("train_seconds"))
    novel, distance = novel_view_mask(avatar.rotation, frames, trained_on)
    result["views"] = {"novel_view_deg": NOVEL_VIEW_DEG,
                       "note": "novel: no trained head rotation within novel_view_deg of the frame's own",
                       "nearest_trained_rotation_deg_median": float(np.median(distance)),
                       **split_summary(per_frame, novel)}
    # the baselines see what the model saw: its training frames (the first train_seconds of the
    # train split when it was trained on those only)
    train_frames = np.stack([resize_image(avatar.frame(int(i)), camera) for i in trained_on])
    scale = trained.image_scale  # landmarks in px at the size the model renders
    baselines = trivial_baselines(train_frames, real, _lpips, avatar.landmarks[trained_on, :, :2] * scale,
                                  avatar.landmarks[frames, :, :2] * scale,
                                  (avatar.valid[trained_on], avatar.valid[frames]), load_face_template().mouth_points)
    # positions in the training frames -> the avatar's frame numbers
    baselines["nearest_training_frame_indices"] = [int(trained_on[j]) for j in baselines["nearest_training_frame_indices"]]
    result["baselines"] = {
        **baselines,
        "training_frames": int(len(trained_on)),
        "note": "same test frames and the model's training frames; the nearest frame is an oracle "
                "(it peeks at the answer); its LMD from the prepared landmarks of both real frames",
    }
    out = Path(model_dir) / "eval"
    out.mkdir(exist_ok=True)
    _worst_frames(out / "worst_frames.png", rendered, real, per_frame["psnr"], frames)
    if save_frames:
        np.savez_compressed(out / "test_frames.npz", frames=rendered, indices=frames)
    if write_video:
        _side_by_side(out / "side_by_side.mp4", rendered, real, avatar, frames, trained, signer)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out / "metrics.json")
    return result


def reference_frames(avatar: Avatar, frames: np.ndarray, camera) -> tuple[np.ndarray, np.ndarray]:
    """The real frames and their region labels at the size the model renders (`camera`)."""
    real = np.stack([resize_image(avatar.frame(int(i)), camera) for i in frames])
    labels = np.stack([resize_image(avatar.labels(int(i)), camera, nearest=True) for i in frames])
    return real, labels


def error_budget(rendered: np.ndarray, real: np.ndarray, labels: np.ndarray, plate: np.ndarray) -> dict:
    """Each region's share of the error and what a perfect region would be worth; for the
    background also the plate's own PSNR there (the floor: the model composites over the plate)."""
    budget = metrics.region_error_budget(rendered, real, labels, {int(r): r.name.lower() for r in Region})
    background = labels == Region.BACKGROUND
    if background.any():
        plates = np.broadcast_to(plate, real.shape)
        budget["background"]["plate_psnr"] = metrics.psnr(plates, real, background)
    return budget


def _face_depth(trained: TrainedModel, avatar: Avatar, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame depth errors (cm, lokitalk.evaluate.geometry) at the fitted rigid face points
    (`face_depth_error_cm`) and at the frame's lips, chin and jaw landmarks
    (`lower_face_depth_error_cm`); none for an avatar without a fitted face shape."""
    from ..errors import InputError
    from ..train.face_depth import FaceDepthPoints, load_face_depth_points
    from .geometry import face_depth_errors

    try:
        face = load_face_depth_points(avatar.root, lower_face=True)
    except InputError:
        return {}
    rigid = FaceDepthPoints(face.points, face.normals)
    with trained.acceleration.autocast(trained.device):
        return {name: face_depth_errors(trained.model, trained.grid, trained.render_config, avatar, frames, points)
                for name, points in (("face_depth_error_cm", rigid),
                                     ("lower_face_depth_error_cm", face.moving_only()))}


def _lpips(rendered: np.ndarray, real: np.ndarray, chunk: int = 8) -> np.ndarray | None:
    """Per-frame LPIPS, or None where the weights are not installed."""
    from .lpips import LPIPSWeightsNotFound, lpips_distance

    try:
        values = [lpips_distance(rendered[i:i + chunk], real[i:i + chunk]) for i in range(0, len(real), chunk)]
    except LPIPSWeightsNotFound:
        return None
    return np.concatenate(values).astype(np.float64)


def _worst_frames(path: Path, rendered: np.ndarray, real: np.ndarray, scores: np.ndarray, frames: np.ndarray,
                  count: int = 6) -> None:
    order = np.argsort(scores)[:count]
    columns = []
    for k in order:
        col = np.concatenate([real[k], rendered[k]], axis=0).copy()
        cv2.putText(col, f"#{int(frames[k])} {scores[k]:.1f}dB", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 0), 1, cv2.LINE_AA)
        columns.append(col)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(columns, axis=1), cv2.COLOR_RGB2BGR))


def _side_by_side(path: Path, rendered: np.ndarray, real: np.ndarray, avatar: Avatar, frames: np.ndarray,
                  trained: TrainedModel, signer=None) -> None:
    from ..media.video_writer import write_video
    from ..provenance.c2pa_sign import sign_output
    from ..provenance.stamp import manifest, manifest_tags, next_serial, stamp_frames

    serial = next_serial(trained.root)

    consecutive = np.all(np.diff(frames) == 1)
    clip_audio = avatar.audio_for_frames(int(frames[0]), int(frames[-1])) if consecutive else None
    pairs = (np.concatenate([r, p], axis=1) for r, p in zip(real, rendered))
    write_video(path, stamp_frames(pairs, trained.meta, serial), avatar.fps, audio=clip_audio,
                sample_rate=avatar.audio_spec.sample_rate,
                metadata=manifest_tags(manifest(trained.meta, serial, "evaluate side-by-side")))
    sign_output(path, trained.meta, serial, signer, "evaluate side-by-side")
