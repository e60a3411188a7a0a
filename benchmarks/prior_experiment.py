"""ID-aware knowledge transfer, measured: pretrain on many identities, then learn held-out ones.

    python benchmarks/prior_experiment.py --pretrain A1 A2 ... --held-out H1 H2 ... \\
        [--preset tiny|fast] [--pretrain-steps N] [--steps N] [--evals 6] [--seconds 5,10,all] \\
        [--budget-s 450] [--eval-frames 6] [--device auto] [--out runs/prior_experiment]
    python benchmarks/prior_experiment.py --frame-metrics OUT --avatars runs/prepare_all   # LPIPS/LMD, CPU
    python benchmarks/prior_experiment.py --plot OUT [OUT2 ...]                           # PNGs + table

1. `lokitalk pretrain` on the --pretrain avatars (time-limited to --pretrain-fraction of the
   budget; the prior is written at the step reached), unless --prior gives one.
2. For every held-out avatar (never seen in pretraining), every training budget (the first 5 s,
   10 s or all of its train split: `train_seconds`; the test frames are always the avatar's own
   held-out last 10 %) and every arm: prior + region deformation (`train --prior`), no prior +
   region, no prior + global, the same number of steps; after every steps/evals steps the run
   is paused at a checkpoint and `--eval-frames` evenly spaced test frames (the same for every
   arm) are rendered: PSNR now, the frames saved (OUT/frames_<avatar>.npz) for LPIPS and LMD.
   Runs go budget by budget (5 s first), so a wall-clock budget that runs out keeps the most
   telling comparisons; each finished run is appended to OUT/results.json at once.
3. `--frame-metrics` adds LPIPS (AlexNet) and LMD (mouth landmarks, the prepare landmarker: needs
   mediapipe) from the saved frames, on a CPU, against the original (unpacked) avatars.
4. `--plot` draws test PSNR / LPIPS / LMD against steps and training wall time per held-out
   identity and budget (OUT/*.png) and prints the markdown table of the claims.

Training time is the time inside the training loops (pauses for evaluation, and re-loading at
each pause, excluded) plus the first call's setup (loading the avatar and the prior, the ID
encoder, compilation).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
# arm -> (deformation kind, starts from the prior, lip feature mapped to the prior's shared lip
# space, refines the training frames' poses, face depth supervision: None, "face" or "lower")
ARMS = {"prior_region": ("region", True, False, False, None), "scratch_region": ("region", False, False, False, None),
        "scratch_global": ("global", False, False, False, None),
        # isolates the prior's lip scaling (own PCA -> shared, unit-spread basis) from what it learned
        "scratch_region_shared_lips": ("region", False, True, False, None),
        # fine-tuning with per-frame pose corrections (lokitalk.train.pose_refine)
        "prior_region_refine": ("region", True, False, True, None),
        # ... and rays through the fitted face points pulled onto them (lokitalk.train.face_depth)
        "prior_region_refine_depth": ("region", True, False, True, "face"),
        # ... and through every frame's lips, chin and jaw (TrainConfig.face_depth_lower_face)
        "prior_region_refine_lower_depth": ("region", True, False, True, "lower"),
        # from scratch with what `fast` and `full` train with: with --torso-motion rigid, the preset's
        # default run (`lokitalk train --preset fast`), evaluated along the way like the other arms
        "scratch_region_refine_depth": ("region", False, False, True, "face")}
FACE_DEPTH_WEIGHT = 1e-3  # the *_depth arms' TrainConfig.face_depth_weight


def _seconds(value: str) -> float | None:
    return None if value == "all" else float(value)


def eval_frames(avatar, count: int) -> np.ndarray:
    test = np.asarray(avatar.split.test)
    return test if len(test) <= count else test[np.linspace(0, len(test) - 1, count).round().astype(int)]


def lpips_available() -> bool:
    try:
        from lokitalk.evaluate.lpips import find_weights_file

        find_weights_file("alex")
        return True
    except Exception:
        return False


def evaluate_checkpoint(model_dir: Path, avatar, frames: np.ndarray, device: str, compile: str
                        ) -> tuple[dict, np.ndarray]:
    """Render `frames` from the run's last checkpoint -> (metrics, uint8 frames)."""
    from lokitalk.data.avatar import resize_image
    from lokitalk.evaluate import metrics
    from lokitalk.evaluate.run import render_test
    from lokitalk.render.loading import load_trained

    shutil.copyfile(model_dir / "checkpoint.safetensors", model_dir / "model.safetensors")
    trained = load_trained(model_dir, device)
    if compile == "off":  # no compilation per evaluation point: eager rendering
        trained.model.point_runner = None
    rendered, fps = render_test(trained, avatar, frames)
    cam = avatar.camera.scaled(trained.image_scale)
    real = np.stack([resize_image(avatar.frame(int(i)), cam) for i in frames])
    per_frame = [metrics.psnr(r, t) for r, t in zip(rendered, real)]
    result = {"psnr": float(np.mean(per_frame)), "psnr_frames": [round(v, 3) for v in per_frame],
              "render_fps": round(fps, 2), "render_size": int(rendered.shape[2])}
    try:
        from lokitalk.evaluate.lpips import lpips_distance

        values = lpips_distance(rendered, real, device=device)
        result["lpips"], result["lpips_frames"] = float(np.mean(values)), [round(float(v), 4) for v in values]
    except Exception:  # weights not installed on this machine: computed later from the frames
        result["lpips"] = None
    return result, rendered


