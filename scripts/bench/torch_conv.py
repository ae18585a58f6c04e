#!/usr/bin/python3
"""Times PyTorch's convolutions (oneDNN, 2 threads) alone at ResNet-50's
shapes, batch 16 at 224: the forward, then the input and weight gradients
together, milliseconds per call (mean of 10 and 5 calls after warm-up).
The peer numbers of docs/results/bench/history.md's convolution comparison.

  scripts/bench/torch_conv.py
"""
import torch, time
torch.set_num_threads(2)
torch.manual_seed(0)
shapes = [("stem 7x7 s2", (16,3,224,224), (64,3,7,7), 2, 3),
          ("1x1 256->64 @56", (16,256,56,56), (64,256,1,1), 1, 0),
          ("1x1 64->256 @56", (16,64,56,56), (256,64,1,1), 1, 0),
          ("3x3 64 @56", (16,64,56,56), (64,64,3,3), 1, 1),
          ("3x3 128 @28", (16,128,28,28), (128,128,3,3), 1, 1),
          ("3x3 256 @14", (16,256,14,14), (256,256,3,3), 1, 1),
          ("3x3 512 @7", (16,512,7,7), (512,512,3,3), 1, 1),
          ("1x1 1024->256 @14", (16,1024,14,14), (256,1024,1,1), 1, 0)]
for name, xs, ws, s, p in shapes:
    x = torch.randn(xs, requires_grad=True); w = torch.randn(ws, requires_grad=True)
    def fwd(): return torch.nn.functional.conv2d(x, w, stride=s, padding=p)
    for _ in range(3): y = fwd()
    t=time.perf_counter(); 
    for _ in range(10): y = fwd()
    tf=(time.perf_counter()-t)/10*1000
    g = torch.randn_like(y)
    for _ in range(2): torch.autograd.grad(y, (x, w), g, retain_graph=True)
    t=time.perf_counter()
    for _ in range(5): torch.autograd.grad(y, (x, w), g, retain_graph=True)
    tb=(time.perf_counter()-t)/5*1000
    print(f"{name:22s} fwd {tf:6.2f} ms  bwd(input+weight) {tb:6.2f} ms")
