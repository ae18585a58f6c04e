#!/usr/bin/python3
"""A PyTorch reference trainer for ortrain's recipe (scripts/parity.sh, and
the end-to-end speed benchmark): torchvision ImageFolder and DataLoader,
torchvision transforms, the same ResNet as ortrain's (scripts/oracle/
resnet_torch.py), trained as `ortrain train` trains it:

- init: Xavier uniform conv and FC weights, zero biases, BatchNorm 1 and 0,
  with --zero-gamma the last BatchNorm gamma of every residual block at 0;
- SGD(momentum, nesterov=True), weight decay on conv and FC weights only
  with --no-bias-decay, the learning rate set every batch: linear warmup
  (batch i of the first m at i*lr/m), then cosine to 0 at the last batch
  or step decay, lr = --lr-base * batch / 256;
- cross-entropy with PyTorch's label smoothing (ortrain's "uniform" rule);
- training: RandomResizedCrop (8-100% of the area, ratio 3/4-4/3),
  horizontal flip, colour jitter, AlexNet PCA lighting (std 0.1), the
  seed's normalization; a random order every epoch, the last partial batch
  dropped;
- validation: resize the shorter side to round(size/0.875), centre crop,
  normalize; top-1, top-5 and loss after every epoch.

--jitter chooses the colour jitter: "yiq" is ortrain's (the paper's, as
MXNet's HueJitterAug does hue: brightness, saturation and hue as one 3x3
colour matrix on float pixels, hue a rotation in YIQ space by up to
0.4*pi, no clipping); "hsv" is torchvision's ColorJitter(brightness=0.4,
saturation=0.4, hue=0.2): the three in a random order, each on 8-bit
pixels with clipping, hue a shift in HSV space.

Writes RUN/metrics.jsonl with ortrain's keys (so `ortrain compare` reads
it) and RUN/config.json.

  torch_trainer.py --data DIR --out RUN [--arch resnet18] [--image-size 64]
      [--epochs 8] [--batch-size 64] [--lr-base 0.1] [--warmup-epochs 1]
      [--lr-mode cosine] [--label-smoothing 0.1] [--zero-gamma]
      [--no-bias-decay] [--jitter yiq|hsv] [--seed 1] [--workers 1]
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_torch import build  # noqa: E402

MEAN = torch.tensor([123.68, 116.779, 103.939]).view(3, 1, 1)
STD = torch.tensor([58.393, 57.12, 57.375]).view(3, 1, 1)
EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]], dtype=torch.float64)


def to255(img):
    """PIL image -> float CHW tensor on the 0-255 scale."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1).copy())


class PaperJitter:
    """ortrain's jitter on a float CHW tensor: hue (YIQ rotation) after
    saturation after brightness, one matrix, no clipping."""

    def __init__(self, jitter=0.4):
        self.j = jitter

    def __call__(self, x):
        b = 1 + self.j * (2 * random.random() - 1)
        s = 1 + self.j * (2 * random.random() - 1)
        h = self.j * (2 * random.random() - 1)
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
        sat = luma.repeat(3, 1) * (1 - s) + torch.eye(3, dtype=torch.float64) * s
        u, w = math.cos(h * math.pi), math.sin(h * math.pi)
        rot = torch.tensor([[1, 0, 0], [0, u, -w], [0, w, u]], dtype=torch.float64)
        hue = torch.linalg.inv(TO_YIQ) @ rot @ TO_YIQ
        m = (hue @ sat * b).float()
        return torch.einsum("ij,jhw->ihw", m, x)


class Lighting:
    """AlexNet PCA noise: add V (alpha * lambda) * 255, alpha ~ N(0, std)."""

    def __init__(self, std=0.1):
        self.std = std

    def __call__(self, x):
        alpha = torch.randn(3) * self.std
        return x + (EIGVEC @ (alpha * EIGVAL) * 255).view(3, 1, 1)


def transforms(a):
    norm = T.Lambda(lambda x: (x - MEAN) / STD)
    crop = [T.RandomResizedCrop(a.image_size, scale=(0.08, 1), ratio=(3 / 4, 4 / 3)), T.RandomHorizontalFlip()]
    if a.jitter == "hsv":
        train = crop + [T.ColorJitter(brightness=0.4, saturation=0.4, hue=0.2), T.Lambda(to255)]
    else:
        train = crop + [T.Lambda(to255), PaperJitter(0.4)]
    train += [Lighting(0.1), norm]
    val = [T.Resize(round(a.image_size / 0.875)), T.CenterCrop(a.image_size), T.Lambda(to255), norm]
    return T.Compose(train), T.Compose(val)


