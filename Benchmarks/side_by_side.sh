#!/usr/bin/env bash
# Kiln and PyTorch side by side on this machine: ../shared/bench/torch_anchor.py and
# Benchmarks/pytorch_mobilenet.py, then one
# kiln-bench process per workload (peak RSS is per process), for N interleaved rounds; the
# machine's speed drifts, so compare within a round.
#   Benchmarks/side_by_side.sh [rounds]      PYTHON: a python with torch and torchvision (python3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
python=${PYTHON:-python3}
anchor=../shared/bench/torch_anchor.py
[ -f "$anchor" ] || { echo "side_by_side: $anchor not found (../shared is absent)" >&2; exit 1; }
swift build -c release --product kiln-bench >/dev/null
for round in $(seq "$rounds"); do
  echo "# round $round"
  for mode in infer full frozen cnn; do
    "$python" "$anchor" 32 224 "$mode" | tail -1
  done
  for mode in infer full frozen; do
    "$python" Benchmarks/pytorch_mobilenet.py 32 224 0.35 "$mode"
  done
  for workload in resnet18-infer resnet18-train resnet18-frozen basic-cnn-train basic-cnn-infer \
                  mobilenet-infer mobilenet-train mobilenet-frozen; do
    .build/release/kiln-bench --workloads "$workload" --iterations 3 | grep "img/s"
  done
done
