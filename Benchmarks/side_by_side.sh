#!/usr/bin/env bash
# Kiln beside PyTorch eager, torch.compile and ONNX Runtime on this machine: every figure from its
# own process, interleaved per round (the machine drifts ±10% within minutes, so ratios are taken
# within a round). Anchors: ../shared/bench/{torch_anchor,torch_compile_anchor,ort_anchor}.py
# (read from there, never copied) and Benchmarks/pytorch_mobilenet.py.
#   Benchmarks/side_by_side.sh [rounds]
#   PYTHON: a python with torch, torchvision, onnx and onnxruntime (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
python=${PYTHON:-python3}
anchors=../shared/bench
for anchor in torch_anchor.py torch_compile_anchor.py ort_anchor.py; do
  [ -f "$anchors/$anchor" ] || { echo "side_by_side: $anchors/$anchor not found (../shared is absent)" >&2; exit 1; }
done
"$python" -c "import torch, torchvision, onnxruntime" 2>/dev/null ||
  { echo "side_by_side: $python lacks torch, torchvision or onnxruntime (set PYTHON)" >&2; exit 1; }
swift build -c release --product kiln-bench >/dev/null
bench=.build/release/kiln-bench

# The first "N img/s" of a line, and its "maxrss N MiB" / "peak RSS N MiB".
ips() { grep -o '[0-9.]* img/s' | head -1 | cut -d' ' -f1; }
rss() { grep -oE '(maxrss|peak RSS) [0-9.]+ MiB' | head -1 | grep -oE '[0-9.]+'; }
kiln() { "$bench" --workloads "$1" --batch "${2:-32}" --iterations "${3:-3}" | grep "img/s ("; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "—" }'; }

"$bench" --workloads "" --iterations 1 | grep -E "^(cpu|kernels|multiply-add|sgemm)"
"$python" -c "import torch, onnxruntime; print(f'torch {torch.__version__}, onnxruntime {onnxruntime.__version__}')"
for round in $(seq "$rounds"); do
  echo "# round $round"
  # ResNet-18 inference, batch 32 and batch 1 (latency)
  k=$(kiln resnet18-infer); e=$("$python" "$anchors/torch_anchor.py" 32 224 infer | tail -1)
  o=$("$python" "$anchors/ort_anchor.py" 32 2>/dev/null | tail -1)
  echo "resnet18 inference b32: kiln $(ips <<<"$k") img/s, eager $(ips <<<"$e"), onnxruntime $(ips <<<"$o") | kiln/ort $(ratio "$(ips <<<"$k")" "$(ips <<<"$o")"), kiln/eager $(ratio "$(ips <<<"$k")" "$(ips <<<"$e")")"
  k1=$(kiln resnet18-infer 1 20); o1=$("$python" "$anchors/ort_anchor.py" 1 2>/dev/null | tail -1)
  kms=$(awk -v r="$(ips <<<"$k1")" 'BEGIN { printf "%.1f", 1000 / r }'); oms=$(awk -v r="$(ips <<<"$o1")" 'BEGIN { printf "%.1f", 1000 / r }')
  echo "resnet18 latency b1: kiln $kms ms, onnxruntime $oms ms | kiln/ort $(ratio "$kms" "$oms")"
  # Training steps, batch 32
  ct=$("$python" "$anchors/torch_compile_anchor.py" 2>/dev/null | grep "torch.compile")
  cf=$(grep "train all" <<<"$ct"); cz=$(grep "train frozen" <<<"$ct")
  k=$(kiln resnet18-train); e=$("$python" "$anchors/torch_anchor.py" 32 224 full | tail -1)
  echo "resnet18 fine-tune all: kiln $(ips <<<"$k") img/s ($(rss <<<"$k") MiB), eager $(ips <<<"$e") ($(rss <<<"$e") MiB), torch.compile $(ips <<<"$cf") | kiln/compile $(ratio "$(ips <<<"$k")" "$(ips <<<"$cf")"), kiln/eager $(ratio "$(ips <<<"$k")" "$(ips <<<"$e")"), RSS kiln/eager $(ratio "$(rss <<<"$k")" "$(rss <<<"$e")")"
  k=$(kiln resnet18-frozen); e=$("$python" "$anchors/torch_anchor.py" 32 224 frozen | tail -1)
  echo "resnet18 frozen backbone: kiln $(ips <<<"$k") img/s, eager $(ips <<<"$e"), torch.compile $(ips <<<"$cz") | kiln/compile $(ratio "$(ips <<<"$k")" "$(ips <<<"$cz")"), kiln/eager $(ratio "$(ips <<<"$k")" "$(ips <<<"$e")")"
  k=$(kiln mobilenet-train); e=$("$python" Benchmarks/pytorch_mobilenet.py 32 224 0.35 full | tail -1)
  echo "mobilenet-v2-0.35 fine-tune: kiln $(ips <<<"$k") img/s ($(rss <<<"$k") MiB), eager $(ips <<<"$e") ($(rss <<<"$e") MiB) | kiln/eager $(ratio "$(ips <<<"$k")" "$(ips <<<"$e")"), RSS kiln/eager $(ratio "$(rss <<<"$k")" "$(rss <<<"$e")")"
done
