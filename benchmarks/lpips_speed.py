"""Speed of LPIPS as a training loss: forward + backward on a batch of 64x64 patches.

    python benchmarks/lpips_speed.py [--batch 16] [--size 64] [--repeats 20] [--threads N]

For alex and vgg, on the CPU and (when present) on CUDA in float32 and under fp16 autocast:
milliseconds per call of `lpips(pred, target).mean().backward()` with `pred` requiring grad and
`target` not (as in training), the median over `--repeats` calls after warm-up, and the
forward-only time under torch.no_grad (evaluation).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from lokitalk.evaluate.lpips import LPIPS


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, device: str, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(
    net: str, device: str, batch: int, size: int, repeats: int, amp: bool
) -> tuple[float, float]:
    model = LPIPS(net).to(device)
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    pred0 = (target + 0.1 * torch.randn(target.shape, generator=g).to(device)).clamp(-1, 1)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.float16)) if amp else contextlib.nullcontext

    def train_step() -> None:
        pred = pred0.clone().requires_grad_(True)
        with ctx():
            loss = model(pred, target).mean()
        loss.backward()

    def eval_step() -> None:
        with torch.no_grad(), ctx():
            model(pred0, target)

    return time_ms(train_step, device, repeats), time_ms(eval_step, device, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads; B={args.batch}, {args.size}x{args.size} patches")
    configs = [("cpu", False)]
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name()}")
        configs += [("cuda", False), ("cuda", True)]
    print(f"{'net':5} {'device':12} {'fwd+bwd ms':>11} {'fwd ms':>9}")
    for net in ("alex", "vgg"):
        for device, amp in configs:
            train, evaluate = bench(net, device, args.batch, args.size, args.repeats, amp)
            label = device + (" fp16" if amp else " fp32")
            print(f"{net:5} {label:12} {train:11.2f} {evaluate:9.2f}")


if __name__ == "__main__":
    main()