def shared_lip_copy(avatar_dir: Path, prior: Path, seconds: float | None, out: Path) -> Path:
    """A copy of the avatar (links, except signals.npz) whose lip feature is the one `train --prior`
    feeds its model: mapped from the avatar's own PCA basis into the prior's shared, unit-spread lip
    space with the same training frames. A model trained from scratch on it differs from
    `scratch_region` only in that scaling."""
    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.train.prior import lip_map, load_prior

    avatar = load_avatar(avatar_dir)
    matrix, bias = lip_map(avatar, training_frames(avatar, seconds), load_prior(prior).lip_space)
    copy = out / "shared_lips" / f"{avatar_dir.name}_{seconds or 'all'}"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for entry in Path(avatar_dir).iterdir():
        if entry.name != "signals.npz":
            (copy / entry.name).symlink_to(entry.resolve())
    signals = dict(np.load(Path(avatar_dir) / "signals.npz"))
    signals["lip_feature"] = (signals["lip_feature"].astype(np.float64) @ matrix + bias).astype(np.float32)
    np.savez(copy / "signals.npz", **signals)
    return copy


def with_fine_samples(config, fine_samples: int | None):
    """The proposal stage's fine samples set (0: the plain sampler), or the preset's where None."""
    if fine_samples is None:
        return config
    return replace(config, fine_samples=fine_samples, fine_with_coarse=config.fine_with_coarse and fine_samples > 0)


