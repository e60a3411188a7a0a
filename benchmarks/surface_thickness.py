"""How thick the rendered surface is: the spread of each ray's rendered weight along the ray.

    python benchmarks/surface_thickness.py MODEL_DIR... [--frames 4] [--samples N]

For evenly spaced test frames, every pixel of the face, mouth, eyes, hair (head) and neck is
rendered with the model's own settings (no early termination: the whole weight along the ray)
and, per ray, the weighted standard deviation of the sample distances is taken (cm, over rays
at least half opaque). A real surface has none; a volume with its colour smeared over a few cm
renders aside when the view turns. `--samples`: render with this many samples a ray instead.
One JSON row per model: the median spread per region, and the median over the face regions.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from lokitalk.data.avatar import load_avatar, resize_image
from lokitalk.data.rays import frame_rays
from lokitalk.prepare.masks import Region
from lokitalk.render.frames import frame_conditioning, render_batch
from lokitalk.render.loading import load_trained

REGIONS = {"face": Region.FACE, "mouth": Region.MOUTH, "eyes": Region.EYES, "head": Region.HEAD, "neck": Region.NECK}


def weight_spread(weights: torch.Tensor, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[R,S] weights and distances -> (opacity [R], standard deviation of the distance [R], m)."""
    opacity = weights.sum(1)
    w = weights / opacity.clamp_min(1e-8)[:, None]
    mean = (w * distances).sum(1)
    return opacity, ((w * (distances - mean[:, None]) ** 2).sum(1)).clamp_min(0).sqrt()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for model_dir in args.model_dirs:
        trained = load_trained(model_dir, args.device)
        avatar = load_avatar(trained.avatar_dir)
        config = replace(trained.render_config, termination=0.0)
        if args.samples:
            config = replace(config, samples_per_ray=args.samples)
        cam = avatar.camera.scaled(trained.image_scale)
        test = avatar.split.test
        spreads: dict[str, list] = {name: [] for name in REGIONS}
        for index in test[np.linspace(0, len(test) - 1, min(args.frames, len(test))).round().astype(int)]:
            cond = trained.model.calibrated(frame_conditioning(avatar, int(index)))
            labels = torch.from_numpy(resize_image(avatar.labels(int(index)), cam, nearest=True).reshape(-1))
            origins, dirs = frame_rays(cond["rotation"], cond["translation"], cam.focal_px, cam.cx, cam.cy,
                                       cam.width, cam.height, trained.device)
            wanted = torch.isin(labels, torch.tensor([int(r) for r in REGIONS.values()]))
            origins, dirs, labels = origins[wanted], dirs[wanted], labels[wanted]
            for first in range(0, len(origins), 8192):
                part = slice(first, first + 8192)
                batch = dict(cond, origins=origins[part], directions=dirs[part],
                             background=torch.zeros(len(origins[part]), 3, device=trained.device))
                with torch.no_grad(), trained.acceleration.autocast(trained.device):
                    out = render_batch(trained.model, batch, trained.grid, config)
                opacity, spread = weight_spread(out.weights.float(), out.distances.float())
                solid = (opacity > 0.5).cpu()
                for name, region in REGIONS.items():
                    chosen = solid & (labels[part] == int(region))
                    spreads[name].append(spread.cpu()[chosen] * 100)
        medians = {name: round(float(torch.cat(v).median()), 3) if sum(len(x) for x in v) else None
                   for name, v in spreads.items()}
        face = torch.cat([torch.cat(spreads[n]) for n in ("face", "mouth", "eyes")])
        print(json.dumps({"model": model_dir, "samples": config.samples_per_ray, "box_sampling": config.box_sampling,
                          "fine_samples": config.fine_samples, "frames": args.frames, "spread_cm_median": medians,
                          "face_spread_cm_median": round(float(face.median()), 3)}), flush=True)


if __name__ == "__main__":
    main()
