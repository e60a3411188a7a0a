"""ID-aware knowledge transfer, measured: pretrain on many identities, then learn held-out ones.

    python benchmarks/prior_experiment.py --pretrain A1 A2 ... --held-out H1 H2 ... \\
        [--preset tiny|fast] [--pretrain-steps N] [--steps N] [--evals 6] [--seconds 5,10,all] \\
        [--budget-s 450] [--eval-frames 6] [--device auto] [--out runs/prior_experiment]
    python benchmarks/prior_experiment.py --frame-metrics OUT --avatars runs/prepare_all   # LPIPS/LMD, CPU
    python benchmarks/prior_experiment.py --plot OUT                                      # PNGs + table

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
ARMS = {"prior_region": ("region", True), "scratch_region": ("region", False), "scratch_global": ("global", False)}


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
    result = {"psnr": float(np.mean([metrics.psnr(r, t) for r, t in zip(rendered, real)])),
              "render_fps": round(fps, 2), "render_size": int(rendered.shape[2])}
    try:
        from lokitalk.evaluate.lpips import lpips_distance

        result["lpips"] = float(np.mean(lpips_distance(rendered, real, device=device)))
    except Exception:  # weights not installed on this machine: computed later from the frames
        result["lpips"] = None
    return result, rendered


def run_arm(avatar_dir: Path, out: Path, arm: str, seconds: float | None, args, prior: Path | None,
            frames: np.ndarray, device: str) -> tuple[dict, dict[int, np.ndarray]]:
    from lokitalk.data.avatar import load_avatar
    from lokitalk.train.config import preset, with_steps
    from lokitalk.train.trainer import train

    kind, use_prior = ARMS[arm]
    every = max(1, args.steps // args.evals)
    config = replace(with_steps(preset(args.preset, kind), args.steps), train_seconds=seconds,
                     checkpoint_every=every, log_every=min(10, every), compile=args.compile)
    if config.lpips_weight > 0 and not lpips_available():
        config = replace(config, lpips_weight=0.0)  # no LPIPS weights on this machine: no LPIPS loss
    model_dir = out / "models" / f"{avatar_dir.name}_{seconds or 'all'}_{arm}"
    shutil.rmtree(model_dir, ignore_errors=True)
    avatar = load_avatar(avatar_dir)
    curve, saved, train_s, call_s = [], {}, 0.0, 0.0
    done = 0
    while done < args.steps:
        start = time.perf_counter()
        summary = train(avatar_dir, model_dir, config, device=device, resume=done > 0, show_progress=False,
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
        print(f"  {avatar_dir.name} {label} {arm}: step {done} {train_s:.1f}s psnr {metrics['psnr']:.2f}"
              + (f" lpips {metrics['lpips']:.3f}" if metrics["lpips"] is not None else ""), flush=True)
    return {"avatar": avatar_dir.name, "seconds": seconds or "all", "arm": arm, "steps": done,
            "train_frames": int(len(np.asarray(avatar.split.train)[: None if seconds is None else
                                                                 int(round(seconds * avatar.fps))])),
            "train_s": round(train_s, 2), "calls_s": round(call_s, 2), "curve": curve,
            "lpips_loss": config.lpips_weight,
            "eval_frames": [int(i) for i in frames]}, saved


def experiment(args) -> None:
    from lokitalk.data.avatar import load_avatar
    from lokitalk.train.config import preset, with_steps
    from lokitalk.train.pretrain import PretrainConfig, pretrain

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
        config = PretrainConfig(train=replace(with_steps(preset(args.preset), args.pretrain_steps),
                                              compile=args.compile),
                                identities_per_step=args.identities_per_step)
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
            for arm in args.arms.split(","):
                left = args.budget_s - (time.perf_counter() - begun) if args.budget_s else None
                if left is not None and left < 1.2 * last_run_s:
                    print(f"  skipped {held.name} {seconds or 'all'}s {arm}: {left:.0f} s of budget left", flush=True)
                    results.setdefault("skipped", []).append([held.name, seconds or "all", arm])
                    continue
                start = time.perf_counter()
                row, saved = run_arm(held, out, arm, seconds, args, prior, frames, device)
                last_run_s = time.perf_counter() - start
                results["runs"].append(row)
                for step, rendered in saved.items():
                    store[f"{seconds or 'all'}_{arm}_{step}"] = rendered
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
            rendered = saved[f"{run['seconds']}_{run['arm']}_{point['step']}"]
            scale = rendered.shape[2] / avatar.camera.width
            cam = avatar.camera.scaled(scale)
            real = np.stack([resize_image(avatar.frame(int(i)), cam) for i in indices])
            point["lpips"] = float(np.mean(lpips_distance(rendered, real)))
            found = _lip_and_eye_metrics(rendered, avatar, indices, scale)
            point["lmd"] = found.get("lmd")
        print(f"{run['avatar']} {run['seconds']} {run['arm']}: lpips {point['lpips']:.3f} lmd {point['lmd']}")
    (out / "results.json").write_text(json.dumps(results, indent=2))


def plot(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    groups = sorted({(r["avatar"], str(r["seconds"])) for r in runs})
    metrics = [m for m in ("psnr", "lpips", "lmd") if any(p.get(m) is not None for r in runs for p in r["curve"])]
    colours = {"prior_region": "tab:green", "scratch_region": "tab:blue", "scratch_global": "tab:orange"}
    for avatar in sorted({g[0] for g in groups}):
        rows = [g for g in groups if g[0] == avatar]
        fig, axes = plt.subplots(len(rows), 2 * len(metrics), figsize=(4 * 2 * len(metrics), 3 * len(rows)),
                                 squeeze=False)
        for r, (_, seconds) in enumerate(rows):
            for m, metric in enumerate(metrics):
                for x, xlabel in enumerate(("step", "train_s")):
                    ax = axes[r, 2 * m + x]
                    for run in runs:
                        if run["avatar"] != avatar or str(run["seconds"]) != seconds:
                            continue
                        pts = [(p[xlabel], p[metric]) for p in run["curve"] if p.get(metric) is not None]
                        if pts:
                            ax.plot(*zip(*pts), marker="o", ms=3, label=run["arm"], color=colours[run["arm"]])
                    ax.set_xlabel("training steps" if xlabel == "step" else "training wall time (s)")
                    ax.set_ylabel(f"test {metric.upper()}" + (" (dB)" if metric == "psnr" else ""))
                    ax.set_title(f"{avatar}, {seconds} s of video", fontsize=9)
                    ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"prior_{avatar}.png", dpi=80)
        plt.close(fig)
    print(claims_table(results, metrics))


def claims_table(results: dict, metrics: list[str]) -> str:
    """One row per held-out avatar and budget: final metrics of each arm, and the claims."""
    lines = ["| avatar | video | arm | steps | train s | " + " | ".join(f"final {m}" for m in metrics)
             + " | steps to scratch-final PSNR | s to 99 % of own final PSNR gain |", "|" + "---|" * (7 + len(metrics))]
    by_key = {(r["avatar"], str(r["seconds"]), r["arm"]): r for r in results["runs"]}
    for (avatar, seconds, arm), run in sorted(by_key.items()):
        final = run["curve"][-1]
        scratch = by_key.get((avatar, seconds, "scratch_region"))
        reach = "-"
        if scratch is not None and arm == "prior_region":
            target = scratch["curve"][-1]["psnr"]
            hit = next((p["step"] for p in run["curve"] if p["psnr"] >= target), None)
            reach = f"{hit} of {scratch['steps']}" if hit is not None else "not reached"
        first, last = run["curve"][0]["psnr"], final["psnr"]
        settle = next((p["train_s"] for p in run["curve"] if p["psnr"] >= first + 0.99 * (last - first)), None)
        vals = " | ".join("-" if final.get(m) is None else f"{final[m]:.3f}" if m == "lpips" else f"{final[m]:.2f}"
                          for m in metrics)
        video = f"{seconds} s" if seconds != "all" else f"all ({run['train_frames'] / 25:.0f} s)"
        lines.append(f"| {avatar} | {video} | {arm} | {run['steps']} | {run['train_s']:.0f} | {vals} | {reach} | "
                     f"{settle if settle is not None else '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain", type=Path, nargs="*", default=[])
    parser.add_argument("--held-out", type=Path, nargs="*", default=[])
    parser.add_argument("--prior", type=Path, default=None, help="use this prior instead of pretraining")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--identities-per-step", type=int, default=1)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--evals", type=int, default=6, help="evaluation points per run")
    parser.add_argument("--seconds", default="5,10,all")
    parser.add_argument("--arms", default=",".join(ARMS))
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
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT")
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