def run_arm(avatar_dir: Path, out: Path, arm: str, seconds: float | None, args, prior: Path | None,
            frames: np.ndarray, device: str, seed: int = 0) -> tuple[dict, dict[int, np.ndarray]]:
    from lokitalk.data.avatar import load_avatar, training_frames
    from lokitalk.evaluate.novelty import novel_view_mask
    from lokitalk.train.config import preset, with_steps, with_torso_motion
    from lokitalk.train.trainer import train

    kind, use_prior, shared_lips, refine_poses, face_depth = ARMS[arm]
    every = max(1, args.steps // args.evals)
    # every arm's torso stage moves as the prior's does (--torso-motion; a prior arm keeps its
    # prior's whatever this says), the global baseline's learns (it has no torso stage to make
    # rigid), and only the *_refine arms refine poses: the others then differ by the prior and
    # the deformation kind only
    torso = args.torso_motion if kind == "region" else "learned"
    config = replace(with_torso_motion(with_steps(preset(args.preset, kind), args.steps), torso),
                     pose_refinement=refine_poses, face_depth_weight=FACE_DEPTH_WEIGHT if face_depth else 0.0,
                     face_depth_lower_face=face_depth == "lower",
                     train_seconds=seconds, checkpoint_every=every, log_every=min(10, every),
                     compile=args.compile, seed=seed)
    config = with_fine_samples(config, args.fine_samples)
    if use_prior and args.finetune_schedule:
        config = replace(config, finetune_schedule=tuple(float(v) for v in args.finetune_schedule.split(",")))
    if config.lpips_weight > 0 and not lpips_available():
        config = replace(config, lpips_weight=0.0)  # no LPIPS weights on this machine: no LPIPS loss
    model_dir = out / "models" / f"{avatar_dir.name}_{seconds or 'all'}_{arm}_s{seed}"
    shutil.rmtree(model_dir, ignore_errors=True)
    avatar = load_avatar(avatar_dir)
    train_dir = shared_lip_copy(avatar_dir, prior, seconds, out) if shared_lips else avatar_dir
    curve, saved, train_s, call_s = [], {}, 0.0, 0.0
    done = 0
    while done < args.steps:
        start = time.perf_counter()
        summary = train(train_dir, model_dir, config, device=device, resume=done > 0, show_progress=False,
                        stop_after=every, prior=prior if use_prior else None)
        call = time.perf_counter() - start
        # setup counts once (the first call); later calls only add their loop time
        train_s += call if done == 0 else summary["elapsed_s"]
        call_s += call
        done = summary["steps"]
        metrics, rendered = evaluate_checkpoint(model_dir, avatar, frames, device, args.compile)
        curve.append({"step": done, "train_s": round(train_s, 2), **metrics})
        saved[done] = rendered
        label = f"{seconds} s" if seconds else "all"
        print(f"  {avatar_dir.name} {label} {arm} seed {seed}: step {done} {train_s:.1f}s psnr {metrics['psnr']:.2f}"
              + (f" lpips {metrics['lpips']:.3f}" if metrics["lpips"] is not None else ""), flush=True)
    trained_on = training_frames(avatar, seconds)
    novel, distance = novel_view_mask(avatar.rotation, frames, trained_on)
    return {"avatar": avatar_dir.name, "seconds": seconds or "all", "arm": arm, "seed": seed, "steps": done,
            "train_frames": int(len(trained_on)), "novel_view": novel.tolist(),
            "nearest_trained_rotation_deg": [round(float(d), 2) for d in distance],
            "train_s": round(train_s, 2), "calls_s": round(call_s, 2), "curve": curve,
            "lpips_loss": config.lpips_weight, "fine_samples": config.fine_samples,
            "fine_with_coarse": config.fine_with_coarse,
            # what the trained model has (a prior arm: its prior's)
            "torso_motion": json.loads((model_dir / "model.json").read_text())["model"]["deformation"]["torso_motion"],
            "eval_frames": [int(i) for i in frames]}, saved


def frames_key(seconds, arm: str, seed: int, step: int) -> str:
    """Key of a run's saved frames in frames_<avatar>.npz (seed 0 keeps the older, seedless key)."""
    return f"{seconds}_{arm}_{step}" if seed == 0 else f"{seconds}_{arm}_s{seed}_{step}"


def experiment(args) -> None:
    from lokitalk.data.avatar import load_avatar
    from lokitalk.train.config import preset, with_steps
    from lokitalk.train.pretrain import PretrainConfig, default_pretrain_steps, pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    begun = time.perf_counter()
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, device {device}"
                          + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""),
               "torch": torch.__version__, "preset": args.preset, "steps": args.steps, "runs": []}
    prior = args.prior
    if prior is None:
        names = [Path(a).name for a in args.pretrain]
        overlap = {n.split("_")[0] for n in names} & {Path(h).name.split("_")[0] for h in args.held_out}
        if overlap:
            raise SystemExit(f"error: held-out identities also in pretraining: {sorted(overlap)}")
        pretrain_steps = args.pretrain_steps or default_pretrain_steps(
            preset(args.preset).steps, len(args.pretrain), max(args.identities_per_step, 1))
        train_config = replace(with_steps(preset(args.preset), pretrain_steps), compile=args.compile)
        config = PretrainConfig(train=with_fine_samples(train_config, args.fine_samples),
                                identities_per_step=args.identities_per_step, lip_scaling=args.lip_scaling,
                                torso_motion=args.torso_motion)
        shutil.rmtree(out / "pretrain", ignore_errors=True)
        start = time.perf_counter()
        summary = pretrain(args.pretrain, out / "pretrain", config, device=device, show_progress=False,
                           time_limit_s=args.budget_s * args.pretrain_fraction if args.budget_s else None)
        summary["wall_s"] = round(time.perf_counter() - start, 1)
        results["pretrain"] = summary | {"avatars": names}
        print(f"pretrained on {len(names)} identities: {summary['steps']} steps in {summary['wall_s']} s", flush=True)
        prior = out / "pretrain" / "prior"
    results["prior"] = str(prior)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    frames_store: dict[str, dict[str, np.ndarray]] = {}
    last_run_s = 0.0
    for seconds in [_seconds(s) for s in args.seconds.split(",")]:
        for held in args.held_out:
            avatar = load_avatar(held)
            frames = eval_frames(avatar, args.eval_frames)
            store = frames_store.setdefault(held.name, {"indices": frames})
            for seed, arm in [(seed, arm) for seed in args.seeds for arm in args.arms.split(",")]:
                left = args.budget_s - (time.perf_counter() - begun) if args.budget_s else None
                if left is not None and left < 1.2 * last_run_s:
                    print(f"  skipped {held.name} {seconds or 'all'}s {arm} seed {seed}: {left:.0f} s of budget left",
                          flush=True)
                    results.setdefault("skipped", []).append([held.name, seconds or "all", arm, seed])
                    continue
                start = time.perf_counter()
                row, saved = run_arm(held, out, arm, seconds, args, prior, frames, device, seed)
                last_run_s = time.perf_counter() - start
                results["runs"].append(row)
                for step, rendered in saved.items():
                    store[frames_key(seconds or "all", arm, seed, step)] = rendered
                (out / "results.json").write_text(json.dumps(results, indent=2))
                np.savez_compressed(out / f"frames_{held.name}.npz", **store)
    results["total_s"] = round(time.perf_counter() - begun, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"done in {results['total_s']} s: {out / 'results.json'}")


