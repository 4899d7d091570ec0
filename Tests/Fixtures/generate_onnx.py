#!/usr/bin/env python3
"""Writes Tests/Fixtures/onnx/: a small CNN exported by torch.onnx.export (opset 17) that uses
most of what the importer maps (conv+BN+ReLU, depthwise conv + ReLU6 as Clip, squeeze-excitation
with SiLU and Hardsigmoid, Hardswish, broadcasting Mul/Add, Concat, ceil-mode max pool, average
pool, LeakyReLU, a BatchNorm that cannot fold, Flatten, Dropout, Linear), its input and ONNX
Runtime's output. Run in a venv with torch, onnx, onnxruntime:
    python Tests/Fixtures/generate_onnx.py
"""
import os
import numpy as np
import torch
import torch.nn as nn
import onnxruntime as ort

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx")


class SqueezeExcitation(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.fc2(nn.functional.silu(self.fc1(s))))


class TinyNet(nn.Module):
    def __init__(self, classes=7):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.se = SqueezeExcitation(8, 4)
        self.branch = nn.Sequential(nn.Conv2d(8, 6, 1), nn.Hardswish())
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm = nn.BatchNorm2d(14)
        self.act = nn.LeakyReLU(0.1)
        self.avg = nn.AvgPool2d(2)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(14 * 2 * 2, classes))

    def forward(self, x):
        h = self.se(self.dw(self.stem(x)))
        h = torch.cat([h, self.branch(h) + 0.5], 1)
        h = self.avg(self.act(self.norm(self.pool(h))))
        return self.classifier(torch.flatten(h, 1))


def main():
    os.makedirs(HERE, exist_ok=True)
    torch.manual_seed(0)
    model = TinyNet()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    path = os.path.join(HERE, "tinynet.onnx")
    torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    np.save(os.path.join(HERE, "tinynet_input.npy"), x.numpy())
    y = ort.InferenceSession(path).run(None, {"input": x.numpy()})[0]
    np.save(os.path.join(HERE, "tinynet_logits.npy"), y)
    with torch.no_grad():
        print("max |torch - ort| =", float(np.abs(model(x).numpy() - y).max()))


if __name__ == "__main__":
    main()
