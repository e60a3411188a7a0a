"""The demo's report: OUT/report/index.html and a few PNGs, one self-contained folder.

- contact_sheet.png, signals.png: what `prepare` found (copied from the avatar)
- training_curve.png: loss and training PSNR against step
- spoken_frames.png: frames of the spoken video at the most open and most closed moments of the
  new sentence, with the mouth enlarged, above the synthetic subject itself saying the same
  words (the truth)
- mouth_track.png: the spoken video's mouth opening against the true track, words marked
- worst_frames.png: evaluate's worst held-out frames (real above rendered)
- spoken.mp4: the output video (watermarked), played in the page
"""

from __future__ import annotations

import csv
import html
import json
import shutil
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curve(log_csv: Path, path: Path) -> Path | None:
    if not log_csv.exists():
        return None
    rows = list(csv.DictReader(log_csv.open()))
    if not rows:
        return None
    plt = _plt()
    step = np.array([float(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    psnr = np.array([float(r["psnr"]) for r in rows])
    fig, ax = plt.subplots(1, 2, figsize=(9, 3), dpi=90)
    ax[0].semilogy(step, loss, lw=1)
    ax[0].set(xlabel="step", ylabel="loss", title="training loss")
    ax[1].plot(step, psnr, lw=1, color="tab:green")
    ax[1].set(xlabel="step", ylabel="dB", title="PSNR on the training rays")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _pick_frames(truth: np.ndarray, count: int = 8, spacing: int = 6) -> list[int]:
    """Frames at the most open and the most closed moments of speech, spaced apart, in time order."""
    n = len(truth)
    speaking = np.nonzero(truth > 0.05 * max(float(truth.max()), 1e-6))[0]
    lo, hi = (int(speaking[0]), int(speaking[-1])) if len(speaking) else (0, n - 1)
    chosen: list[int] = []

    def take(order: np.ndarray, k: int) -> None:
        for i in order:
            if len(chosen) >= k:
                return
            if lo <= i <= hi and all(abs(int(i) - c) >= spacing for c in chosen):
                chosen.append(int(i))

    take(np.argsort(-truth), count // 2)
    take(np.argsort(truth), count)
    return sorted(chosen)


def _mouth_box(avatar_dir: Path, width: int) -> tuple[int, int, int]:
    """Centre (x, y) and half-size of a square around the mouth, in frames `width` px wide."""
    from ..face_model import load_face_template

    template = load_face_template()
    landmarks = np.load(avatar_dir / "landmarks.npy", mmap_mode="r")
    summary = json.loads((avatar_dir / "summary.json").read_text())
    scale = width / float(summary["width"])
    mouth = np.asarray(landmarks[:, template.lips_outer, :2], np.float64).reshape(-1, 2) * scale
    eyes = np.asarray(landmarks[:, [33, 263], :2], np.float64) * scale
    centre = np.nanmedian(mouth, axis=0)
    half = 0.55 * float(np.nanmedian(np.linalg.norm(eyes[:, 0] - eyes[:, 1], axis=1)))
    return int(round(centre[0])), int(round(centre[1])), max(8, int(round(half)))


def _crop(frame: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    import cv2

    x, y, h = box
    padded = np.pad(frame, ((h, h), (h, h), (0, 0)), mode="edge")
    crop = padded[y : y + 2 * h, x : x + 2 * h]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)


def spoken_frames(out: Path, path: Path) -> Path | None:
    """Spoken frames (full and mouth enlarged) above the truth (the subject saying the same)."""
    from ..media.video import read_frames

    video = out / "spoken.mp4"
    if not video.exists():
        return None
    truth = np.load(out / "subject" / "sentence_truth.npz")
    mouth_truth = truth["mouth_opening"]
    words, word_times = list(truth["words"]), truth["word_times"]
    spoken = read_frames(video)
    reference = read_frames(out / "subject" / "reference.mp4")
    n = min(len(spoken), len(reference), len(mouth_truth))
    picks = _pick_frames(mouth_truth[:n])
    if not picks:
        return None
    size = spoken.shape[1]
    box_s = _mouth_box(out / "avatar", size)
    box_r = _mouth_box(out / "avatar", reference.shape[2])
    plt = _plt()
    cols = len(picks)
    fig, ax = plt.subplots(3, cols, figsize=(1.6 * cols, 5.4), dpi=100, squeeze=False)
    for c, i in enumerate(picks):
        t = i / 25.0
        said = [w for w, wt in zip(words, word_times) if wt <= t]
        ax[0, c].imshow(spoken[i])
        ax[0, c].set_title(f"{t:.2f} s  \u201c{said[-1] if said else ''}\u201d\ntrue opening {mouth_truth[i]:.2f}",
                           fontsize=7)
        ax[1, c].imshow(_crop(spoken[i], box_s, 128))
        ax[2, c].imshow(_crop(reference[i], box_r, 128))
    ax[0, 0].set_ylabel("spoken.mp4", fontsize=8)
    ax[1, 0].set_ylabel("its mouth", fontsize=8)
    ax[2, 0].set_ylabel("truth: the subject\nsaying it", fontsize=8)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def mouth_track(out: Path, path: Path) -> Path | None:
    tracks = out / "steps" / "mouth_tracks.npz"
    if not tracks.exists():
        return None
    data = np.load(tracks)
    truth_file = np.load(out / "subject" / "sentence_truth.npz")
    plt = _plt()

    def z(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        ok = np.isfinite(x)
        return (x - np.nanmean(x)) / (np.nanstd(x) + 1e-9) if ok.any() else x

    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=90)
    t = np.arange(len(data["truth"])) / 25.0
    ax.plot(t, z(data["truth"]), color="black", lw=1.5, label="true mouth track")
    ax.plot(np.arange(len(data["reference"])) / 25.0, z(data["reference"]), color="tab:gray", lw=1, ls="--",
            label="subject saying it (face mesh)")
    ax.plot(np.arange(len(data["spoken"])) / 25.0, z(data["spoken"]), color="tab:red", lw=1.2,
            label="spoken.mp4 (face mesh)")
    for w, wt in zip(truth_file["words"], truth_file["word_times"]):
        ax.axvline(wt, color="tab:blue", alpha=0.15, lw=0.8)
        ax.text(wt, 3.2, str(w), fontsize=7, rotation=45, va="bottom")
    ax.set(xlabel="s", ylabel="mouth opening (z-score)", ylim=(-2.5, 3.2))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _copy_small(src: Path, dst: Path, max_width: int = 1200) -> None:
    """Copy an image, halved until it is at most `max_width` px wide (keeps the report small)."""
    import cv2

    image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    if image is None:
        shutil.copyfile(src, dst)
        return
    while image.shape[1] > max_width:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(dst), image)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "–"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, str, str]], header: tuple[str, str, str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out: Path, metrics: dict) -> Path:
    report = out / "report"
    if report.exists():
        shutil.rmtree(report)
    report.mkdir(parents=True)
    steps = metrics["steps"]
    images = {}
    for name in ("contact_sheet.png", "signals.png"):
        if (out / "avatar" / name).exists():
            _copy_small(out / "avatar" / name, report / name)
            images[name] = name
    if (out / "model" / "eval" / "worst_frames.png").exists():
        shutil.copyfile(out / "model" / "eval" / "worst_frames.png", report / "worst_frames.png")
        images["worst_frames.png"] = "worst_frames.png"
    for name, make in (("training_curve.png", lambda p: training_curve(out / "model" / "train_log.csv", p)),
                       ("spoken_frames.png", lambda p: spoken_frames(out, p)),
                       ("mouth_track.png", lambda p: mouth_track(out, p))):
        if make(report / name) is not None:
            images[name] = name
    if (out / "spoken.mp4").exists():
        shutil.copyfile(out / "spoken.mp4", report / "spoken.mp4")

    ev = steps.get("evaluate", {})
    base = ev.get("baselines", {})
    check = steps.get("check", {})
    prep = check.get("prepare_vs_truth", {})
    sync = check.get("lip_sync", {})
    ver = steps.get("verify", {})
    subject = steps.get("subject", {})
    train = steps.get("train", {})
    spoken = steps.get("speak", {})

    eval_rows = [
        ("PSNR (dB)", _fmt(ev.get("psnr"), 2), f"mean image {_fmt(base.get('mean_image_psnr'), 2)}, nearest "
                                               f"training frame (oracle) {_fmt(base.get('nearest_training_frame_psnr'), 2)}"),
        ("SSIM", _fmt(ev.get("ssim")), f"mean image {_fmt(base.get('mean_image_ssim'))}, nearest training frame "
                                       f"{_fmt(base.get('nearest_training_frame_ssim'))}"),
        ("LPIPS (AlexNet)", _fmt(ev.get("lpips")), f"lower is better; mean image {_fmt(base.get('mean_image_lpips'))}, "
                                                   f"nearest training frame {_fmt(base.get('nearest_training_frame_lpips'))}"),
        ("LMD (px)", _fmt(ev.get("lmd"), 2), f"mouth landmarks, rendered vs real: the mouth off by "
                                             f"{_fmt(ev.get('mouth_offset_px'), 2)} px, its shape by {_fmt(ev.get('lmd_mouth_shape'), 2)} px; "
                                             f"nearest training frame {_fmt(base.get('nearest_training_frame_lmd'), 2)}"),
        ("face depth error (cm)", _fmt(ev.get("face_depth_error_cm"), 2), "the rendered face surface vs the fitted face points"),
        ("lower face depth error (cm)", _fmt(ev.get("lower_face_depth_error_cm"), 2),
         "the rendered surface vs each frame's lip, chin and jaw landmarks"),
        ("mouth PSNR (dB)", _fmt(ev.get("psnr_mouth"), 2), ""), ("eye PSNR (dB)", _fmt(ev.get("psnr_eyes"), 2), ""),
        ("render speed (frames/s)", _fmt(ev.get("render_fps"), 2), f"{ev.get('render_size')} px, {metrics['device']}"),
    ]
    blinks = prep.get("blinks", {})
    pose = prep.get("pose_error_deg", {})
    truth_rows = [
        ("head pose error (deg)", _fmt(pose.get("mean"), 2),
         f"mean |yaw, pitch, roll| error; roll {_fmt(pose.get('roll_mean'), 2)}, p95 {_fmt(pose.get('p95'), 2)}"),
        ("blink precision / recall", f"{_fmt(blinks.get('precision'), 2)} / {_fmt(blinks.get('recall'), 2)}",
         f"{blinks.get('detected_blinks')} found, {blinks.get('true_blinks')} true, ±{blinks.get('tolerance_frames')} frame"),
        ("mouth opening r", _fmt(prep.get("mouth_correlation")), "prepare's mouth opening vs the true one"),
    ]
    s_vs_t = sync.get("spoken_vs_truth", {})
    r_vs_t = sync.get("reference_vs_truth", {})
    chance = sync.get("chance_spoken_vs_shifted_truth", {})
    sync_rows = [
        ("spoken.mp4 vs the true mouth track (r)", _fmt(s_vs_t.get("r")),
         f"best {_fmt(s_vs_t.get('best_r'))} at lag {s_vs_t.get('best_lag_frames')} frames"),
        ("the subject itself saying it (r)", _fmt(r_vs_t.get("r")), "what a perfect model would score"),
        ("chance (truth shifted half a clip)", _fmt(chance.get("r")), ""),
        ("lokitalk speak", f"{spoken.get('frames', '–')} frames",
         f"lips: {_fmt(spoken.get('lips'))}, lip gain {_fmt(spoken.get('lip_gain'), 2)}, "
         f"blinks {_fmt(spoken.get('blinks'))}, "
         f"{_fmt(spoken.get('render_fps'), 2)} frames/s on {_fmt(spoken.get('device'))}"),
    ]
    time_rows = [(name, _fmt(v.get("elapsed_s"), 1) + " s", "") for name, v in steps.items()]
    time_rows.append(("total", _fmt(metrics.get("total_s"), 1) + " s", f"device {metrics['device']}"))
    verify_text = html.escape(ver.get("summary", "not run"))
    manifest = ver.get("manifest_statement")

    def img(name: str, alt: str) -> str:
        return f'<p><img src="{images[name]}" alt="{alt}"></p>' if name in images else ""

    sentence = html.escape((out / "subject" / "sentence.txt").read_text().strip()) \
        if (out / "subject" / "sentence.txt").exists() else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>LokiTalk demo</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}} img{{max-width:100%}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}
