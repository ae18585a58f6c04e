#!/usr/bin/python3
"""PyTorch (float64) reference for the distillation loss of "Bag of Tricks":

  soft = T^2 * CE(softmax(r/T), softmax(z/T)),   hard = CE(q, softmax(z)),
  loss = w * hard + (1 - w) * soft                (GluonCV's --hard-weight w)

averaged over the batch, for student logits z, teacher logits r and (soft,
possibly mixed) targets q. Reads a JSON list of cases {z, r, q (files), n, k,
t, w, out}; writes <out>.bin = [loss, hard, soft, dloss/dz..., dsoft/dz...].
"""
import json
import sys

import numpy as np
import torch


def main(spec):
    for c in json.load(open(spec)):
        n, k, t, w = c["n"], c["k"], c["t"], c["w"]
        rd = lambda f: torch.from_numpy(np.fromfile(f, dtype="<f4").reshape(n, k).astype(np.float64))
        z, r, q = rd(c["z"]).requires_grad_(True), rd(c["r"]), rd(c["q"])
        p = torch.softmax(r / t, dim=1)
        soft = t * t * -(p * torch.log_softmax(z / t, dim=1)).sum(dim=1).mean()
        hard = -(q * torch.log_softmax(z, dim=1)).sum(dim=1).mean()
        loss = w * hard + (1 - w) * soft
        (gl,) = torch.autograd.grad(loss, z, retain_graph=True)
        (gs,) = torch.autograd.grad(soft, z)
        out = np.concatenate([[loss.item(), hard.item(), soft.item()], gl.reshape(-1).numpy(), gs.reshape(-1).numpy()])
        out.astype("<f4").tofile(c["out"] + ".bin")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
