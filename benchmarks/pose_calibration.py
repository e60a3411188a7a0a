"""Do a pose-refined model's corrections carry over to frames it never trained on?

    python benchmarks/pose_calibration.py MODEL_DIR [--ridge 1e-3] [--device cpu]

A model trained with `pose_refinement` holds a correction for each training frame
(model.safetensors, "poses.table.weight"); test frames are rendered at their tracked poses. If
the tracker's errors depend on the pose itself (e.g. a turn it underestimates), part of them is
predictable from the tracked pose: this fits a ridge regression from the training frames' tracked
pose (rotation vector, translation, 1) to their corrections, renders the test split at the
tracked and at the regression-corrected poses, and prints one JSON row with both PSNRs and
LPIPS, and how much of the corrections' variance the regression explains on the training frames.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch
from safetensors.torch import load_file

from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.evaluate import metrics
from lokitalk.evaluate.run import _lpips, reference_frames, render_test
from lokitalk.model.field import pose_vector
from lokitalk.model.rigid import rotation_from_vector
from lokitalk.render.loading import load_trained
from lokitalk.train.pose_refine import TRANSLATION_UNIT_M, FramePoseCorrections


def pose_features(rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    vectors = np.stack([pose_vector(torch.from_numpy(r), torch.from_numpy(t)).numpy()
                        for r, t in zip(rotations.astype(np.float64), translations.astype(np.float64))])
    return np.concatenate([vectors, np.ones((len(vectors), 1))], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--ridge", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    trained = load_trained(args.model_dir, args.device)
    train_cfg = trained.meta["train"]
    avatar = load_avatar(trained.avatar_dir)
    table = load_file(f"{args.model_dir}/model.safetensors").get("poses.table.weight")
    if table is None:
        raise SystemExit(f"{args.model_dir} was not trained with pose_refinement")
    frames = training_frames(avatar, train_cfg.get("train_seconds"))
    corrections = FramePoseCorrections(avatar.num_frames, frames, int(train_cfg["pose_knot_frames"]))
    corrections.load_state_dict({"table.weight": table})
    targets = corrections.rows(frames).detach().double().numpy()
    features = pose_features(avatar.rotation[frames], avatar.translation[frames])
    scale = features.std(0) + 1e-9
    scale[-1] = 1.0
    gram = (features / scale).T @ (features / scale) + args.ridge * len(frames) * np.diag([1.0] * 6 + [0.0])
    weights = np.linalg.solve(gram, (features / scale).T @ targets) / scale[:, None]
    explained = 1.0 - ((targets - features @ weights) ** 2).sum(0) / ((targets - targets.mean(0)) ** 2).sum(0).clip(1e-12)

    test = avatar.split.test
    camera = avatar.camera.scaled(trained.image_scale)
    real, _ = reference_frames(avatar, test, camera)
    row = {"model": args.model_dir, "test_frames": int(len(test)),
           "explained_variance": [round(float(v), 3) for v in explained],
           "training_corrections": {"rotation_deg_rms": float(np.degrees(np.sqrt((targets[:, :3] ** 2).sum(1).mean()))),
                                    "translation_mm_rms": float(np.sqrt((targets[:, 3:] ** 2).sum(1).mean())
                                                                * TRANSLATION_UNIT_M * 1000)}}
    for name in ("tracked", "calibrated"):
        if name == "calibrated":
            predicted = pose_features(avatar.rotation[test], avatar.translation[test]) @ weights
            turn = rotation_from_vector(torch.from_numpy(predicted[:, :3])).numpy()
            rotation, translation = avatar.rotation.copy(), avatar.translation.copy()
            shift = np.einsum("nij,nj->ni", rotation[test], predicted[:, 3:] * TRANSLATION_UNIT_M)
            rotation[test] = np.einsum("nij,njk->nik", rotation[test], turn)
            translation[test] = translation[test] + shift
            avatar = replace(avatar, rotation=rotation, translation=translation)
            row["test_correction_deg_rms"] = float(np.degrees(np.sqrt((predicted[:, :3] ** 2).sum(1).mean())))
        rendered, _ = render_test(trained, avatar, test)
        scores = _lpips(rendered, real)
        row[f"psnr_{name}"] = round(float(np.mean([metrics.psnr(p, r) for p, r in zip(rendered, real)])), 3)
        row[f"lpips_{name}"] = None if scores is None else round(float(np.mean(scores)), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
