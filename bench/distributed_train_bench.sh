#!/usr/bin/env bash
# Data-parallel training speed on one machine: the same short training run as one process with all
# threads and as a job of ranks with one share of the threads each, on the same data and global
# batch. The demo's model and data (configs/demo.json) with group norm in the backbone (the demo's
# trainable batch norm is refused in a job of several ranks, docs/distributed.md), no validation.
# Prints images/s of each (iterations after the first --skip, from rank 0's log.jsonl), their
# ratios, and the mean per step of "sync_seconds" (a step's wait for gradient all-reduces that the
# backward pass did not hide). --rounds R runs the three R times, interleaved, and reports the
# median of each (a shared machine's load shifts between runs). Results: docs/benchmarks.md,
# "Data-parallel training".
#
#   1 x T threads, batch 2B            one process, one forward of the whole global batch
#   1 x T threads, batch B x accum N   one process, the job's exact computation in sequence
#   N ranks x T/N threads, batch B     the job (RANK/WORLD_SIZE/MASTER_* set by hand)
#
# usage: bench/distributed_train_bench.sh [--iterations 25] [--skip 5] [--rounds 1] [--batch 4]
#                 [--ranks 2] [--threads $(nproc)] [--out DIR] [--set key=value ...]
#        (from the repository root, after `cmake --build build --target instseg`)
set -euo pipefail
iterations=25 skip=5 rounds=1 batch=4 ranks=2 threads=$(nproc) out=out/distributed_bench
sets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --iterations) iterations=$2; shift 2 ;;
    --skip) skip=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
instseg=build/instseg
[[ -x $instseg ]] || { echo "build $instseg first" >&2; exit 1; }
rank_threads=$((threads / ranks))
((rank_threads >= 1)) || { echo "--threads must be at least --ranks" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "instseg: $($instseg --version | head -n 1)"
common=(--config configs/demo.json --set model.backbone.norm=group_norm --set data.synthetic_val_images=0
        --set optim.iterations="$iterations" --set run.log_every=1 --set run.progress=false
        --set run.checkpoint_every=100000 "${sets[@]}")

run_one() {  # folder, then --set arguments
  local name=$1; shift
  echo "run $name (load average $(cut -d' ' -f1 /proc/loadavg)) ..."
  "$instseg" train "${common[@]}" "$@" --out "$out/$name" >"$out/$name.out" 2>"$out/$name.err" ||
    { cat "$out/$name.err" >&2; exit 1; }
}

run_ranks() {  # folder
  local name=$1 port pids=()
  echo "run $name (load average $(cut -d' ' -f1 /proc/loadavg)) ..."
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  for ((r = 0; r < ranks; ++r)); do
    RANK=$r WORLD_SIZE=$ranks LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$instseg" train "${common[@]}" --set run.threads="$rank_threads" --set optim.batch_size="$batch" \
      --out "$out/$name" >"$out/$name.$r.out" 2>"$out/$name.$r.err" &
    pids+=($!)
  done
  for ((r = 0; r < ranks; ++r)); do
    wait "${pids[$r]}" || { cat "$out/$name.$r.err" >&2; exit 1; }
  done
}

for ((round = 1; round <= rounds; ++round)); do
  run_one "one_batch.$round" --set run.threads="$threads" --set optim.batch_size=$((batch * ranks))
  run_one "one_accumulate.$round" --set run.threads="$threads" --set optim.batch_size="$batch" \
    --set optim.accumulate="$ranks"
  run_ranks "ranks.$round"
done

/usr/bin/python3 - "$out" "$skip" "$((batch * ranks))" "$threads" "$ranks" "$rank_threads" "$batch" "$rounds" <<'PY'
import json, statistics, sys
out, skip, global_batch, threads, ranks, rank_threads, batch, rounds = sys.argv[1], *map(int, sys.argv[2:])

def measure(name):
    records = [json.loads(line) for line in open(f"{out}/{name}/log.jsonl")]
    train = [r for r in records if r.get("type") == "train"]
    first = next(r for r in train if r["iteration"] == skip)
    last = train[-1]
    images = (last["iteration"] - first["iteration"]) * global_batch
    rate = images / (last["elapsed_seconds"] - first["elapsed_seconds"])
    later = [r for r in train if r["iteration"] > skip]
    sync = [r["sync_seconds"] for r in later if "sync_seconds" in r]
    return rate, (sum(sync) / len(sync) if sync else float("nan")), last["loss"]

def median_of(name):
    runs = [measure(f"{name}.{r}") for r in range(1, rounds + 1)]
    return tuple(statistics.median(run[i] for run in runs) for i in range(3)), [run[0] for run in runs]

rows = [(f"1 process x {threads} threads, batch {global_batch}", *median_of("one_batch")),
        (f"1 process x {threads} threads, batch {batch} x accumulate {ranks}", *median_of("one_accumulate")),
        (f"{ranks} ranks x {rank_threads} thread(s), batch {batch}", *median_of("ranks"))]
print(f"global batch {global_batch} images; iterations {skip + 1}.. timed; median of {rounds} round(s)")
print(f"{'run':<48} {'images/s':>9} {'sync s/step':>12} {'last loss':>10}  images/s per round")
for name, (rate, sync, loss), per_round in rows:
    print(f"{name:<48} {rate:9.2f} {sync:12.4f} {loss:10.4f}  {' '.join(f'{r:.2f}' for r in per_round)}")
base = rows[0][1][0]
for name, (rate, _, _), _ in rows[1:]:
    print(f"ratio {name}: {rate / base:.2f}x of the first")
PY
