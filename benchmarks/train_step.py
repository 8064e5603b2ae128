"""Seconds per training step, bf16 autocast against fp32, interleaved (A, B, A, B ...) after warm-ups.

    python3 benchmarks/train_step.py --width 22 --batch 4 --crop 384 --rounds 5

Prints the median and the spread (min-max) of each, the ratio and the load average. A study for
choosing the training recipe (docs/training.md), not part of the package.
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from unet_infer.machine import describe_machine
from unet_infer.model import UNet


def step(model, optimiser, x, y, amp):
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        logits = model(x).float()
    loss = F.binary_cross_entropy_with_logits(logits, y)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=22)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps of each, interleaved")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each first")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet(3, 1, bilinear=False, width=args.width, bias=True).train()
    optimiser = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.rand(args.batch, 3, args.crop, args.crop)
    y = (torch.rand(args.batch, 1, args.crop, args.crop) > 0.5).float()
    times = {"bf16": [], "fp32": []}
    for _ in range(args.warmup):
        step(model, optimiser, x, y, True), step(model, optimiser, x, y, False)
    for _ in range(args.rounds):
        for name in times:
            times[name].append(step(model, optimiser, x, y, name == "bf16"))
    print(f"{describe_machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; width {args.width}, "
          f"{args.batch} x {args.crop}x{args.crop}")
    for name, values in times.items():
        print(f"  {name}: median {statistics.median(values):.2f} s per step (min {min(values):.2f}, "
              f"max {max(values):.2f}, {len(values)} steps)")
    print(f"  fp32 / bf16: {statistics.median(times['fp32']) / statistics.median(times['bf16']):.2f}x; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