def frame_metrics(out: Path, avatars: Path) -> None:
    """LPIPS and LMD of the saved frames against the original avatars (CPU, mediapipe)."""
    from lokitalk.data.avatar import load_avatar, resize_image
    from lokitalk.evaluate.lpips import lpips_distance
    from lokitalk.evaluate.run import _lip_and_eye_metrics

    results = json.loads((out / "results.json").read_text())
    for run in results["runs"]:
        saved = np.load(out / f"frames_{run['avatar']}.npz")
        avatar = load_avatar(avatars / run["avatar"])
        indices = saved["indices"]
        for point in run["curve"]:
            rendered = saved[frames_key(run["seconds"], run["arm"], run.get("seed", 0), point["step"])]
            scale = rendered.shape[2] / avatar.camera.width
            cam = avatar.camera.scaled(scale)
            real = np.stack([resize_image(avatar.frame(int(i)), cam) for i in indices])
            values = lpips_distance(rendered, real)
            point["lpips"], point["lpips_frames"] = float(np.mean(values)), [round(float(v), 4) for v in values]
            found = _lip_and_eye_metrics(rendered, avatar, indices, scale)
            point["lmd"] = found.get("lmd")
            # LMD's two parts: where the mouth sits and what shape it has (lokitalk.evaluate.metrics)
            point["mouth_offset_px"], point["lmd_mouth_shape"] = found.get("mouth_offset_px"), found.get("lmd_mouth_shape")
            if found.get("lmd_frames") is not None:  # NaN (no face found) -> None in JSON
                point["lmd_frames"] = [None if not np.isfinite(v) else round(float(v), 3) for v in found["lmd_frames"]]
        print(f"{run['avatar']} {run['seconds']} {run['arm']}: lpips {point['lpips']:.3f} lmd {point['lmd']}")
    (out / "results.json").write_text(json.dumps(results, indent=2))


COLOURS = {"prior_region": "tab:green", "scratch_region": "tab:blue", "scratch_global": "tab:orange",
           "scratch_region_shared_lips": "tab:purple", "prior_region_refine": "tab:olive",
           "prior_region_refine_depth": "tab:brown", "prior_region_refine_lower_depth": "tab:red",
           "scratch_region_refine_depth": "tab:cyan"}


def scratch_arm_of(prior_arm: str, arms: set[str]) -> str:
    """The from-scratch arm a prior arm is judged against: the one trained the same way
    (prior_region_refine_depth -> scratch_region_refine_depth) where it ran, else scratch_region."""
    same_way = "scratch" + prior_arm.removeprefix("prior")
    return same_way if same_way in arms else "scratch_region"


