"""PyTorch side of kiln-bench's MobileNetV2 workloads: Keras' MobileNetV2 (the zoo's
`mobilenet-v2`, ZeroPadding2D + 'valid' stride-2 convs, ReLU6, 1280-channel last conv) built in
plain torch, timed like ../shared/bench/torch_anchor.py (2 threads, median of 5 steps).
Usage: python Benchmarks/pytorch_mobilenet.py [batch] [size] [width] [infer|full|frozen|all]"""
import resource
import sys
import time

import torch
import torch.nn as nn

B = int(sys.argv[1]) if len(sys.argv) > 1 else 32
S = int(sys.argv[2]) if len(sys.argv) > 2 else 224
ALPHA = float(sys.argv[3]) if len(sys.argv) > 3 else 0.35
MODE = sys.argv[4] if len(sys.argv) > 4 else "all"
torch.set_num_threads(2)
torch.manual_seed(0)


def divisible(v, d=8):
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


def conv_bn(cin, cout, k=1, stride=1, groups=1, relu=True):
    layers = [nn.ZeroPad2d((0, 1, 0, 1))] if stride == 2 else []
    layers += [nn.Conv2d(cin, cout, k, stride, padding=(k // 2 if stride == 1 else 0), groups=groups, bias=False),
               nn.BatchNorm2d(cout, eps=1e-3)]
    return layers + ([nn.ReLU6(inplace=True)] if relu else [])


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        layers = conv_bn(cin, hidden) if expansion != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden) + conv_bn(hidden, cout, relu=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2(alpha, classes=21):
    blocks = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
              (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6),
              (320, 1, 6)]
    channels = divisible(32 * alpha)
    layers = conv_bn(3, channels, 3, 2)
    for filters, stride, expansion in blocks:
        out = divisible(int(filters * alpha))
        layers.append(InvertedResidual(channels, out, stride, expansion))
        channels = out
    last = divisible(1280 * alpha) if alpha > 1 else 1280
    layers += conv_bn(channels, last) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, classes)]
    return nn.Sequential(*layers)


def bench(name, model, train, reps=5):
    x = torch.randn(B, 3, S, S)
    y = torch.randint(0, 21, (B,))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def step():
        if train:
            model.train()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                model(x)

    step(); step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    med = sorted(times)[reps // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:34s} B={B} S={S}  median {med * 1000:8.1f} ms/step  {B / med:7.1f} img/s  maxrss {rss:.0f} MiB", flush=True)


def frozen(model):
    for p in model.parameters():
        p.requires_grad = False
    for p in model[-1].parameters():
        p.requires_grad = True
    return model


if MODE in ("all", "infer"): bench(f"mobilenet_v2 {ALPHA} inference", mobilenet_v2(ALPHA), False)
if MODE in ("all", "full"): bench(f"mobilenet_v2 {ALPHA} train: fine-tune", mobilenet_v2(ALPHA), True)
if MODE in ("all", "frozen"): bench(f"mobilenet_v2 {ALPHA} train: frozen", frozen(mobilenet_v2(ALPHA)), True)
