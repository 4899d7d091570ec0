#!/usr/bin/env python3
"""Writes Kiln's PyTorch parity fixtures (run in a venv with torch; CI never runs this).

Weights are not stored: both this script and the Swift tests derive every state_dict entry from
its key with the same integer hash (`fixture_tensor`), which is exact in float32 on both sides.
Only inputs and PyTorch's outputs (computed in float64) are written, as .npy files under
`<model>/`. The models are plain-torch copies of torchvision's ResNet-18 (same keys, same
layers) and of the course's basic CNN, so torchvision itself is not needed.

    python Tests/Fixtures/generate.py            # rewrites Tests/Fixtures/{resnet18,basic-cnn}/
"""
import os
import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = (1 << 64) - 1


def fnv1a(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def splitmix(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def fixture_unit(key: str, count: int) -> np.ndarray:
    """Values in [-1, 1) on a 2^-23 grid: exact in float32."""
    with np.errstate(over="ignore"):
        z = splitmix(np.uint64(fnv1a(key)) + np.arange(count, dtype=np.uint64))
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    return np.float32(2) * u - np.float32(1)


def fixture_tensor(key: str, shape) -> np.ndarray:
    """The fixture value of one state_dict entry (mirrored by FixtureWeights.swift)."""
    count = int(np.prod(shape)) if len(shape) else 1
    v = fixture_unit(key, count)
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        out = v * np.float32(np.sqrt(6.0 / fan_in))
    elif key.endswith("running_var"):
        out = np.float32(1) + np.float32(0.5) * v
    elif key.endswith("weight"):  # BN gamma
        out = np.float32(1) + np.float32(0.25) * v
    else:  # BN beta, running_mean, linear bias
        out = np.float32(0.1) * v
    return out.reshape(shape).astype(np.float32)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18, layer for layer (`width` = 64 is torchvision's)."""

    def __init__(self, classes, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [width, width * 2, width * 4, width * 8]
        for i, w in enumerate(widths):
            cin = width if i == 0 else widths[i - 1]
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.relu(self.bn(self.conv(x))))


class BasicCNN(nn.Module):
    def __init__(self, classes):
        super().__init__()
        widths = [3, 32, 64, 128, 256]
        self.blocks = nn.ModuleList(Block(widths[i], widths[i + 1]) for i in range(4))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_fixture_weights(model):
    state = {k: torch.from_numpy(fixture_tensor(k, tuple(v.shape))) for k, v in model.state_dict().items()}
    model.load_state_dict(state)


def write(name, model, batch=2, side=64, classes=21):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    load_fixture_weights(model)
    model = model.double()
    x = fixture_unit(f"{name}/input", batch * 3 * side * side).reshape(batch, 3, side, side)
    labels = np.arange(batch, dtype=np.int64) * 7 % classes
    np.save(os.path.join(out, "input.npy"), x)
    np.save(os.path.join(out, "labels.npy"), labels)
    xt = torch.from_numpy(x.astype(np.float64))
    with torch.no_grad():
        model.eval()
        np.save(os.path.join(out, "logits_eval.npy"), model(xt).numpy())
        model.train()
        logits = model(xt)
        np.save(os.path.join(out, "logits_train.npy"), logits.numpy())
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        np.save(os.path.join(out, "loss_train.npy"), np.array(loss.item()))
    # Running statistics after that one training-mode forward (momentum 0.1, unbiased variance).
    for key, value in model.state_dict().items():
        if key.endswith(("running_mean", "running_var")) and key.split(".")[0] in ("bn1", "blocks", "layer4"):
            np.save(os.path.join(out, f"state_{key}.npy"), value.numpy())
    print(f"wrote {out}")


def write_gradients(name, model, batch=4, side=64, classes=21):
    """Training-mode loss and the gradient of every parameter (float64 reference, stored float32)."""
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    load_fixture_weights(model)
    model = model.double().train()
    x = fixture_unit(f"{name}/input", batch * 3 * side * side).reshape(batch, 3, side, side)
    labels = (np.arange(batch, dtype=np.int64) * 5 + 3) % classes
    np.save(os.path.join(out, "input.npy"), x)
    np.save(os.path.join(out, "labels.npy"), labels)
    loss = nn.functional.cross_entropy(model(torch.from_numpy(x.astype(np.float64))), torch.from_numpy(labels))
    loss.backward()
    np.save(os.path.join(out, "loss.npy"), np.array(loss.item()))
    for key, p in model.named_parameters():
        np.save(os.path.join(out, f"grad_{key}.npy"), p.grad.numpy().astype(np.float32))
    print(f"wrote {out}")


OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd-nesterov": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    # weight_decay 0.1: at 0.01 a max-pool winner of this batch flips between float32 and float64
    # after step one, which makes the second-step gradient differ discretely (a fixture artefact).
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1),
}
WATCHED = ["blocks.0.conv.weight", "blocks.3.bn.weight", "blocks.3.bn.bias", "fc.weight", "fc.bias"]


def write_optimizer_steps(batch=4, side=32, classes=21, steps=2):
    """Parameters of basic-cnn after `steps` optimizer steps on the same batch (training-mode BN)."""
    out = os.path.join(HERE, "optimizers")
    os.makedirs(out, exist_ok=True)
    x = fixture_unit("optimizers/input", batch * 3 * side * side).reshape(batch, 3, side, side)
    labels = (np.arange(batch, dtype=np.int64) * 3 + 1) % classes
    np.save(os.path.join(out, "input.npy"), x)
    np.save(os.path.join(out, "labels.npy"), labels)
    for opt_name, make in OPTIMIZERS.items():
        model = BasicCNN(classes)
        load_fixture_weights(model)
        model = model.double().train()
        opt = make(model.parameters())
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(torch.from_numpy(x.astype(np.float64))), torch.from_numpy(labels)).backward()
            opt.step()
        state = dict(model.named_parameters())
        for key in WATCHED:
            np.save(os.path.join(out, f"{opt_name}_{key}.npy"), state[key].detach().numpy())
    print(f"wrote {out}")


