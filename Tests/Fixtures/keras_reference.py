"""An independent float64 reference for the TF.js MobileNetV2 of ../shared/weights: it interprets
the Keras functional graph stored in model.json (layer types, configs and inbound nodes) with
PyTorch float64 ops, reading weights.bin by the weightsManifest. It shares no code or layer table
with Kiln's Swift MobileNetV2, so agreement checks both the architecture and the weight mapping."""
import json
import os
import numpy as np
import torch
import torch.nn.functional as F


def load_weights(model_dir):
    manifest = json.load(open(os.path.join(model_dir, "model.json")))["weightsManifest"]
    weights = {}
    for group in manifest:
        data = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            weights[w["name"]] = np.frombuffer(data, dtype="<f4", count=n, offset=offset).reshape(w["shape"]).astype(np.float64)
            offset += 4 * n
    return weights


def base_layers(model_dir):
    topology = json.load(open(os.path.join(model_dir, "model.json")))["modelTopology"]
    outer = topology.get("model_config", topology)["config"]["layers"]
    for layer in outer:  # the first Sequential wraps the functional MobileNetV2 base
        for inner in layer["config"]["layers"]:
            if inner["class_name"] in ("Model", "Functional"):
                return inner["config"]["layers"]
    raise ValueError("no functional base model in model.json")


def features(model_dir, images_nhwc, stop_at="out_relu"):
    """Pooled features (GlobalAveragePooling2D of `stop_at`) for float64 NHWC images in [-1, 1]."""
    weights = load_weights(model_dir)
    values = {}
    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)  # NCHW for torch ops
    for layer in base_layers(model_dir):
        name, kind, cfg = layer["name"], layer["class_name"], layer["config"]
        inputs = [values[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
        h = inputs[0]
        if kind == "InputLayer":
            out = x
        elif kind == "ZeroPadding2D":
            (top, bottom), (left, right) = cfg["padding"]
            out = F.pad(h, (left, right, top, bottom))
        elif kind in ("Conv2D", "DepthwiseConv2D"):
            depthwise = kind == "DepthwiseConv2D"
            k = torch.from_numpy(weights[f"{name}/{'depthwise_kernel' if depthwise else 'kernel'}"])
            kernel = k.permute(2, 3, 0, 1) if depthwise else k.permute(3, 2, 0, 1)  # → [C,1,kh,kw] / [O,I,kh,kw]
            stride = cfg["strides"][0]
            padding = 0
            if cfg["padding"] == "same":
                assert stride == 1
                padding = cfg["kernel_size"][0] // 2
            out = F.conv2d(h, kernel, stride=stride, padding=padding, groups=h.shape[1] if depthwise else 1)
            if cfg.get("use_bias"):
                out = out + torch.from_numpy(weights[f"{name}/bias"]).view(1, -1, 1, 1)
        elif kind == "BatchNormalization":
            g = lambda p: torch.from_numpy(weights[f"{name}/{p}"]).view(1, -1, 1, 1)
            out = (h - g("moving_mean")) / torch.sqrt(g("moving_variance") + cfg["epsilon"]) * g("gamma") + g("beta")
        elif kind == "ReLU":
            out = torch.clamp(h, min=0, max=cfg.get("max_value") or float("inf"))
        elif kind == "Add":
            out = inputs[0] + inputs[1]
        else:
            raise ValueError(f"unsupported layer {kind} ({name})")
        values[name] = out
        if name == stop_at:
            return out.mean(dim=(2, 3)).numpy()
    raise ValueError(f"no layer {stop_at}")