def init(net, zero_gamma):
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
    if zero_gamma:
        for m in net.modules():
            last = getattr(m, "bn3", None) if hasattr(m, "conv3") else getattr(m, "bn2", None)
            if last is not None and hasattr(m, "conv1"):
                torch.nn.init.zeros_(last.weight)


def lr_at(t, a, per_epoch, total):
    base = a.lr_base * a.batch_size / 256
    warm = int(round(a.warmup_epochs * per_epoch))
    if t < warm:
        return base * (t + 1) / warm
    if a.lr_mode == "cosine":
        n = total - warm
        return base if n <= 1 else base * (1 + math.cos(math.pi * (t - warm) / (n - 1))) / 2
    lr = base
    for e in (0.25, 0.5, 0.75):
        if t >= int(e * a.epochs) * per_epoch:
            lr *= 0.1
    return lr


def evaluate(net, loader):
    net.eval()
    n = top1 = top5 = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in loader:
            z = net(x)
            loss += F.cross_entropy(z, y, reduction="sum").item()
            k = z.topk(min(5, z.shape[1]), dim=1).indices
            top1 += (k[:, 0] == y).sum().item()
            top5 += (k == y[:, None]).any(dim=1).sum().item()
            n += len(y)
    net.train()
    return top1 / n, top5 / n, loss / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr-base", type=float, default=0.1)
    ap.add_argument("--warmup-epochs", type=float, default=1)
    ap.add_argument("--lr-mode", default="cosine", choices=["cosine", "step"])
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--zero-gamma", action="store_true")
    ap.add_argument("--no-bias-decay", action="store_true")
    ap.add_argument("--jitter", default="yiq", choices=["yiq", "hsv"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(dict(vars(a), trainer="pytorch " + torch.__version__, model=a.arch), f, indent=2)
    train_tf, val_tf = transforms(a)
    train_ds = torchvision.datasets.ImageFolder(os.path.join(a.data, "train"), train_tf)
    val_ds = torchvision.datasets.ImageFolder(os.path.join(a.data, "val"), val_tf)

    def seed_worker(worker_id):
        s = torch.initial_seed() % 2**32
        random.seed(s)
        np.random.seed(s)

    g = torch.Generator()
    g.manual_seed(a.seed)
    train = torch.utils.data.DataLoader(train_ds, batch_size=a.batch_size, shuffle=True, drop_last=True,
                                        num_workers=a.workers, worker_init_fn=seed_worker, generator=g,
                                        persistent_workers=a.workers > 0)
    val = torch.utils.data.DataLoader(val_ds, batch_size=64, num_workers=a.workers)
    net = build(a.arch, len(train_ds.classes))
    init(net, a.zero_gamma)
    net.train()
    decay = [p for p in net.parameters() if p.dim() > 1 or not a.no_bias_decay]
    rest = [p for p in net.parameters() if not (p.dim() > 1 or not a.no_bias_decay)]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": rest, "weight_decay": 0.0}],
                          lr=0.0, momentum=a.momentum, nesterov=True)
    per_epoch = len(train)
    total = per_epoch * a.epochs
    t = 0
    log = open(os.path.join(a.out, "metrics.jsonl"), "w")
    for epoch in range(1, a.epochs + 1):
        start = time.time()
        loss_sum = correct = seen = 0
        for x, y in train:
            lr = lr_at(t, a, per_epoch, total)
            for group in opt.param_groups:
                group["lr"] = lr
            z = net(x)
            loss = F.cross_entropy(z, y, label_smoothing=a.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            correct += (z.argmax(dim=1) == y).sum().item()
            seen += len(y)
            t += 1
        train_sec = time.time() - start
        top1, top5, vloss = evaluate(net, val)
        rec = {"epoch": epoch, "step": t, "lr": lr, "train_loss": loss_sum / seen, "train_top1": correct / seen,
               "val_top1": top1, "val_top5": top5, "val_loss": vloss, "train_img_per_s": seen / train_sec,
               "epoch_seconds": time.time() - start}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(f"epoch {epoch}: train loss {rec['train_loss']:.4f}, val top-1 {100 * top1:.2f}%, top-5 {100 * top5:.2f}%, "
              f"{rec['epoch_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
