"""One-off probe (session 17): the rendered mouth's sideways shift measured from pixels instead of
landmarks. For each saved test frame (prior_experiment.py's frames_*.npz), phase correlation
(skimage.registration, 1/20 px) between the real and the rendered grey mouth crop (the real lip
landmarks' box with a margin), and the same for a crop around the nose as a rigid reference.
Positive x: the rendered content sits right of the real.  python mouth_shift_pixels.py OUT AVATAR_DIR"""
import json, sys
from pathlib import Path
import numpy as np
from skimage.registration import phase_cross_correlation
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lokitalk.data.avatar import load_avatar, resize_image
from lokitalk.face_model import load_face_template

out, avatar_dir = Path(sys.argv[1]), Path(sys.argv[2])
av = load_avatar(avatar_dir)
template = load_face_template()
saved = np.load(out / f"frames_{avatar_dir.name}.npz")
indices = saved["indices"]
NOSE = [1, 4, 5, 195, 197, 6, 168, 45, 275, 220, 440]  # mesh ids along the nose


def shift(real, rendered, points, margin):
    lo = np.floor(points.min(0) - margin).astype(int).clip(0)
    hi = np.ceil(points.max(0) + margin).astype(int)
    a = real[lo[1]:hi[1], lo[0]:hi[0]].mean(-1); b = rendered[lo[1]:hi[1], lo[0]:hi[0]].mean(-1)
    (dy, dx), _, _ = phase_cross_correlation(a, b, upsample_factor=20, normalization=None)
    return -dx, -dy  # the shift that moves the real crop onto the rendered one


for key in [k for k in saved.files if k.endswith("_1200")]:
    rendered = saved[key]
    scale = rendered.shape[2] / av.camera.width
    cam = av.camera.scaled(scale)
    rows = []
    for frame, image in zip(indices, rendered):
        real = resize_image(av.frame(int(frame)), cam).astype(np.float64)
        lm = av.landmarks[int(frame)][:, :2] * scale
        m = shift(real, image.astype(np.float64), lm[template.mouth_points], 6)
        n = shift(real, image.astype(np.float64), lm[NOSE], 6)
        rows.append([m[0], m[1], n[0], n[1]])
    r = np.array(rows)
    print(json.dumps({"frames": key, "mouth_shift_xy_px": r[:, :2].mean(0).round(2).tolist(),
                      "nose_shift_xy_px": r[:, 2:].mean(0).round(2).tolist(),
                      "mouth_x_per_frame": r[:, 0].round(1).tolist()}))
