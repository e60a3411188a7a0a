"""Fine-tune table from prior_experiment results files (usage: table.py LABEL=results.json ...): one
row per run, PSNR at each evaluation point, final LPIPS / LMD (after --frame-metrics), PSNR on the
seen and novel views, training seconds."""
import json
import sys


def mean(values):
    return f"{sum(values) / len(values):.2f}" if values else "-"


def fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


rows = []
for arg in sys.argv[1:]:
    label, path = arg.split("=", 1)
    for run in json.load(open(path))["runs"]:
        curve, last = run["curve"], run["curve"][-1]
        seen = [p for p, n in zip(last["psnr_frames"], run["novel_view"]) if not n]
        novel = [p for p, n in zip(last["psnr_frames"], run["novel_view"]) if n]
        rows.append((run["avatar"][:4], run["seed"], label, " / ".join(f"{p['psnr']:.2f}" for p in curve),
                     fmt(last.get("lpips")), fmt(last.get("lmd"), 2),
                     f"{fmt(last.get('mouth_offset_px'), 2)} / {fmt(last.get('lmd_mouth_shape'), 2)}",
                     f"{mean(seen)} / {mean(novel)}", f"{run['train_s']:.0f}"))
rows.sort()
print("| held out | seed | prior (torso stage) | PSNR @300 / 600 / 900 / 1200 | LPIPS | LMD | mouth offset / shape "
      "| PSNR seen / novel views | train s |")
print("|---|---|---|---|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(str(v) for v in row) + " |")
