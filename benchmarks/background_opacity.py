"""How much of the background a model covers: the rendered opacity over a frame's background pixels.

    python benchmarks/background_opacity.py MODEL_DIR... --frames 419,300 [--device cpu]

For each model and frame (training or test), renders the frame's opacity alone at the model's
render settings and prints, over the pixels the prepared labels call background, the mean opacity
and the share more than half opaque. A real background is 0; a model that paints hair or haze
over it at a view it never trained on shows it here (docs/RESULTS.md, "A proposal stage").
"""

from __future__ import annotations

import argparse
import json

import torch

from lokitalk.data.avatar import load_avatar, resize_image
from lokitalk.data.rays import frame_rays
from lokitalk.prepare.masks import Region
from lokitalk.render.frames import frame_conditioning, render_batch
from lokitalk.render.loading import load_trained

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--frames", required=True, help="comma-separated frame indices")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for model_dir in args.model_dirs:
        trained = load_trained(model_dir, args.device)
        avatar = load_avatar(trained.avatar_dir)
        cam = avatar.camera.scaled(trained.image_scale)
        train = set(avatar.split.train.tolist())
        for index in (int(i) for i in args.frames.split(",")):
            cond = trained.model.calibrated(frame_conditioning(avatar, index))
            labels = torch.from_numpy(resize_image(avatar.labels(index), cam, nearest=True).reshape(-1))
            origins, dirs = frame_rays(cond["rotation"], cond["translation"], cam.focal_px, cam.cx, cam.cy,
                                       cam.width, cam.height, trained.device)
            opacity = []
            with torch.no_grad(), trained.acceleration.autocast(trained.device):
                for first in range(0, len(origins), 16384):
                    part = slice(first, first + 16384)
                    batch = dict(cond, origins=origins[part], directions=dirs[part],
                                 background=torch.zeros(len(origins[part]), 3, device=trained.device))
                    opacity.append(render_batch(trained.model, batch, trained.grid, trained.render_config).opacity.cpu())
            background = torch.cat(opacity).float()[labels == int(Region.BACKGROUND)]
            print(json.dumps({"model": model_dir, "frame": index, "split": "train" if index in train else "test",
                              "background_pixels": int(background.numel()),
                              "mean_opacity": round(float(background.mean()), 4),
                              "share_over_half": round(float((background > 0.5).float().mean()), 4)}), flush=True)


if __name__ == "__main__":
    main()
