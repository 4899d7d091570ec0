#!/usr/bin/env bash
# Data-parallel throughput on one machine: mpirun -np RANKS kiln-bench (1 thread per rank) beside
# one kiln-bench process with RANKS threads, interleaved per round, same global batch.
# Usage: Benchmarks/distributed.sh [rounds] [workload] [ranks]   (build first: swift build -c release)
set -euo pipefail
rounds=${1:-3} workload=${2:-resnet18-train} ranks=${3:-2}
bench=${KILN_BENCH:-.build/release/kiln-bench}
flags=(--workloads "$workload" --batch 32 --iterations "${ITERATIONS:-5}")
root=(); [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
for round in $(seq "$rounds"); do
    single=$("$bench" "${flags[@]}" --threads "$ranks" | grep "^$workload:")
    parallel=$(mpirun -np "$ranks" "${root[@]}" --bind-to core --mca btl self,vader "$bench" "${flags[@]}" --threads 1 | grep "^$workload:")
    echo "round $round"
    echo "  1 process × $ranks threads: $single"
    echo "  $ranks ranks × 1 thread:    $parallel"
    awk -v a="$single" -v b="$parallel" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "  ratio (ranks / threads): %.2f\n", y[2] / x[2] }'
done