def write_weight_files():
    """PyTorch checkpoints (torch.save of a state_dict, as torchvision ships them) of the fixture
    weights, and two hostile pickles that name os.system / builtins.eval."""
    import zipfile
    out = os.path.join(HERE, "weights")
    os.makedirs(out, exist_ok=True)
    for name, model in [("basic-cnn", BasicCNN(21)), ("resnet18-w8", ResNet18(21, width=8))]:
        load_fixture_weights(model)
        torch.save(model.state_dict(), os.path.join(out, f"{name}.pth"))
    for name, module, attr in [("evil-os-system", "os", "system"), ("evil-builtins-eval", "builtins", "eval")]:
        # GLOBAL module attr; the string 'echo pwned'; TUPLE1; REDUCE; STOP — what a malicious
        # checkpoint does to run code at load time.
        payload = b"\x80\x02c" + module.encode() + b"\n" + attr.encode() + b"\nX\x0a\x00\x00\x00echo pwned\x85R."
        with zipfile.ZipFile(os.path.join(out, f"{name}.pth"), "w") as z:
            z.writestr("archive/data.pkl", payload)
            z.writestr("archive/byteorder", "little")
            z.writestr("archive/version", "3\n")
    print(f"wrote {out}")


MOBILENET_IMAGES = ["agricultural/agricultural00.jpg", "beach/beach00.jpg", "forest/forest00.jpg", "storagetanks/storagetanks00.jpg"]


def write_mobilenet_reference():
    """Pooled 1280-d features of the TF.js MobileNetV2-0.35 on four UC Merced images (center 224²
    crop, scaled to [-1, 1]), from the independent float64 Keras-graph interpreter."""
    from PIL import Image
    import json
    import keras_reference
    shared = os.path.join(HERE, "..", "..", "..", "shared")
    model_dir = os.path.join(shared, "weights", "mobilenet_v2_0.35_imagenet_tfjs")
    if not os.path.isdir(model_dir):
        print("../shared absent: MobileNetV2 reference not written")
        return
    batch, sums = [], []
    for rel in MOBILENET_IMAGES:
        rgb = np.asarray(Image.open(os.path.join(shared, "data", "UCMerced_LandUse", "Images", rel)).convert("RGB"))
        top, left = (rgb.shape[0] - 224) // 2, (rgb.shape[1] - 224) // 2
        crop = rgb[top:top + 224, left:left + 224]
        sums.append(int(crop.astype(np.int64).sum()))
        batch.append(crop.astype(np.float64) / 127.5 - 1)
    out = os.path.join(HERE, "mobilenet-tfjs")
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "features.npy"), keras_reference.features(model_dir, np.stack(batch)))
    json.dump({"images": MOBILENET_IMAGES, "crop_pixel_sums": sums}, open(os.path.join(out, "images.json"), "w"), indent=1)
    print(f"wrote {out}")


def write_image_samples():
    """Tiny images in the colour modes a loader meets: grayscale and RGBA PNG, grayscale and CMYK JPEG."""
    from PIL import Image
    out = os.path.join(HERE, "images")
    os.makedirs(out, exist_ok=True)
    gray = Image.fromarray((np.arange(64, dtype=np.uint8).reshape(8, 8) * 4))
    gray.save(os.path.join(out, "gray.png"))
    gray.save(os.path.join(out, "gray.jpg"), quality=95)
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[4:, :, 3] = 0  # bottom half transparent
    Image.fromarray(rgba, "RGBA").save(os.path.join(out, "rgba.png"))
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(os.path.join(out, "cmyk.jpg"))
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.manual_seed(0)
    write("resnet18", ResNet18(21))
    write("basic-cnn", BasicCNN(21))
    write_gradients("resnet18-w8-grad", ResNet18(21, width=8))
    write_gradients("basic-cnn-grad", BasicCNN(21))
    write_optimizer_steps()
    write_weight_files()
    write_mobilenet_reference()
    write_image_samples()
