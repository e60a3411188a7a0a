"""One-off probe (session 17): how each deformation stage moves the lips and the rigid face points
sideways, on training and test frames. Points: every frame's landmarks in the head frame
(prepare.signals.align_to_head_frame); each stage's offset is evaluated there with the frame's
signals as rendering reads them. Mean head-frame x offset (mm) of the outer-lip points, of the
rigid points, and their difference (a canonical offset of +d renders the content d to the
left).  python mouth_warp_probe.py MODEL_DIR..."""
import json, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.face_model import load_face_template
from lokitalk.prepare.signals import align_to_head_frame
from lokitalk.render.frames import frame_conditioning
from lokitalk.render.loading import load_trained

template = load_face_template()


@torch.no_grad()
def offsets(tm, av, frames):
    aligned = align_to_head_frame(av.landmarks[frames].astype(np.float64), template)
    rows = []
    for row, index in enumerate(frames):
        cond = tm.model.calibrated(frame_conditioning(av, int(index)))
        lip, eye, pose, identity = tm.model.frame_signals(cond, torch.device("cpu"))
        extra = () if identity is None else (identity.deformation,)
        x = torch.from_numpy(aligned[row]).float()
        out = tm.model.deformation(x, lip[None].float(), eye[None].float(), pose[None].float(), *extra)
        face = out.face_offset[:, 0].numpy() * 1000
        torso = (out.canonical - x - out.face_offset)[:, 0].numpy() * 1000
        rows.append([face[template.lips_outer].mean(), face[template.rigid].mean(),
                     torso[template.lips_outer].mean(), torso[template.rigid].mean()])
    m = np.mean(rows, 0)
    return {"face_lips_mm": round(float(m[0]), 2), "face_rigid_mm": round(float(m[1]), 2),
            "torso_lips_mm": round(float(m[2]), 2), "torso_rigid_mm": round(float(m[3]), 2),
            "lips_minus_rigid_mm": round(float(m[0] + m[2] - m[1] - m[3]), 2)}


for model_dir in sys.argv[1:]:
    tm = load_trained(model_dir); av = load_avatar(tm.avatar_dir)
    trained_on = training_frames(av, tm.meta["train"].get("train_seconds"))
    spread = lambda f, n=32: f[np.linspace(0, len(f) - 1, min(n, len(f))).round().astype(int)]
    print(json.dumps({"model": model_dir, "train": offsets(tm, av, spread(trained_on)),
                      "test": offsets(tm, av, spread(av.split.test))}), flush=True)
