"""One-off probe (session 17): how far a model's surface is, in depth, from the lips and the rest
of the lower face, which the face depth points (pose.npz shape: rigid points only) leave out.
Per frame, every landmark is put in the head frame by a similarity fit of its 3-D landmarks onto
the template's rigid points (prepare.signals.align_to_head_frame); rays from the camera (the pose
the model renders the frame with) through the visible outer-lip points and through the visible
non-rigid, non-lip mesh points (chin, jaw, lower cheeks) give a median |termination error| in cm,
as lokitalk.evaluate.geometry does for the rigid points.  python lip_depth_probe.py MODEL_DIR..."""
import json, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.face_model import NUM_MESH_POINTS, load_face_template
from lokitalk.model.renderer import RenderConfig
from lokitalk.prepare.signals import align_to_head_frame
from lokitalk.render.frames import frame_conditioning, render_batch
from lokitalk.render.loading import load_trained
from lokitalk.train.face_depth import DEPTH_UNIT_M, depth_rays, face_depth_error, load_face_depth_points, template_normals

template = load_face_template()
normals = template_normals(template.vertices, template.tessellation_edges)
lips = template.lips_outer
lower = np.setdiff1d(np.arange(NUM_MESH_POINTS), np.concatenate([template.rigid, template.mouth_points]))
lower = lower[template.vertices[lower, 1] > template.vertices[lips, 1].min()]  # below the top of the lips (y down)


@torch.no_grad()
def errors(tm, av, frames, ids):
    aligned = align_to_head_frame(av.landmarks[frames].astype(np.float64), template)
    config = RenderConfig(samples_per_ray=tm.render_config.samples_per_ray, box_sampling=tm.render_config.box_sampling)
    out, signed = [], []
    for row, index in enumerate(frames):
        cond = tm.model.calibrated(frame_conditioning(av, int(index)))
        rot, tr = cond["rotation"].double().numpy(), cond["translation"].double().numpy()
        pts = aligned[row, ids]
        centre = -rot.T @ tr
        towards = (centre - pts) / np.linalg.norm(centre - pts, axis=-1, keepdims=True)
        keep = (towards * normals[ids]).sum(-1) > 0.3
        if not keep.any():
            continue
        o, d, dist = depth_rays(pts[keep], rot, tr)
        batch = {**cond, "origins": torch.from_numpy(o).float(), "directions": torch.from_numpy(d).float(),
                 "background": torch.zeros(int(keep.sum()), 3)}
        r = render_batch(tm.model, batch, tm.grid, config)
        e = face_depth_error(r.depth.float(), r.opacity.float(), torch.from_numpy(dist).float()) / DEPTH_UNIT_M
        out.append(float(e.abs().median())); signed.append(float(e.median()))
    return round(float(np.median(out)), 2), round(float(np.median(signed)), 2)


for model_dir in sys.argv[1:]:
    tm = load_trained(model_dir); av = load_avatar(tm.avatar_dir)
    trained_on = training_frames(av, tm.meta["train"].get("train_seconds"))
    # do the aligned landmarks agree with the fitted rigid shape (same head frame)?
    shape = load_face_depth_points(av.root).points
    rigid_ids = np.load(av.root / "pose.npz")["shape_ids"]
    aligned = align_to_head_frame(av.landmarks[trained_on].astype(np.float64), template)
    agree = np.linalg.norm(np.median(aligned[:, rigid_ids], 0) - shape, axis=-1)
    row = {"model": model_dir, "aligned_vs_shape_cm": round(float(np.median(agree)) * 100, 2)}
    spread = lambda f, n=16: f[np.linspace(0, len(f) - 1, min(n, len(f))).round().astype(int)]
    for name, frames in (("train", spread(trained_on)), ("test", spread(av.split.test))):
        for part, ids in (("rigid", rigid_ids), ("lips", lips), ("lower", lower)):
            row[f"{part}_{name}_cm"], row[f"{part}_{name}_signed_cm"] = errors(tm, av, frames, ids)
    print(json.dumps(row), flush=True)
