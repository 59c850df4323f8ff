"""Train a small temporal-stream (flow) network for a few iterations on a flowprep store.

    python examples/train_flow_stream.py demo_out                  # TSN-style 2D stacks
    python examples/train_flow_stream.py demo_out --layout clip    # I3D-style 3D clips

--layout stack: TwoStreamDataset(layout="stack"), flow (B, K, 2L, S, S) in pixels with the
stored mean flow subtracted; a 2D CNN whose first convolution takes the 2L channels, scores
averaged over the K segments (TSN's consensus).
--layout clip: TwoStreamDataset(layout="clip", flow_scale="unit"), flow (B, 1, 2, L, S, S)
in [-1, 1] (I3D's d / 20); a 3D CNN over (C=2, T=L, H, W).

The networks are deliberately tiny (this shows the data path, not a model); the loss is
printed every iteration. Needs torch (pip install 'flowprep[torch]').
"""
from __future__ import annotations

import argparse
import sys
import time


def build_model(layout: str, length: int, num_classes: int):
    import torch.nn as nn
    if layout == "stack":
        return nn.Sequential(
            nn.Conv2d(2 * length, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
    return nn.Sequential(
        nn.Conv3d(2, 16, (3, 3, 3), stride=(1, 2, 2), padding=1), nn.BatchNorm3d(16), nn.ReLU(),
        nn.Conv3d(16, 32, (3, 3, 3), stride=2, padding=1), nn.BatchNorm3d(32), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, num_classes))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store", help="a flowprep store (e.g. demo_out from `make demo`)")
    ap.add_argument("--layout", choices=("stack", "clip"), default="stack")
    ap.add_argument("--length", type=int, default=None,
                    help="L: flows per stack / clip (default 10 for stacks, 16 for clips)")
    ap.add_argument("--segments", type=int, default=3, help="K, TSN segments (stacks)")
    ap.add_argument("--crop", type=int, default=112, help="crop side S in pixels")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from flowprep.loader import TwoStreamDataset

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    if a.layout == "stack":
        length = a.length or 10
        ds = TwoStreamDataset(a.store, modality="flow", layout="stack", length=length,
                              num_segments=a.segments, mode="train", crop_size=a.crop,
                              mean_subtract=True, seed=a.seed)
    else:
        length = a.length or 16
        ds = TwoStreamDataset(a.store, modality="flow", layout="clip", length=length,
                              num_segments=1, mode="train", crop_size=a.crop, crop="random",
                              flow_scale="unit", seed=a.seed)
    num_classes = max(2, max(ds.label(i) for i in range(len(ds))) + 1)
    model = build_model(a.layout, length, num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    loader = DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        drop_last=False)
    print(f"{ds!r}: {len(ds)} videos, {num_classes} classes; model {a.layout}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    it, epoch, t0 = 0, 0, time.perf_counter()
    while it < a.iters:
        ds.set_epoch(epoch)  # new snippets, crops and flips each epoch
        for batch in loader:
            x = batch["flow"]                     # stack: (B, K, 2L, S, S); clip: (B, 1, 2, L, S, S)
            y = batch["label"].long()
            B, K = x.shape[:2]
            logits = model(x.flatten(0, 1)).view(B, K, -1).mean(1)   # consensus over K
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            print(f"iter {it} epoch {epoch} input {tuple(x.shape)} loss {loss.item():.4f}",
                  flush=True)
            it += 1
            if it >= a.iters:
                break
        epoch += 1
    print(f"{it} iterations in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
