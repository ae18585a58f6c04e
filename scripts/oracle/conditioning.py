#!/usr/bin/python3
"""How well-conditioned is a few-step training run? For each seed, trains the
same ResNet from the same Xavier init and batches four ways in PyTorch:
float64 (the reference), float32, float64 with the inputs perturbed by one
part in 1e7, and float32 with that perturbation; label smoothing 0.1, SGD
with Nesterov momentum 0.9 and weight decay 1e-4 on conv/FC weights. Prints,
after each step, the worst relative difference (infinity norms, over every
parameter, buffer and running statistic) of each run from the reference.

When PyTorch's own float32 run, or a 1e-7 nudge of the input, moves the state
by more than a tolerance, no float32 implementation can be held to it there:
ReLU decisions of activations within rounding of zero flip, and BatchNorm's
backward spreads each flip over the whole channel.

  conditioning.py DEPTH VARIANT BATCH SIZE ZERO_GAMMA(0/1) LR [STEPS] [SEEDS]
  conditioning.py 50 d 4 224 1 0.1 1 3
"""
import copy
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from resnet_torch import ResNet  # noqa: E402


def run(net, xs, ys, dt, lr):
    m = copy.deepcopy(net).to(dt).train()
    dec = [p for p in m.parameters() if p.dim() > 1]
    nod = [p for p in m.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": dec, "weight_decay": 1e-4}, {"params": nod, "weight_decay": 0}],
                          lr=lr, momentum=0.9, nesterov=True)
    states = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        F.cross_entropy(m(x.to(dt)), y, label_smoothing=0.1).backward()
        opt.step()
        st = {k: v.detach().double().clone() for k, v in m.state_dict().items() if "num_batches" not in k}
        for k, p in m.named_parameters():
            st["momentum_buffer/" + k] = opt.state[p]["momentum_buffer"].double().clone()
        states.append(st)
    return states


def worst(a, b):
    return max(((a[k] - b[k]).abs().max().item() / b[k].abs().max().item(), k)
               for k in b if b[k].abs().max().item() > 0)


def main():
    depth, var, n, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    zg, lr = sys.argv[5] == "1", float(sys.argv[6])
    steps = int(sys.argv[7]) if len(sys.argv) > 7 else 3
    seeds = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    torch.set_num_threads(2)
    for seed in range(1, seeds + 1):
        torch.manual_seed(seed)
        net = ResNet(depth, var, 10)
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.xavier_uniform_(m.weight)
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.zeros_(m.bias)
        if zg:
            for mod in net.modules():
                last = getattr(mod, "bn3", None) or (getattr(mod, "bn2", None) if not hasattr(mod, "conv3") else None)
                if last is not None and hasattr(mod, "conv1"):
                    torch.nn.init.zeros_(last.weight)
        xs = [torch.randn(n, 3, size, size) for _ in range(steps)]
        ys = [torch.randint(0, 10, (n,)) for _ in range(steps)]
        xps = [x * (1 + 1e-7 * torch.randn_like(x)) for x in xs]
        ref = run(net, xs, ys, torch.float64, lr)
        f32 = run(net, xs, ys, torch.float32, lr)
        p64 = run(net, xps, ys, torch.float64, lr)
        p32 = run(net, xps, ys, torch.float32, lr)
        for s in range(steps):
            print(f"seed {seed} step {s + 1}: float32 {worst(f32[s], ref[s])[0]:.3g}, "
                  f"float64 nudged {worst(p64[s], ref[s])[0]:.3g}, float32 nudged {worst(p32[s], ref[s])[0]:.3g}")


if __name__ == "__main__":
    main()