th{{background:#f3f3f3}} code{{background:#f3f3f3;padding:1px 3px}}</style></head><body>
<h1>LokiTalk demo</h1>
<p>A synthetic talking subject (the public-domain NASA astronaut portrait, animated; speech by
{html.escape(str(subject.get('tts', '?')))}), {subject.get('duration_s', '?')} s of video at {subject.get('size', '?')} px,
was prepared, a region NeRF was trained on it ({train.get('steps', '?')} steps, preset
<code>{html.escape(str(train.get('preset', '?')))}</code>, {html.escape(str(train.get('device', '?')))}{', from the prior ' + html.escape(str(train['prior'])) if train.get('prior') else ''}),
and the trained model was made to say a sentence it never heard:</p>
<blockquote>{sentence}</blockquote>
<video src="spoken.mp4" controls width="384"></video>
<h2>The spoken sentence</h2>
{img('spoken_frames.png', 'frames of the spoken video')}
{img('mouth_track.png', 'mouth opening over time')}
{_table(sync_rows, ('lip sync', 'value', 'note'))}
<h2>Held-out frames (lokitalk evaluate)</h2>
<p>The last 10 % of the training video, never trained on, re-enacted from their own signals.</p>
{_table(eval_rows, ('metric', 'model', 'beside'))}
{img('worst_frames.png', 'worst held-out frames')}
<h2>Training</h2>
{img('training_curve.png', 'training curve')}
<h2>prepare against the ground truth</h2>
<p>The synthetic subject's head roll, blinks and mouth opening are known exactly.</p>
{_table(truth_rows, ('measure', 'value', 'note'))}
{img('contact_sheet.png', 'contact sheet')}
{img('signals.png', 'signals')}
<h2>Provenance (lokitalk verify spoken.mp4)</h2>
<p><code>{verify_text}</code><br>payload: <code>{html.escape(str(ver.get('payload')))}</code><br>
manifest: {html.escape(str(manifest))} (matches the watermark: {ver.get('manifest_matches_watermark')})</p>
<h2>Time</h2>
{_table(time_rows, ('step', 'time', ''))}
<p>All numbers: <code>metrics.json</code> beside this folder.</p>
</body></html>
"""
    (report / "index.html").write_text(page)
    return report / "index.html"
