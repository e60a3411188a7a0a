"""`lokitalk import-nerf`: turn a dataset in the AD-NeRF / RAD-NeRF / ER-NeRF layout into an avatar.

The avatar is the same folder `prepare` writes (docs/AVATAR_FORMAT.md), built with the same step
runner (`<out>.partial/` until complete, resumable, removed on bad input). What the layout has
is taken as it is: frames (JPEG bytes kept), poses (converted exactly, in the file's own units),
intrinsics, split, parsing regions, background, audio. What it lacks is derived with our own
preparation modules: 478 landmarks (face mesh on the frames), eye ratio, blinks, mouth opening,
lip feature and basis, log-mel features, fine regions (face, mouth, eyes), the person matte.
When the dataset carries a matching `lokitalk_extra/` (written by export-nerf), those derived
files are taken from it instead, so that import(export(avatar)) reproduces the avatar.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import __version__
from ..errors import InputError
from ..face_model import load_face_template
from ..media.audio import SAMPLE_RATE, load_audio, write_wav
from ..prepare import pipeline
from ..prepare.audio_features import AudioFeatureSpec, audio_features
from ..prepare.av_offset import OffsetConfig, estimate_offset, shift_audio, speech_energy_db
from ..prepare.landmarks import LandmarkConfig, fill_gaps, track_landmarks
from ..prepare.masks import Region, region_labels
from ..prepare.pose import euler_from_rotation, project
from ..prepare.runner import Reporter, Step, StepContext, StepRunner, file_identity, write_json_atomic
from ..prepare.signals import SignalConfig
from . import nerf_format as nf
from .extras import META, POSE_EXTRA, Extras, content_sha, find_extras, frames_digest
from .nerf_dataset import NerfDataset, read_nerf_dataset

FAST_PNG = pipeline.FAST_PNG


@dataclass(frozen=True)
class ImportConfig:
    fps: float = nf.FPS  # the layout has no frame rate; its tools all work at 25 fps
    use_extras: bool = True  # take lokitalk_extra/ when it matches the frames (exact round trip)
    jpeg_quality: int = 95  # only for frames that are not JPEG files already
    min_audio_coverage: float = 0.9  # aud.wav shorter than this fraction of the video is an error
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    signals: SignalConfig = field(default_factory=SignalConfig)
    offset: OffsetConfig = field(default_factory=OffsetConfig)
    audio: AudioFeatureSpec = field(default_factory=AudioFeatureSpec)


def _dataset(ctx: StepContext) -> NerfDataset:
    return ctx.params["dataset"]


def _extras(ctx: StepContext) -> Extras | None:
    """The sidecar, when the first step found it usable (also on a resumed run)."""
    if ctx.results["media"]["extras"] != "used":
        return None
    root = _dataset(ctx).root / nf.EXTRA_DIR
    return Extras(root, json.loads((root / META).read_text()))


def _copy_frames_dir(src: Path, dst: Path, n: int) -> None:
    dst.mkdir(exist_ok=True)
    for i in range(n):
        shutil.copyfile(src / f"{i:06d}.png", dst / f"{i:06d}.png")


def _parsing_regions(ctx: StepContext) -> np.ndarray:
    """Coarse Region labels [N,H,W] from the parsing images (read once per run)."""
    if "parsing" not in ctx.cache:
        ds = _dataset(ctx)
        out = np.empty((ds.num_frames, ds.height, ds.width), np.uint8)
        for i in range(ds.num_frames):
            image = cv2.imread(str(ds.parsing(i)), cv2.IMREAD_COLOR)
            if image is None or image.shape[:2] != (ds.height, ds.width):
                raise InputError(f"{ds.parsing(i)} is unreadable or not {ds.width}x{ds.height}")
            out[i] = nf.regions_from_parsing(image)
        ctx.cache["parsing"] = out
    return ctx.cache["parsing"]


# ----------------------------------------------------------------------------- steps


def step_media(ctx: StepContext) -> dict[str, Any]:
    """Frames: JPEG bytes copied as they are (no re-encoding), every size checked."""
    cfg: ImportConfig = ctx.params["config"]
    ds = _dataset(ctx)
    (ctx.work_dir / "frames").mkdir(exist_ok=True)
    frames = []
    for i in range(ds.num_frames):
        data = ds.image(i).read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{ds.image(i)} is not a readable image")
        if image.shape[:2] != (ds.height, ds.width):
            raise InputError(f"{ds.image(i)} is {image.shape[1]}x{image.shape[0]} but the dataset's frames "
                             f"are {ds.width}x{ds.height}")
        target = pipeline.frame_path(ctx.work_dir, i)
        if data[:2] == b"\xff\xd8":
            target.write_bytes(data)
        else:
            cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        ctx.progress(1, ds.num_frames)
    ctx.cache["frames"] = np.stack(frames)
    status = "not used (use_extras=False)"
    if cfg.use_extras:
        _, status = find_extras(ds.root, ds.num_frames, ds.width, ds.height, ctx.params["digest"])
    return {"frames": ds.num_frames, "size": ds.width, "width": ds.width, "height": ds.height, "extras": status}


def step_analyse(ctx: StepContext) -> dict[str, Any]:
    """478 landmarks and the person matte: from the sidecar, else the face mesh on the frames and
    the parsing's non-background pixels (selfie segmentation when there is no parsing)."""
    cfg: ImportConfig = ctx.params["config"]
    ds = _dataset(ctx)
    n = ds.num_frames
    extras = _extras(ctx)
    if extras is not None:
        for name in ("landmarks.npy", "valid.npy"):
            shutil.copyfile(extras.path(name), ctx.path(name))
        _copy_frames_dir(extras.path("alpha"), ctx.path("alpha"), n)
        summary = extras.meta.get("summary", {})
        return {"face_coverage": summary.get("face_coverage", 1.0),
                "valid_fraction": float(np.load(ctx.path("valid.npy")).mean()), "matte": "lokitalk_extra"}

    frames = pipeline.load_frames(ctx)
    points, detected = track_landmarks(frames, cfg.landmarks, on_frame=lambda: ctx.progress(1, n))
    coverage = float(detected.mean())
    if coverage < cfg.landmarks.min_face_coverage:
        raise InputError(f"{ds.root}: a face was tracked in only {100 * coverage:.0f}% of the frames")
    filled, valid = fill_gaps(points, detected, int(round(cfg.landmarks.max_gap_s * cfg.fps)))
    np.save(ctx.path("landmarks.npy"), filled.astype(np.float32))
    np.save(ctx.path("valid.npy"), valid)
    if ds.has_parsing:
        person = (_parsing_regions(ctx) != Region.BACKGROUND).astype(np.uint8) * 255
        matte = "parsing"
    else:
        from ..prepare.segmentation import segment_person

        person, matte = segment_person(frames), "selfie segmentation"
    (ctx.work_dir / "alpha").mkdir(exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(pipeline.frame_path(ctx.work_dir, i, "alpha")), person[i], FAST_PNG)
    ctx.cache["person"] = person
    result: dict[str, Any] = {"face_coverage": coverage, "valid_fraction": float(valid.mean()), "matte": matte}
    if ds.has_lms:  # how far their 68 points are from ours mapped to 68 (a sanity figure)
        result["lms_agreement_px"] = _lms_agreement(ds, nf.landmarks_68(filled), valid)
    return result


