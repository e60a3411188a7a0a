"""One-off probe (session 17): where a model puts the mouth, relative to the real mouth and to the
rest of the face, on frames it trained on and on test frames, and on the test frames again with
every frame's lip feature swapped for the training frames' mean (a mouth driven only by
in-distribution input), and train and test frames with every sample's view direction replaced
by the central ray's direction at the training frames' mean pose (no view extrapolation), and the
test frames without the pose calibration (at the tracked poses). Signed offsets are rendered minus real landmarks, in px at the model's
size; "rigid" is the mean over the pose fit's rigid points (pose.npz shape_ids), "mouth" over the
lip landmarks.  python mouth_probe.py MODEL_DIR [MODEL_DIR ...] [--frames 20]"""
import argparse, json, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lokitalk.data.avatar import load_avatar, resize_image, training_frames
from lokitalk.evaluate import metrics
from lokitalk.face_model import load_face_template
from lokitalk.prepare.landmarks import track_landmarks
from lokitalk.render.frames import frame_conditioning, render_frame
from lokitalk.render.loading import load_trained

parser = argparse.ArgumentParser()
parser.add_argument("models", nargs="+"); parser.add_argument("--frames", type=int, default=20)
args = parser.parse_args()
mouth = load_face_template().mouth_points


def spread(frames, count):
    return frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]


def placement(tm, av, indices, lip=None):
    cam = av.camera.scaled(tm.image_scale)
    background = resize_image(av.background(), cam)
    rendered = []
    for i in indices:
        cond = frame_conditioning(av, int(i))
        if lip is not None:
            cond["lip_feature"] = torch.from_numpy(lip.astype(np.float32))
        rendered.append(render_frame(tm.model, av, cond, tm.grid, tm.render_config, background, scale=tm.image_scale))
    rendered = np.stack(rendered)
    points, ok = track_landmarks(rendered)
    real = av.landmarks[indices].copy(); real[..., :2] *= tm.image_scale
    rigid = np.load(av.root / "pose.npz")["shape_ids"]
    p, r = points[ok], real[ok]
    off, shape = metrics.mouth_offset_and_shape(p, r, mouth)
    d_mouth = (p[:, mouth, :2].mean(1) - r[:, mouth, :2].mean(1))
    d_rigid = (p[:, rigid, :2].mean(1) - r[:, rigid, :2].mean(1))
    row = {"frames": int(ok.sum()), "lmd": round(metrics.landmark_distance(p, r, mouth), 3),
           "mouth_xy": [round(float(v), 2) for v in d_mouth.mean(0)], "rigid_xy": [round(float(v), 2) for v in d_rigid.mean(0)],
           "mouth_minus_rigid_x": round(float((d_mouth - d_rigid)[:, 0].mean()), 2), "shape": round(float(shape.mean()), 3)}
    return row


for model_dir in args.models:
    tm = load_trained(model_dir); av = load_avatar(tm.avatar_dir)
    trained_on = training_frames(av, tm.meta["train"].get("train_seconds"))
    test = spread(av.split.test, args.frames)
    mean_lip = av.lip_feature[trained_on].mean(0)
    out = {"model": model_dir,
           "train": placement(tm, av, spread(trained_on, args.frames)),
           "test": placement(tm, av, test),
           "test_mean_lip": placement(tm, av, test, lip=mean_lip)}
    # the view direction the colour head reads, in the head frame: the camera's +z at the mean
    # training rotation (the rotation maps head -> camera, so its transpose's third column)
    mean_rot = av.rotation[trained_on].mean(0)
    u, _, vt = np.linalg.svd(mean_rot); mean_rot = u @ vt
    fixed = torch.from_numpy(mean_rot.T[:, 2].astype(np.float32))
    original = tm.model.canonical.forward
    tm.model.canonical.forward = lambda points, directions, *a, **k: original(points, fixed.expand_as(directions), *a, **k)
    out["train_fixed_view"] = placement(tm, av, spread(trained_on, args.frames))
    out["test_fixed_view"] = placement(tm, av, test)
    tm.model.canonical.forward = original
    if tm.model.config.pose_calibration:
        with torch.no_grad():
            tm.model.pose_calibration.zero_()
        out["test_uncalibrated"] = placement(tm, av, test)
    print(json.dumps(out), flush=True)
