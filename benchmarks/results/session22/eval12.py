"""PSNR / LPIPS (and saved frames) of a finished model on prior_experiment's 12 evenly spaced test frames."""
# usage: python benchmarks/results/session22/eval12.py MODEL_DIR AVATAR_DIR  (writes MODEL_DIR/eval12.json)
import json, sys
from pathlib import Path
import numpy as np
REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / 'benchmarks')); sys.path.insert(0, str(REPO))
from prior_experiment import eval_frames
from lokitalk.data.avatar import load_avatar, resize_image
from lokitalk.evaluate import metrics
from lokitalk.evaluate.run import render_test
from lokitalk.evaluate.lpips import lpips_distance
from lokitalk.render.loading import load_trained

model, avatar_dir = Path(sys.argv[1]), Path(sys.argv[2])
avatar = load_avatar(avatar_dir)
frames = eval_frames(avatar, 12)
trained = load_trained(model, 'cpu')
rendered, fps = render_test(trained, avatar, frames)
cam = avatar.camera.scaled(trained.image_scale)
real = np.stack([resize_image(avatar.frame(int(i)), cam) for i in frames])
psnr = [metrics.psnr(r, t) for r, t in zip(rendered, real)]
lp = lpips_distance(rendered, real, device='cpu')
from lokitalk.evaluate.run import _lip_and_eye_metrics
found = _lip_and_eye_metrics(rendered, avatar, frames, rendered.shape[2] / avatar.camera.width)
out = {'lmd': found.get('lmd'), 'mouth_offset_px': found.get('mouth_offset_px'), 'lmd_mouth_shape': found.get('lmd_mouth_shape'),
       'model': str(model), 'frames': [int(i) for i in frames], 'psnr': float(np.mean(psnr)),
       'psnr_frames': [round(float(v), 3) for v in psnr], 'lpips': float(np.mean(lp))}
np.savez_compressed(model / 'eval12_frames.npz', rendered=rendered, frames=frames)
print(json.dumps(out))
(model / 'eval12.json').write_text(json.dumps(out, indent=1))