def merged_results(outs: list[Path]) -> dict:
    """The runs of several experiment folders as one (e.g. a prior's fine-tunes and a scratch run
    with its own step budget, made by separate invocations)."""
    results = json.loads((outs[0] / "results.json").read_text())
    for other in outs[1:]:
        results["runs"] += json.loads((other / "results.json").read_text())["runs"]
    return results


def plot(outs: list[Path]) -> None:
    """PNGs (into the first folder) and the tables, over the runs of every folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = outs[0]
    results = merged_results(outs)
    runs = results["runs"]
    groups = sorted({(r["avatar"], str(r["seconds"])) for r in runs})
    metrics = [m for m in ("psnr", "lpips", "lmd") if any(p.get(m) is not None for r in runs for p in r["curve"])]
    for avatar in sorted({g[0] for g in groups}):
        rows = [g for g in groups if g[0] == avatar]
        fig, axes = plt.subplots(len(rows), 2 * len(metrics), figsize=(4 * 2 * len(metrics), 3 * len(rows)),
                                 squeeze=False)
        for r, (_, seconds) in enumerate(rows):
            for m, metric in enumerate(metrics):
                for x, xlabel in enumerate(("step", "train_s")):
                    ax = axes[r, 2 * m + x]
                    labelled = set()
                    for run in runs:  # one line per seed, one colour per arm
                        if run["avatar"] != avatar or str(run["seconds"]) != seconds:
                            continue
                        pts = [(p[xlabel], p[metric]) for p in run["curve"] if p.get(metric) is not None]
                        if pts:
                            ax.plot(*zip(*pts), marker="o", ms=3, lw=1, color=COLOURS[run["arm"]],
                                    label=None if run["arm"] in labelled else run["arm"])
                            labelled.add(run["arm"])
                    ax.set_xlabel("training steps" if xlabel == "step" else "training wall time (s)")
                    ax.set_ylabel(f"test {metric.upper()}" + (" (dB)" if metric == "psnr" else ""))
                    ax.set_title(f"{avatar}, {seconds} s of video", fontsize=9)
                    ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"prior_{avatar}.png", dpi=80)
        plt.close(fig)
    print(claims_table(results, metrics))
    print()
    print(views_table(results, metrics))


def _mean_sd(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _grouped(results: dict) -> dict:
    grouped: dict[tuple, list] = {}
    for run in results["runs"]:
        grouped.setdefault((run["avatar"], str(run["seconds"]), run["arm"]), []).append(run)
    return grouped


def _video(run: dict, seconds: str) -> str:
    return f"{seconds} s" if seconds != "all" else f"all ({run['train_frames'] / 25:.0f} s)"


def claims_table(results: dict, metrics: list[str]) -> str:
    """One row per held-out avatar, budget and arm: final metrics (mean ± sd over seeds), and the
    claims, with each prior seed compared with the same seed's run of its scratch arm (scratch_arm_of)."""
    lines = ["| avatar | video | arm | seeds | steps | train s | " + " | ".join(f"final {m}" for m in metrics)
             + " | steps to scratch-final PSNR | s to 99 % of own final PSNR gain |", "|" + "---|" * (8 + len(metrics))]
    grouped = _grouped(results)
    arms = {arm for _, _, arm in grouped}
    for (avatar, seconds, arm), runs in sorted(grouped.items()):
        scratch = {r.get("seed", 0): r for r in grouped.get((avatar, seconds, scratch_arm_of(arm, arms)), [])}
        reach = []
        for run in runs:
            other = scratch.get(run.get("seed", 0))
            if ARMS[arm][1] and other is not None:  # a prior arm
                target = other["curve"][-1]["psnr"]
                hit = next((p["step"] for p in run["curve"] if p["psnr"] >= target), None)
                reach.append(f"{hit}" if hit is not None else "never")
        settle = []
        for run in runs:
            first, last = run["curve"][0]["psnr"], run["curve"][-1]["psnr"]
            settle.append(next((p["train_s"] for p in run["curve"] if p["psnr"] >= first + 0.99 * (last - first)),
                               None))
        vals = " | ".join(_mean_sd([r["curve"][-1].get(m) for r in runs], 3 if m == "lpips" else 2) for m in metrics)
        lines.append(f"| {avatar} | {_video(runs[0], seconds)} | {arm} | {len(runs)} | {runs[0]['steps']} | "
                     f"{np.mean([r['train_s'] for r in runs]):.0f} | {vals} | "
                     f"{(' / '.join(reach) + ' of ' + str(runs[0]['steps'])) if reach else '-'} | "
                     f"{_mean_sd(settle, 0)} |")
    return "\n".join(lines)


