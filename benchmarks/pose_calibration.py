"""Do a pose-refined model's corrections carry over to frames it never trained on?

    python benchmarks/pose_calibration.py MODEL_DIR [--ridge 1e-3] [--device cpu]

A model trained with `pose_refinement` holds a correction for each training frame
(model.safetensors, "poses.table.weight"); test frames are rendered at their tracked poses. If
the tracker's errors depend on the pose itself (e.g. a turn it underestimates), part of them is
predictable from the tracked pose: this fits a ridge regression from the training frames' tracked
pose (rotation vector, translation, 1) to their corrections (the fit training ends with:
lokitalk.model.pose_calibration), renders the test split at the tracked and at the corrected
poses, and prints one JSON row with both PSNRs and
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
from lokitalk.model.pose_calibration import TRANSLATION_UNIT_M, calibrate, pose_feature_matrix
from lokitalk.render.loading import load_trained
from lokitalk.train.pose_refine import FramePoseCorrections, fit_pose_calibration


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
    weights = fit_pose_calibration(avatar.rotation[frames], avatar.translation[frames], targets, args.ridge)
    features = pose_feature_matrix(avatar.rotation[frames], avatar.translation[frames])
    explained = 1.0 - ((targets - features @ weights) ** 2).sum(0) / ((targets - targets.mean(0)) ** 2).sum(0).clip(1e-12)
    own = None
    if trained.model.config.pose_calibration:  # the model's own fit: set aside, so both arms take one path
        own = trained.model.pose_calibration.detach().cpu().numpy().copy()
        trained.model.pose_calibration.zero_()

    test = avatar.split.test
    camera = avatar.camera.scaled(trained.image_scale)
    real, _ = reference_frames(avatar, test, camera)
    row = {"model": args.model_dir, "test_frames": int(len(test)),
           "explained_variance": [round(float(v), 3) for v in explained],
           "same_as_models_own_fit": None if own is None else bool(np.allclose(own, weights, atol=1e-6)),
           "training_corrections": {"rotation_deg_rms": float(np.degrees(np.sqrt((targets[:, :3] ** 2).sum(1).mean()))),
                                    "translation_mm_rms": float(np.sqrt((targets[:, 3:] ** 2).sum(1).mean())
                                                                * TRANSLATION_UNIT_M * 1000)}}
    for name in ("tracked", "calibrated"):
        if name == "calibrated":
            rotation, translation = avatar.rotation.copy(), avatar.translation.copy()
            for index in test:
                pose = calibrate({"rotation": torch.from_numpy(rotation[index]), "translation": torch.from_numpy(translation[index])},
                                 torch.from_numpy(weights))
                rotation[index], translation[index] = pose["rotation"].numpy(), pose["translation"].numpy()
            predicted = pose_feature_matrix(avatar.rotation[test], avatar.translation[test]) @ weights
            avatar = replace(avatar, rotation=rotation, translation=translation)
            row["test_correction_deg_rms"] = float(np.degrees(np.sqrt((predicted[:, :3] ** 2).sum(1).mean())))
        rendered, _ = render_test(trained, avatar, test)
        scores = _lpips(rendered, real)
        row[f"psnr_{name}"] = round(float(np.mean([metrics.psnr(p, r) for p, r in zip(rendered, real)])), 3)
        row[f"lpips_{name}"] = None if scores is None else round(float(np.mean(scores)), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
