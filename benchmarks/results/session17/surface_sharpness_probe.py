"""One-off probe (session 17): how concentrated the rendered weight is along rays through the lips,
the lower face and the nose: the median share of a ray's opacity in the three samples around its
peak, on every 5th test frame (points: each frame's landmarks in the head frame, as
lip_depth_probe.py).  python surface_sharpness_probe.py MODEL_DIR..."""
import sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lokitalk.data.avatar import load_avatar
from lokitalk.face_model import load_face_template
from lokitalk.model.renderer import RenderConfig
from lokitalk.prepare.signals import align_to_head_frame
from lokitalk.render.frames import frame_conditioning, render_batch
from lokitalk.render.loading import load_trained
from lokitalk.train.face_depth import depth_rays, lower_face_ids

template = load_face_template()
NOSE = np.array([1, 4, 5, 195, 197, 6, 168])  # mesh ids along the nose


@torch.no_grad()
def peak_share(tm, av, frames, ids):
    aligned = align_to_head_frame(av.landmarks[frames].astype(np.float64), template)
    config = RenderConfig(samples_per_ray=tm.render_config.samples_per_ray, box_sampling=tm.render_config.box_sampling)
    shares = []
    for row, index in enumerate(frames):
        cond = tm.model.calibrated(frame_conditioning(av, int(index)))
        rotation, translation = cond["rotation"].double().numpy(), cond["translation"].double().numpy()
        origins, directions, _ = depth_rays(aligned[row, ids], rotation, translation)
        batch = {**cond, "origins": torch.from_numpy(origins).float(), "directions": torch.from_numpy(directions).float(),
                 "background": torch.zeros(len(ids), 3)}
        w = render_batch(tm.model, batch, tm.grid, config).weights.float()
        around = torch.stack([(w.argmax(1) + j).clamp(0, w.shape[1] - 1) for j in (-1, 0, 1)], 1)
        shares.append((w.gather(1, around).sum(1) / w.sum(1).clamp_min(1e-6)).median().item())
    return round(float(np.median(shares)), 3)


for model_dir in sys.argv[1:]:
    tm = load_trained(model_dir); av = load_avatar(tm.avatar_dir)
    test = av.split.test[::5]
    print(Path(model_dir).name, "samples", tm.render_config.samples_per_ray, "peak3 share: lips",
          peak_share(tm, av, test, template.lips_outer), "lower", peak_share(tm, av, test, lower_face_ids(template)),
          "nose", peak_share(tm, av, test, NOSE), flush=True)