def _split_final(run: dict, metric: str) -> tuple[float | None, float | None]:
    """(mean over the seen-view frames, mean over the novel-view frames) of the final point."""
    per_frame = run["curve"][-1].get(f"{metric}_frames")
    novel = run.get("novel_view")
    if per_frame is None or novel is None:
        return None, None
    values = np.array([np.nan if v is None else v for v in per_frame], float)
    novel = np.asarray(novel, bool)
    out = []
    for mask in (~novel, novel):
        chosen = values[mask & np.isfinite(values)]
        out.append(float(chosen.mean()) if len(chosen) else None)
    return out[0], out[1]


def views_table(results: dict, metrics: list[str]) -> str:
    """Final metrics on the test frames whose head rotation the run trained on (seen views) and on
    those it never saw (novel views), mean ± sd over seeds."""
    lines = ["| avatar | video | arm | seen / novel frames | "
             + " | ".join(f"{m} seen | {m} novel" for m in metrics) + " |", "|" + "---|" * (4 + 2 * len(metrics))]
    for (avatar, seconds, arm), runs in sorted(_grouped(results).items()):
        novel = np.asarray(runs[0].get("novel_view", []), bool)
        cells = []
        for m in metrics:
            splits = [_split_final(r, m) for r in runs]
            digits = 3 if m == "lpips" else 2
            cells += [_mean_sd([s[0] for s in splits], digits), _mean_sd([s[1] for s in splits], digits)]
        lines.append(f"| {avatar} | {_video(runs[0], seconds)} | {arm} | {int((~novel).sum())} / {int(novel.sum())} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain", type=Path, nargs="*", default=[])
    parser.add_argument("--held-out", type=Path, nargs="*", default=[])
    parser.add_argument("--prior", type=Path, default=None, help="use this prior instead of pretraining")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--identities-per-step", type=int, default=1)
    parser.add_argument("--finetune-schedule", default=None, metavar="FRACTION,NETS,GRID",
                        help="the prior arm's fine-tune schedule (TrainConfig.finetune_schedule); default: by seconds")
    parser.add_argument("--lip-scaling", default="component", help="the prior's shared lip space: component "
                        "(each direction at unit spread) or overall (one factor; lokitalk.train.prior)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--evals", type=int, default=6, help="evaluation points per run")
    parser.add_argument("--seconds", default="5,10,all")
    parser.add_argument("--arms", default="prior_region,scratch_region,scratch_global",
                        help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0],
                        help="fine-tuning seeds, e.g. 0,1,2 (one prior for all)")
    parser.add_argument("--fine-samples", type=int, default=None, help="every arm's proposal-stage fine "
                        "samples (0: the plain sampler; default: the preset's)")
    parser.add_argument("--torso-motion", default="learned", choices=("learned", "rigid"),
                        help="the torso stage of the prior it pretrains and of the region arms from scratch")
    parser.add_argument("--eval-frames", type=int, default=6)
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock budget for everything")
    parser.add_argument("--pretrain-fraction", type=float, default=0.35)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", default="off", help="torch.compile of the field (auto/on/off); off by "
                        "default: every paused run would compile again")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "prior_experiment")
    parser.add_argument("--frame-metrics", type=Path, default=None, metavar="OUT")
    parser.add_argument("--avatars", type=Path, default=REPO / "runs" / "prepare_all")
    parser.add_argument("--plot", type=Path, nargs="+", default=None, metavar="OUT",
                        help="one experiment folder, or several whose runs are drawn together")
    args = parser.parse_args()
    if args.frame_metrics is not None:
        frame_metrics(args.frame_metrics, args.avatars)
    elif args.plot is not None:
        plot(args.plot)
    else:
        if not args.held_out or (args.prior is None and not args.pretrain):
            parser.error("--held-out and (--pretrain or --prior) are needed")
        experiment(args)


if __name__ == "__main__":
    main()
