#!/usr/bin/env python3
"""torchvision models exported by torch.onnx.export (opset 17, random weights) run through
`graphc run --model m.onnx` and compared with ONNX Runtime on the same input.

Needs a venv with torch, torchvision, onnx, onnxruntime. Usage:
    python scripts/onnx_torchvision_check.py --graphc .build/release/graphc [--models mobilenet_v2 ...]
Prints one line per model (max relative error = max|kiln - ort| / max|ort|) and exits 1 if any
model is over --tolerance (1e-4).
"""
import argparse, os, subprocess, sys, tempfile
import numpy as np
import torch, torchvision
import onnxruntime as ort

MODELS = ["mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x0_5", "efficientnet_b0", "mnasnet0_5", "resnet18"]


def export(name, folder, size):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    path = os.path.join(folder, f"{name}.onnx")
    x = torch.randn(2, 3, size, size)
    torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False, input_names=["input"], output_names=["logits"])
    return path, x.numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--graphc", required=True)
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--keep", help="folder to keep the exported models and inputs in")
    args = p.parse_args()
    folder = args.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    worst = 0.0
    for name in args.models:
        path, x = export(name, folder, args.size)
        xin = os.path.join(folder, f"{name}_input.npy")
        out = os.path.join(folder, f"{name}_kiln.npy")
        np.save(xin, x)
        expected = ort.InferenceSession(path).run(None, {"input": x})[0]
        run = subprocess.run([args.graphc, "run", "--model", path, "--input", xin, "--output", out], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{name:20s} FAILED to run: {run.stderr.strip()}")
            worst = float("inf")
            continue
        actual = np.load(out)
        error = float(np.abs(actual - expected).max() / np.abs(expected).max())
        worst = max(worst, error)
        print(f"{name:20s} max relative error {error:.2e}  ({'ok' if error <= args.tolerance else 'OVER'})")
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()