def _lms_agreement(ds: NerfDataset, ours_68: np.ndarray, valid: np.ndarray) -> float | None:
    """Mean distance (px) between their .lms and our landmarks mapped to 68, over valid frames;
    None when their files are not 68 `x y` rows (nothing here depends on them)."""
    dist = []
    for i in np.flatnonzero(valid):
        try:
            theirs = np.loadtxt(ds.lms(i), ndmin=2)
        except ValueError:
            return None
        if theirs.shape != (68, 2):
            return None
        dist.append(np.linalg.norm(ours_68[i] - theirs, axis=-1).mean())
    return round(float(np.mean(dist)), 3) if dist else None


def triangulate_rigid_points(landmarks: np.ndarray, valid: np.ndarray, rotation: np.ndarray,
                             translation: np.ndarray, focal: float, cx: float, cy: float,
                             ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's rigid points [P,3] in the (imported) head frame, by linear least squares over
    all valid frames given the poses, and the per-frame reprojection error [N] in pixels.

    Each observation (u, v) of point X gives two equations linear in X:
    (u - cx) (R_2 X + t_2) = f (R_0 X + t_0), and the same for v with row 1."""
    obs = landmarks[valid][:, ids, :2].astype(np.float64)  # [M,P,2]
    r, t = rotation[valid], translation[valid]
    rows, rhs = [], []
    for axis, centre in ((0, cx), (1, cy)):
        d = obs[..., axis] - centre  # [M,P]
        rows.append(d[..., None] * r[:, None, 2, :] - focal * r[:, None, axis, :])  # [M,P,3]
        rhs.append(focal * t[:, None, axis] - d * t[:, None, 2])
    a = np.concatenate(rows)  # [2M,P,3]
    b = np.concatenate(rhs)  # [2M,P]
    normal = np.einsum("mpi,mpj->pij", a, a)
    normal += 1e-9 * np.trace(normal, axis1=1, axis2=2)[:, None, None] * np.eye(3)  # static heads: depth is weak
    points = np.linalg.solve(normal, np.einsum("mpi,mp->pi", a, b)[..., None])[..., 0]
    reproj = project(points, rotation, translation, focal, cx, cy)
    error = np.linalg.norm(reproj - landmarks[:, ids, :2], axis=-1).mean(1)
    return points, error


def step_pose(ctx: StepContext) -> dict[str, Any]:
    """Poses converted exactly from transform_matrix (units as in the file), the file's camera."""
    ds = _dataset(ctx)
    rotation, translation = nf.pose_from_nerf_transforms(ds.matrices)
    extras = _extras(ctx)
    euler = euler_from_rotation(rotation)
    if extras is not None:
        saved = np.load(extras.path(POSE_EXTRA))
        extra = {k: saved[k] for k in saved.files}
        focal_source = extras.meta.get("focal_source", "imported")
    else:
        template = load_face_template()
        landmarks = np.load(ctx.path("landmarks.npy"))
        valid = np.load(ctx.path("valid.npy"))
        shape, error = triangulate_rigid_points(landmarks, valid, rotation, translation, ds.focal, ds.cx, ds.cy,
                                                template.rigid)
        extra = {"euler_deg": euler.astype(np.float32), "reprojection_error_px": error.astype(np.float32),
                 "shape": shape.astype(np.float32), "shape_ids": template.rigid}
        focal_source = "imported"
    np.savez(ctx.path("pose.npz"), rotation=rotation.astype(np.float32), translation=translation.astype(np.float32),
             **extra)
    write_json_atomic(ctx.path("camera.json"), {
        "model": "pinhole", "convention": "opencv", "focal_px": ds.focal, "focal_source": focal_source,
        "cx": ds.cx, "cy": ds.cy, "width": ds.width, "height": ds.height})
    valid = np.load(ctx.path("valid.npy"))
    error = np.asarray(extra["reprojection_error_px"], np.float64)
    return {"focal_px": ds.focal, "focal_source": focal_source,
            "reprojection_error_px": float(error[valid].mean() if valid.any() else error.mean()),
            "camera_distance_mean": float(np.linalg.norm(translation, axis=1).mean()),
            "yaw_range_deg": [float(euler[:, 0].min()), float(euler[:, 0].max())]}


def step_signals(ctx: StepContext) -> dict[str, Any]:
    """Eye ratio, blinks, mouth opening, lip feature: the sidecar's, else prepare's own step."""
    ds = _dataset(ctx)
    extras = _extras(ctx)
    if extras is not None:
        for name in ("signals.npz", "lip_basis.npz"):
            shutil.copyfile(extras.path(name), ctx.path(name))
        result = {"blinks": int(len(np.load(ctx.path("signals.npz"))["blinks"])), "lip_basis": "lokitalk_extra"}
    else:
        result = pipeline.step_signals(ctx)
    if ds.has_au:  # their AU45 against our eye closure: a sanity figure (expect clearly positive)
        au = nf.read_au45(ds.root / nf.AU_CSV)[: ds.num_frames]
        closure = -np.load(ctx.path("signals.npz"))["eye_ratio"].astype(np.float64).mean(1)
        if au.std() > 0 and closure.std() > 0:
            result["au45_vs_eye_closure_corr"] = round(float(np.corrcoef(au, closure)[0, 1]), 3)
    return result


def step_audio(ctx: StepContext) -> dict[str, Any]:
    """aud.wav on the video's timeline (aud_id - img_id frames later, when they differ) and our
    log-mel features computed from it; the sidecar's exact files when aud.wav is unchanged."""
    cfg: ImportConfig = ctx.params["config"]
    ds = _dataset(ctx)
    n = ds.num_frames
    source = ds.root / nf.AUDIO
    extras = _extras(ctx)
    if extras is not None and extras.meta.get("audio_sha256") == content_sha(source):
        shutil.copyfile(source, ctx.path("audio.wav"))  # export wrote it as a byte copy of ours
        for name in ("audio_source.wav", "audio_features.npy", "audio_features.json", "av_offset.npz"):
            shutil.copyfile(extras.path(name), ctx.path(name))
        summary = extras.meta.get("summary", {})
        return {k: summary.get(k) for k in ("av_offset_ms", "av_offset_applied_ms", "av_offset_confident")}
    audio = load_audio(source, SAMPLE_RATE)
    video_s = n / cfg.fps
    if len(audio) / SAMPLE_RATE < cfg.min_audio_coverage * video_s:
        raise InputError(f"{source}: the audio lasts {len(audio) / SAMPLE_RATE:.1f} s but the frames "
                         f"{video_s:.1f} s")
    target = int(round(video_s * SAMPLE_RATE))
    audio = np.pad(audio, (0, max(0, target - len(audio))))[:target]
    write_wav(ctx.path("audio_source.wav"), audio, SAMPLE_RATE)
    shift_s = float(ds.aud_ids[0]) / cfg.fps  # frame k is driven by audio row k + (aud_id - img_id)
    aligned = shift_audio(audio, shift_s, SAMPLE_RATE)
    write_wav(ctx.path("audio.wav"), aligned, SAMPLE_RATE)
    np.save(ctx.path("audio_features.npy"), audio_features(aligned, n, cfg.fps, cfg.audio))
    cfg.audio.save(ctx.path("audio_features.json"))
    mouth = np.load(ctx.path("signals.npz"))["mouth_opening"]
    estimate = estimate_offset(mouth, speech_energy_db(aligned, n, cfg.fps, SAMPLE_RATE), cfg.fps, cfg.offset)
    np.savez(ctx.path("av_offset.npz"), lags_s=estimate.lags_s, correlations=estimate.correlations)
    # measured for information only: the dataset's own alignment (aud_id) is what gets applied
    return {"av_offset_ms": round(estimate.offset_s * 1000, 1), "av_offset_applied_ms": round(shift_s * 1000, 1),
            "av_offset_confident": estimate.confident}


def step_masks(ctx: StepContext) -> dict[str, Any]:
    """Region labels: the sidecar's; else head/neck/torso/background from the parsing images with
    face, mouth and eyes painted from our landmarks (the parsing cannot tell those apart); else
    prepare's own labelling from the matte and landmarks."""
    ds = _dataset(ctx)
    n = ds.num_frames
    extras = _extras(ctx)
    if extras is None and not ds.has_parsing:
        return pipeline.step_masks(ctx)
    if extras is not None:
        _copy_frames_dir(extras.path("masks"), ctx.path("masks"), n)
        labels_all = np.stack([cv2.imread(str(pipeline.frame_path(ctx.work_dir, i, "masks")), cv2.IMREAD_UNCHANGED)
                               for i in range(n)])
    else:
        template = load_face_template()
        landmarks = np.load(ctx.path("landmarks.npy"))
        coarse = _parsing_regions(ctx)
        (ctx.work_dir / "masks").mkdir(exist_ok=True)
        labels_all = np.empty_like(coarse)
        for i in range(n):
            person = (coarse[i] != Region.BACKGROUND).astype(np.uint8) * 255
            fine = region_labels(person, landmarks[i, :, :2], template)
            labels_all[i] = np.where(fine >= Region.FACE, fine, coarse[i])
            cv2.imwrite(str(pipeline.frame_path(ctx.work_dir, i, "masks")), labels_all[i], FAST_PNG)
            ctx.progress(1, n)
    ctx.cache["labels"] = labels_all
    area = np.bincount(labels_all.ravel(), minlength=len(Region))[: len(Region)] / labels_all.size
    return {"region_fraction": {r.name.lower(): round(float(area[r]), 4) for r in Region}}


def step_background(ctx: StepContext) -> dict[str, Any]:
    """The sidecar's lossless plate; else bc.jpg (pixels never labelled background are marked
    unseen); else our own plate from the frames and labels."""
    ds = _dataset(ctx)
    extras = _extras(ctx)
    if extras is not None:
        for name in ("background.png", "background_unseen.png"):
            shutil.copyfile(extras.path(name), ctx.path(name))
        unseen = cv2.imread(str(ctx.path("background_unseen.png")), cv2.IMREAD_UNCHANGED) > 0
        return {"background_unseen_fraction": round(float(unseen.mean()), 4), "background": "lokitalk_extra"}
    if not ds.has_background:
        return {**pipeline.step_background(ctx), "background": "estimated from the frames"}
    plate = cv2.imread(str(ds.root / nf.BACKGROUND), cv2.IMREAD_COLOR)
    if plate is None:
        raise InputError(f"{ds.root / nf.BACKGROUND} is not a readable image")
    if plate.shape[:2] != (ds.height, ds.width):  # their loader resizes it the same way
        plate = cv2.resize(plate, (ds.width, ds.height), interpolation=cv2.INTER_AREA)
    unseen = ~(pipeline.load_labels(ctx) == Region.BACKGROUND).any(0)
    cv2.imwrite(str(ctx.path("background.png")), plate)
    cv2.imwrite(str(ctx.path("background_unseen.png")), unseen.astype(np.uint8) * 255)
    return {"background_unseen_fraction": round(float(unseen.mean()), 4), "background": nf.BACKGROUND}


def step_split(ctx: StepContext) -> dict[str, Any]:
    ds = _dataset(ctx)
    write_json_atomic(ctx.path("split.json"), {
        "policy": f"as in {nf.TRANSFORMS['train']} / {nf.TRANSFORMS['val']}",
        "train": ds.train.tolist(), "test": ds.val.tolist()})
    return {"train_frames": len(ds.train), "test_frames": len(ds.val)}


def build_steps(config: ImportConfig) -> list[Step]:
    return [
        Step("media", step_media, 1, (config.use_extras, config.jpeg_quality), "frames from ori_imgs"),
        Step("analyse", step_analyse, 1, config.landmarks, "landmarks and person matte"),
        Step("pose", step_pose, 1, None, "poses from transform_matrix"),
        Step("signals", step_signals, 1, config.signals, "eye, mouth and lip signals"),
        Step("audio", step_audio, 1, (config.min_audio_coverage, config.offset, config.audio), "audio features"),
        Step("masks", step_masks, 1, None, "region masks"),
        Step("background", step_background, 1, None, "background plate"),
        Step("split", step_split, 1, None, "train/val split"),
        Step("report", pipeline.step_report, 1, None, "contact sheet and plots"),
    ]


def import_nerf(dataset_dir: str | Path, out_dir: str | Path, config: ImportConfig = ImportConfig(),
                lip_basis: Path | None = None, reporter: Reporter | None = None, consent: Path | None = None,
                consent_key: bytes | None = None) -> dict[str, Any]:
    """Import (or resume importing) the dataset `dataset_dir` into the avatar folder `out_dir`.

    The consent record is bound to the dataset's aud.wav (by default aud.wav.consent.json beside
    it): the dataset's own recording of the person, the one file every such dataset has in full
    (the frames are already cropped and the source video is usually not shipped)."""
    from ..provenance.consent import require_consent

    start = time.perf_counter()
    ds = read_nerf_dataset(dataset_dir)  # every structural check, before anything is written
    if lip_basis is not None and not Path(lip_basis).is_file():
        raise InputError(f"{lip_basis}: no such lip basis file")
    record = require_consent(ds.root / nf.AUDIO, "prepare", consent, key=consent_key)
    digest = frames_digest(ds.image(i) for i in range(ds.num_frames))
    identity = "+".join([file_identity(ds.root / name) for name in (*nf.TRANSFORMS.values(), nf.AUDIO)]
                        + [digest] + ([file_identity(Path(lip_basis))] if lip_basis else []))
    runner = StepRunner(Path(out_dir), identity, kind="avatar", reporter=reporter)

    def finish(ctx: StepContext) -> dict[str, Any]:
        r = ctx.results
        extras = _extras(ctx)
        n = ds.num_frames
        original = extras.meta.get("avatar", {}) if extras is not None else {}
        source = original.get("source") or {"path": str(ds.root), "width": ds.width, "height": ds.height,
                                             "fps": config.fps, "duration_s": n / config.fps,
                                             "codec": "jpeg frames (NeRF dataset layout)"}
        imported = {"path": str(ds.root), "layout": "AD-NeRF/RAD-NeRF/ER-NeRF", "extras": r["media"]["extras"],
                    "matte": r["analyse"]["matte"], "background": r["background"]["background"],
                    "aud_id_offset_frames": int(ds.aud_ids[0]),
                    "camera_distance_mean": round(r["pose"]["camera_distance_mean"], 4)}
        for key, step in (("lms_agreement_px", "analyse"), ("au45_vs_eye_closure_corr", "signals")):
            if key in r[step]:
                imported[key] = r[step][key]
        write_json_atomic(ctx.path("avatar.json"), {
            "format": pipeline.AVATAR_FORMAT, "lokitalk_version": __version__, "source": source,
            "source_identity": identity, "crop": original.get("crop"), "fps": config.fps,
            "config": repr(config), "imported_from": imported, "consent": record.block()})
        summary = dict(extras.meta.get("summary", {})) if extras is not None else {}
        summary.update({
            **pipeline.step_summary(r, n, config.fps, ds.width, ds.height),
            "source": source,
            "imported_from": imported, "consent_id": record.consent_id,
            "elapsed_s": round(time.perf_counter() - start, 2)})
        return summary

    return runner.run(build_steps(config), {"config": config, "dataset": ds, "digest": digest,
                                            "lip_basis": lip_basis}, finish)
