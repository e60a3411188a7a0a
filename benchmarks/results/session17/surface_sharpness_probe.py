"""One-off probe (session 17): how concentrated the rendered weight is along rays through the lips, the
lower face and the nose (share of a ray's opacity in the three samples around its peak), on every
5th test frame.  python surface_sharpness_probe.py MODEL_DIR... (run from the repository root)"""
import sys, numpy as np, torch
sys.path.insert(0, "benchmarks/results/session17")
src = open("benchmarks/results/session17/lip_depth_probe.py").read().split("@torch.no_grad()")[0]
src = src.replace("parents[3]", "parents[0]"); sys.path.insert(0, "."); exec(src)
from lokitalk.data.avatar import load_avatar
@torch.no_grad()
def peak(tm, av, frames, ids):
    aligned = align_to_head_frame(av.landmarks[frames].astype(np.float64), template)
    config = RenderConfig(samples_per_ray=tm.render_config.samples_per_ray, box_sampling=tm.render_config.box_sampling)
    vals = []
    for row, index in enumerate(frames):
        cond = tm.model.calibrated(frame_conditioning(av, int(index)))
        rot, tr = cond["rotation"].double().numpy(), cond["translation"].double().numpy()
        pts = aligned[row, ids]
        o, d, dist = depth_rays(pts, rot, tr)
        batch = {**cond, "origins": torch.from_numpy(o).float(), "directions": torch.from_numpy(d).float(), "background": torch.zeros(len(ids), 3)}
        r = render_batch(tm.model, batch, tm.grid, config)
        w = r.weights.float()
        # share of the ray's opacity in its 3 heaviest neighbouring samples around the peak
        k = w.argmax(1); idx = torch.stack([(k + j).clamp(0, w.shape[1] - 1) for j in (-1, 0, 1)], 1)
        vals.append((w.gather(1, idx).sum(1) / w.sum(1).clamp_min(1e-6)).median().item())
    return round(float(np.median(vals)), 3)
for m in sys.argv[1:]:
    tm = load_trained(m); av = load_avatar(tm.avatar_dir)
    te = av.split.test[::5]
    rigid_ids = np.load(av.root / "pose.npz")["shape_ids"]
    nose = np.array([1, 4, 5, 195, 197, 6, 168])
    print(m.split('/')[-1], "samples", tm.render_config.samples_per_ray, "peak3 share: lips", peak(tm, av, te, lips), "lower", peak(tm, av, te, lower), "nose", peak(tm, av, te, nose))
