"""Parity of `graphc run` / `graphc grad` with PyTorch on random 224² batches (Docs/Formats.md table).

    python Tests/Fixtures/grad_parity.py --graphc .build/release/graphc [--seeds 0 1 2]

For each seed: a randomly initialised 1000-class ResNet-18 saved with torch.save (torchvision's
when it imports, else the identical plain-torch model of generate.py), torch.randn inputs, labels
(s, 500 + s); then the max-norm relative error of graphc run's eval-mode logits, and the worst
over the 62 parameter gradients of PyTorch fp32, graphc --precision float32 and graphc (float64),
each against PyTorch fp64.
"""
import argparse, json, os, struct, subprocess, sys, tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def resnet18():
    try:
        import torchvision
        return torchvision.models.resnet18()
    except Exception:
        import generate
        return generate.ResNet18(1000)


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[key] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=np.float32).reshape(info["shape"]).astype(np.float64)
    return out


def worst(grads, reference):
    return max(np.abs(grads[k] - reference[k]).max() / np.abs(reference[k]).max() for k in reference)


def torch_gradients(state, x, y, dtype):
    model = resnet18()
    model.load_state_dict(state)
    model = model.to(dtype).train()
    loss = torch.nn.functional.cross_entropy(model(x.to(dtype)), y)
    loss.backward()
    return {k: p.grad.double().numpy() for k, p in model.named_parameters()}, loss.item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--graphc", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print("| seed | logits, graphc run | gradients: PyTorch fp32 | graphc --precision float32 | graphc (float64) | loss, float64 |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = resnet18()
            state = {k: v.clone() for k, v in model.state_dict().items()}
            torch.save(state, f"{tmp}/r18.pth")
            x = torch.randn(2, 3, 224, 224)
            y = torch.tensor([seed, 500 + seed])
            np.save(f"{tmp}/x.npy", x.numpy())
            np.save(f"{tmp}/y.npy", y.numpy())
            with torch.no_grad():
                logits = model.double().eval()(x.double()).numpy()
            subprocess.run([args.graphc, "run", "--model", "resnet18", "--weights", f"{tmp}/r18.pth", "--input", f"{tmp}/x.npy",
                            "--output", f"{tmp}/logits.npy"], check=True)
            row = [np.abs(np.load(f"{tmp}/logits.npy") - logits).max() / np.abs(logits).max()]
            reference, loss = torch_gradients(state, x, y, torch.float64)
            fp32, _ = torch_gradients(state, x, y, torch.float32)
            row.append(worst(fp32, reference))
            for precision in ("float32", "float64"):
                subprocess.run([args.graphc, "grad", "--model", "resnet18", "--weights", f"{tmp}/r18.pth", "--input", f"{tmp}/x.npy",
                                "--labels", f"{tmp}/y.npy", "--output", f"{tmp}/g.safetensors", "--precision", precision] + os.environ.get("GRAPHC_EXTRA", "").split(), check=True)
                ours = read_safetensors(f"{tmp}/g.safetensors")
                row.append(worst(ours, reference))
            loss_error = abs(ours["loss"].item() - loss) / loss
            print(f"| {seed} | " + " | ".join(f"{e:.1e}" for e in row) + f" | {loss_error:.1e} |", flush=True)


if __name__ == "__main__":
    main()
