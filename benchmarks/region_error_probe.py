"""What kind of error a region holds: misplaced, blurred, or unexplained by the driving signals.

    python benchmarks/region_error_probe.py MODEL_DIR [--region neck] [--frames 16] [--out DIR]

`evaluate`'s error budget says where the error is (the neck band held 32 % of id01's test error
at 23.7 dB, the face 29.9); this says what it is, on N evenly spaced training frames and N test
frames, inside the region's label mask (at the size the model renders):
- `psnr`: as rendered;
- `psnr_best_shift`: with the rendered image moved by the best whole-pixel shift within
  +-`--max-shift` px, chosen per frame on the region alone: the part of the error that is the
  region sitting in the wrong place;
- `psnr_vs_blurred_real[sigma]`: the rendered region against the real frame blurred by a Gaussian
  of that sigma (px); a maximum above `psnr` at sigma > 0 means the render is a blurred copy;
- `psnr_blurred_real[sigma]`: the real frame blurred against itself, to read the sigma by;
- `error_vs_signals`: Pearson r, across frames, of the region's squared error with the lip
  feature's distance from its mean, the head's rotation from the mean pose, and the eye ratio.
Writes DIR/region_error_<region>.json and DIR/region_error_<region>.png: the mean absolute error
over the training frames and over the test frames (brighter = worse), with the region's outline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.evaluate import metrics
from lokitalk.evaluate.run import reference_frames, render_test
from lokitalk.prepare.masks import Region
from lokitalk.render.loading import load_trained

SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0)


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`image` moved by (dx, dy) px, edges repeated."""
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                          borderMode=cv2.BORDER_REPLICATE)


def best_shift_error(rendered: np.ndarray, real: np.ndarray, mask: np.ndarray, max_shift: int) -> float:
    """Lowest mean squared error inside `mask` over whole-pixel shifts of `rendered`."""
    best = np.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            moved = shifted(rendered, dx, dy).astype(np.float64)
            best = min(best, float(((moved - real) ** 2)[mask].mean()))
    return best


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return image if sigma == 0 else cv2.GaussianBlur(image, (0, 0), sigma)


def psnr_of(mse: float) -> float:
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def probe_split(rendered, real, labels, region: int, max_shift: int) -> dict:
    rows = {"mse": [], "mse_best_shift": [], "vs_blurred": {s: [] for s in SIGMAS},
            "blurred_self": {s: [] for s in SIGMAS}}
    for image, truth, label in zip(rendered, real, labels):
        mask = label == region
        if not mask.any():
            continue
        image64, truth64 = image.astype(np.float64), truth.astype(np.float64)
        rows["mse"].append(float(((image64 - truth64) ** 2)[mask].mean()))
        rows["mse_best_shift"].append(best_shift_error(image, truth64, mask, max_shift))
        for s in SIGMAS:
            soft = blurred(truth.astype(np.float32), s).astype(np.float64)
            rows["vs_blurred"][s].append(float(((image64 - soft) ** 2)[mask].mean()))
            rows["blurred_self"][s].append(float(((soft - truth64) ** 2)[mask].mean()))
    return rows


def summarise(rows: dict) -> dict:
    return {"frames": len(rows["mse"]), "psnr": round(psnr_of(np.mean(rows["mse"])), 2),
            "psnr_best_shift": round(psnr_of(np.mean(rows["mse_best_shift"])), 2),
            "psnr_vs_blurred_real": {str(s): round(psnr_of(np.mean(v)), 2) for s, v in rows["vs_blurred"].items()},
            "psnr_blurred_real": {str(s): round(psnr_of(np.mean(v)), 2)
                                  for s, v in rows["blurred_self"].items() if s > 0}}


def signal_correlations(avatar, frames: np.ndarray, errors: list[float]) -> dict:
    lip = avatar.lip_feature[frames]
    rotations = Rotation.from_matrix(avatar.rotation[frames])
    mean = Rotation.from_matrix(avatar.rotation).mean()
    signals = {"lip_distance": np.linalg.norm(lip - avatar.lip_feature.mean(0), axis=-1),
               "rotation_from_mean_deg": np.degrees((mean.inv() * rotations).magnitude()),
               "eye_ratio": np.asarray(avatar.eye_ratio[frames]).reshape(len(frames), -1).mean(-1)}
    out = {}
    for name, values in signals.items():
        if len(errors) > 2 and np.std(values) > 0:
            out[name] = round(float(np.corrcoef(values, errors)[0, 1]), 2)
    return out


def error_image(rendered, real, labels, region: int) -> np.ndarray:
    """Mean absolute error (grey, x4) with the region's outline in green."""
    error = np.abs(rendered.astype(np.float32) - real.astype(np.float32)).mean((0, 3))
    grey = np.clip(error * 4, 0, 255).astype(np.uint8)
    image = np.repeat(grey[..., None], 3, -1)
    outline = cv2.morphologyEx((labels == region).mean(0).round().astype(np.uint8), cv2.MORPH_GRADIENT,
                               np.ones((3, 3), np.uint8)) > 0
    image[outline] = (0, 200, 0)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--region", default="neck", choices=[r.name.lower() for r in Region])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--max-shift", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="default: MODEL_DIR/eval")
    args = parser.parse_args()

    region = int(Region[args.region.upper()])
    trained = load_trained(args.model_dir, args.device)
    avatar = load_avatar(trained.avatar_dir)
    camera = avatar.camera.scaled(trained.image_scale)
    pool = training_frames(avatar, None)
    splits = {"train": pool[np.linspace(0, len(pool) - 1, min(args.frames, len(pool))).round().astype(int)],
              "test": avatar.split.test[np.linspace(0, len(avatar.split.test) - 1,
                                                    min(args.frames, len(avatar.split.test))).round().astype(int)]}
    result, images = {"model": str(args.model_dir), "region": args.region}, []
    for name, frames in splits.items():
        rendered, _ = render_test(trained, avatar, frames)
        real, labels = reference_frames(avatar, frames, camera)
        rows = probe_split(rendered, real, labels, region, args.max_shift)
        kept = np.array([(label == region).any() for label in labels])
        result[name] = summarise(rows) | {
            "psnr_whole_frame": round(float(np.mean([metrics.psnr(p, r) for p, r in zip(rendered, real)])), 2),
            "error_vs_signals": signal_correlations(avatar, frames[kept], rows["mse"])}
        images.append(error_image(rendered, real, labels, region))
    out = Path(args.out or Path(args.model_dir) / "eval")
    out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / f"region_error_{args.region}.png"), cv2.cvtColor(np.concatenate(images, 1), cv2.COLOR_RGB2BGR))
    (out / f"region_error_{args.region}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
