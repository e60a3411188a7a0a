"""One-off probe (session 16): render a pose-refined model's test frames (20, evenly spaced) with its
pose calibration as fitted, with the calibration's pose features clamped to the training frames'
range (no extrapolation), and with none.  python calibration_clamp_probe.py MODEL_DIR..."""
import sys, json, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import lokitalk.model.pose_calibration as pc
from lokitalk.data.avatar import load_avatar, training_frames
from lokitalk.evaluate import metrics
from lokitalk.evaluate.run import _lpips, reference_frames, render_test, _lip_and_eye_metrics
from lokitalk.render.loading import load_trained
original = pc.calibrate
for model_dir in sys.argv[1:]:
    tm = load_trained(model_dir); av = load_avatar(tm.avatar_dir)
    fr = training_frames(av, tm.meta["train"].get("train_seconds"))
    feats = pc.pose_feature_matrix(av.rotation[fr], av.translation[fr])
    lo, hi = torch.from_numpy(feats.min(0)), torch.from_numpy(feats.max(0))
    def clamped(cond, weights):
        rotation = cond["rotation"].double(); translation = cond["translation"].double()
        f = pc.pose_features(rotation, translation)
        f = torch.maximum(torch.minimum(f, hi), lo)
        row = f @ weights.double()
        r, t = pc.corrected_pose(rotation, translation, row)
        return {**cond, "rotation": r.float(), "translation": t.float()}
    test = av.split.test
    test = test[np.linspace(0, len(test) - 1, min(20, len(test))).round().astype(int)]
    real, _ = reference_frames(av, test, av.camera.scaled(tm.image_scale))
    own = tm.model.pose_calibration.clone()
    for arm in ("calibrated", "clamped", "none"):
        pc.calibrate = clamped if arm == "clamped" else original
        with torch.no_grad():
            tm.model.pose_calibration.copy_(own if arm != "none" else torch.zeros_like(own))
        r, _ = render_test(tm, av, test)
        lm = _lip_and_eye_metrics(r, av, test, tm.image_scale)
        print(json.dumps({"model": model_dir, "arm": arm, "psnr": round(float(np.mean([metrics.psnr(a, b) for a, b in zip(r, real)])), 3),
              "lpips": round(float(np.mean(_lpips(r, real))), 4), "lmd": round(lm["lmd"], 3), "mouth_offset": round(lm["mouth_offset_px"], 3),
              "lmd_shape": round(lm["lmd_mouth_shape"], 3)}), flush=True)
    pc.calibrate = original
