"""Time to C2PA-sign and to verify a LokiTalk-like output (issue 6).

    python benchmarks/c2pa_speed.py [--seconds 10] [--size 256] [--repeats 5]

Writes a watermarked, manifest-tagged H.264 clip with 16 kHz audio (textured synthetic frames),
makes a test chain (`make_test_chain`), then times, as medians over `--repeats`: `load_signer`
(reading/checking the PEMs plus the trial signature), `sign_output` (sign in place), `read_c2pa`
(validate signature and BMFF hash binding) and the whole `lokitalk verify` (watermark detection on
100 frames + MP4 manifest + C2PA), in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lokitalk.media.video_writer import write_video
from lokitalk.provenance.c2pa_sign import load_signer, make_test_chain, read_c2pa, sign_output
from lokitalk.provenance.stamp import manifest, manifest_tags, stamp_frames

META = {"model_id": "bench-model", "preset": "tiny", "consent": {"consent_id": "bench-consent"}}


def frames(count: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.uniform(40, 220, (24, 24, 3)).astype(np.float32), (size + 32, size + 32),
                       interpolation=cv2.INTER_CUBIC)
    for k in range(count):
        dx, dy = int(16 + 8 * np.sin(k / 9)), int(16 + 8 * np.cos(k / 13))
        yield np.clip(scene[dy:dy + size, dx:dx + size], 0, 255).astype(np.uint8)


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import c2pa

    count = int(round(args.seconds * 25))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chain = make_test_chain(tmp / "certs")
        plain = write_video(tmp / "plain.mp4", stamp_frames(frames(count, args.size), META, 1), 25.0,
                            audio=np.random.default_rng(1).normal(0, 0.05, int(args.seconds * 16000)).astype(np.float32),
                            metadata=manifest_tags(manifest(META, 1, "render")))
        signer = load_signer(chain["chain"], chain["key"])
        t_load = median_s(lambda: load_signer(chain["chain"], chain["key"]), args.repeats)
        work = tmp / "out.mp4"

        def sign() -> None:
            shutil.copyfile(plain, work)
            start = time.perf_counter()
            sign_output(work, META, 1, signer)
            sign.elapsed.append(time.perf_counter() - start)

        sign.elapsed = []
        for _ in range(args.repeats):
            sign()
        t_sign = statistics.median(sign.elapsed)
        found = read_c2pa(work)
        assert found["valid"], found
        t_read = median_s(lambda: read_c2pa(work), args.repeats)

        from lokitalk.cli import verify

        def run_verify() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                verify(video=work, max_frames=100, trust_anchors=None)

        t_verify = median_s(run_verify, args.repeats)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
              f"c2pa-python {c2pa.__version__} ({c2pa.sdk_version()})")
        print(f"clip: {args.seconds:g} s, {count} frames {args.size}x{args.size} H.264 + AAC, "
              f"{plain.stat().st_size / 1e6:.2f} MB -> signed {work.stat().st_size / 1e6:.2f} MB")
        print(f"load_signer (PEM checks + trial signature): {t_load * 1000:.0f} ms")
        print(f"sign_output (sign in place):                {t_sign * 1000:.0f} ms")
        print(f"read_c2pa (signature + hash binding):       {t_read * 1000:.0f} ms")
        print(f"lokitalk verify (watermark+manifest+C2PA):  {t_verify * 1000:.0f} ms")


if __name__ == "__main__":
    main()
