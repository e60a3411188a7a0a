"""The maintained library first: invisible-watermark (imwatermark) per frame, against LokiTalk's own.

    pip install --no-deps invisible-watermark PyWavelets   # its opencv-python pin clashes with ours
    python benchmarks/watermark_compare.py [--clip ../shared/data/videos/id01_a.mp4] [--seconds 4]

The first `--seconds` of the clip (256 px or larger: imwatermark refuses images under 256x256)
are watermarked frame by frame with the same 64 bits, by imwatermark's `dwtDct` and `dwtDctSvd`
(its defaults: DWT-DCT on the chroma channels U and V) and by LokiTalk's `embed_frames`. Each
version is written as H.264 CRF 18 and attacked as in watermark_robustness.py. imwatermark has no
synchronisation and no size search, so for the half-size attack its frames are scaled back to the
original size before decoding (the most favourable reading), and its crops are decoded as they are.

Reported per method and attack: mean per-frame bit accuracy (each frame decoded on its own), the
bit accuracy of a vote over all frames (bits averaged over frames, then thresholded: the same
temporal accumulation LokiTalk's detector gets), and whether the vote is exactly right; PSNR and
ms per frame to embed and decode. LokiTalk's row uses its own detector (all frames together).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lokitalk.media.video import iter_frames, probe_video  # noqa: E402
from lokitalk.provenance import Payload, attacks, watermark  # noqa: E402

ATTACKS = ("as written", "crf23", "crf28", "half", "crop-c", "clip2s", "crop-c+crf28")


def attacked(name: str, frames: list[np.ndarray], fps: float) -> list[np.ndarray]:
    enc = lambda fr, crf: attacks.reencode_h264(fr, crf, fps=fps)  # noqa: E731
    return {
        "as written": lambda: frames,
        "crf23": lambda: enc(frames, 23),
        "crf28": lambda: enc(frames, 28),
        "half": lambda: enc(attacks.downscale_half(frames), 18),
        "crop-c": lambda: enc(attacks.crop_fraction(frames, 0.1), 18),
        "clip2s": lambda: enc(attacks.middle_clip(frames, 2.0, fps), 18),
        "crop-c+crf28": lambda: enc(attacks.crop_fraction(frames, 0.1), 28),
    }[name]()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / max(float(np.mean((a.astype(np.float64) - b) ** 2)), 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clip", type=Path, default=REPO.parent / "shared" / "data" / "videos" / "id01_a.mp4"
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    try:
        from imwatermark import WatermarkDecoder, WatermarkEncoder
    except ImportError:
        sys.exit("needs invisible-watermark: pip install --no-deps invisible-watermark PyWavelets")

    info = probe_video(args.clip)
    clean = [f for _, f in zip(range(int(args.seconds * info.fps)), iter_frames(args.clip, fps=info.fps))]
    h, w = clean[0].shape[:2]
    payload = Payload.create("compare-model", "compare-consent", 4242)
    truth = payload.to_bits().astype(bool)
    print(f"clip {args.clip.name}: {len(clean)} frames {w}x{h} at {info.fps:g} fps; payload 64 bits")
    print(f"{'method':10s} {'attack':14s} {'frame acc':>9s} {'vote acc':>9s} {'exact':>6s}")

    for method in ("dwtDct", "dwtDctSvd"):
        encoder = WatermarkEncoder()
        encoder.set_watermark("bits", [int(b) for b in truth])
        decoder = WatermarkDecoder("bits", 64)
        t = time.perf_counter()
        # imwatermark works on BGR images
        marked = [encoder.encode(f[:, :, ::-1].copy(), method)[:, :, ::-1].copy() for f in clean]
        embed_ms = (time.perf_counter() - t) / len(clean) * 1000
        quality = float(np.mean([psnr(m, c) for m, c in zip(marked, clean)]))
        written = attacks.reencode_h264(marked, 18, fps=info.fps)
        decode_ms = 0.0
        for name in ATTACKS:
            frames = attacked(name, written, info.fps)
            t = time.perf_counter()
            bits, refused = [], 0
            for f in frames:
                if f.shape[:2] != (h, w) and name.startswith("half"):
                    f = cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC)
                try:
                    bits.append(np.asarray(decoder.decode(f[:, :, ::-1].copy(), method), dtype=bool))
                except RuntimeError:  # "image too small": counted as all-zero bits
                    bits.append(np.zeros(64, dtype=bool))
                    refused += 1
            if name == "as written":
                decode_ms = (time.perf_counter() - t) / len(frames) * 1000
            bits = np.array(bits)
            frame_acc = float(np.mean(bits == truth[None, :]))
            vote = bits.mean(axis=0) > 0.5
            vote_acc = float(np.mean(vote == truth))
            note = f"  refused {refused}/{len(frames)} frames (under 256x256)" if refused else ""
            print(
                f"{method:10s} {name:14s} {frame_acc:9.3f} {vote_acc:9.3f} {str(bool(vote_acc == 1.0)):>6s}{note}"
            )
        print(
            f"{method:10s} PSNR {quality:.2f} dB, embed {embed_ms:.1f} ms/frame, decode {decode_ms:.1f} ms/frame"
        )

    t = time.perf_counter()
    marked = list(watermark.embed_frames(clean, payload))
    embed_ms = (time.perf_counter() - t) / len(clean) * 1000
    quality = float(np.mean([psnr(m, c) for m, c in zip(marked, clean)]))
    written = attacks.reencode_h264(marked, 18, fps=info.fps)
    for name in ATTACKS:
        frames = attacked(name, written, info.fps)
        t = time.perf_counter()
        d = watermark.detect_frames(frames)
        ms = (time.perf_counter() - t) / len(frames) * 1000
        acc = float(np.mean(d.decoded_bits == payload.to_bits()))
        print(
            f"{'lokitalk':10s} {name:14s} {'-':>9s} {acc:9.3f} {str(d.payload == payload):>6s}  score {d.score:.1f}, {ms:.1f} ms/frame"
        )
    print(f"{'lokitalk':10s} PSNR {quality:.2f} dB, embed {embed_ms:.1f} ms/frame")


if __name__ == "__main__":
    main()
