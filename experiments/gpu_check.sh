python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
# The GPU figures of docs/results/cost.md ("On a GPU") on a bare GPU machine without network, in at
# most 8 minutes, everything written into $OUT (8 files at most):
#
#   OUT=/some/dir bash experiments/gpu_check.sh
#
# It needs, beside the checkout: .whl/ (the wheels of what such a machine lacks: pyro-ppl,
# pyro-api, captum, flask, itsdangerous, blinker, pytest and its dependencies) and
# .gpu_cache/mnist.pkl.gz (the offline MNIST copy of ~/.cache/pyro-ebnn). Every part has a time
# limit taken from what is left of the 8 minutes; a part that fails or runs out of time is
# recorded in log.txt and the next one runs.
#
#   $OUT/log.txt          what ran, the machine, every command's output and exit status
#   $OUT/tests.txt        tests/test_steps.py (the captured step against the eager one, on CUDA)
#   $OUT/step.json        experiments/benchmark_step.py: LeNet step, Pyro and plain PyTorch, eager and graph
#   $OUT/alexnet.json     experiments/benchmark_alexnet.py: AlexNet at 224 px, training images/s, predictive
#   $OUT/predictive.json  experiments/benchmark_predictive.py: LeNet posterior predictive, images/s
#   $OUT/main.json        `main` with the default --jobs and step against one run at a time with eager
#                         steps: wall clock, runs at a time, training steps per second, their ratio, GPU memory
#   $OUT/main_summary.md  the accuracy table of the default `main`
#
# GPU_CHECK_QUICK=1 shrinks every part (a dry run); GPU_CHECK_DEVICE=cpu runs the benchmarks on
# the CPU (a dry run on a machine without a GPU); GPU_CHECK_SECONDS (470) is the budget and
# GPU_CHECK_SCALE (1) multiplies each part's own limit (a slow dry run).
set -u
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYRO_EBNN_CACHE=$PWD/.gpu_cache
DEV=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
BUDGET=${GPU_CHECK_SECONDS:-470}
SCALE=${GPU_CHECK_SCALE:-1}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
LOG=$OUT/log.txt
: > "$LOG"

say() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$LOG"; }

# part NAME MAX_SECONDS COMMAND...: run with a time limit of MAX_SECONDS or what is left of the budget
part() {
    local name=$1 max=$(($2 * SCALE)); shift 2
    local left=$((BUDGET - SECONDS))
    local limit=$(( max < left ? max : left ))
    if [ "$limit" -lt 15 ]; then say "SKIPPED $name: ${left}s of the budget left"; return 0; fi
    say "START $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    say "END $name: exit $rc after $((SECONDS - t0))s"
    return 0
}

say "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); device $DEV; quick $QUICK"
{ nvidia-smi 2>&1 | head -20; nproc; free -g | head -2
  python3 -c "import torch, pyro; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'pyro', pyro.__version__,
'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"; } >> "$LOG" 2>&1

if [ "$QUICK" = 1 ]; then
    STEP="--batch 16 --repeats 2 --rounds 1"; ALEX="--batch 2 --repeats 1 --rounds 1 --samples 2 --images 2"
    PRED="--images 64 --samples 2 --rounds 1"; MAIN="--epochs 1 --folds 0 --eval-samples 2"
else
    STEP="--batch 128 --repeats 200 --rounds 20"; ALEX="--batch 32 --repeats 5 --rounds 3 --samples 20 --images 64"
    PRED="--images 10000 --samples 10 --rounds 3"; MAIN=""
fi
STEPS=eager; [ "$DEV" = cuda ] && STEPS=eager,graph

part tests 120 bash -c "python3 -m pytest -q -p no:cacheprovider -rs tests/test_steps.py > '$OUT/tests.txt' 2>&1"
tail -n 3 "$OUT/tests.txt" >> "$LOG"
part step 120 python3 experiments/benchmark_step.py --device "$DEV" --steps "$STEPS" --threads 2 $STEP \
    --json "$OUT/step.json"
part alexnet 120 python3 experiments/benchmark_alexnet.py --device "$DEV" --steps "$STEPS" --threads 2 $ALEX \
    --json "$OUT/alexnet.json"
part predictive 60 python3 experiments/benchmark_predictive.py --device "$DEV" --threads 2 --clock wall $PRED \
    --json "$OUT/predictive.json"

# GPU memory in use, total and per process, once a second while `main` runs
watch_memory() {
    while true; do
        echo "t $SECONDS"
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | sed 's/^/total /'
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | sed 's/^/app /'
        sleep 1
    done
}
DEVICE_FLAG=""; [ "$DEV" = cpu ] && DEVICE_FLAG="--device cpu"
watch_memory > "$WORK/memory_default.txt" & WATCH=$!
T0=$SECONDS
part main-default 240 python3 -m pyro_ebnn.run main --out "$WORK/main_default" $MAIN $DEVICE_FLAG
echo "$((SECONDS - T0))" > "$WORK/wall_default"
kill "$WATCH" 2>/dev/null
# the reference: one run at a time, eager steps (fold 0 only: 2 of the 6 runs, to stay in the budget)
watch_memory > "$WORK/memory_eager.txt" & WATCH=$!
T0=$SECONDS
part main-eager 150 python3 -m pyro_ebnn.run main --out "$WORK/main_eager" --jobs 1 --step eager --folds 0 $MAIN \
    $DEVICE_FLAG
echo "$((SECONDS - T0))" > "$WORK/wall_eager"
kill "$WATCH" 2>/dev/null
cp "$WORK/main_default/summary.md" "$OUT/main_summary.md" 2>/dev/null || say "no summary of the default main"

python3 - "$WORK" "$LOG" > "$OUT/main.json" 2>> "$LOG" <<'EOF'
"""Training steps per second of both `main` commands (from their runs' metrics.json), their ratio,
the runs at a time, per-run seconds per epoch and GPU memory (peak total and per process)."""
import json, math, re, sys
from pathlib import Path

work, log = Path(sys.argv[1]), Path(sys.argv[2]).read_text()


def memory(name):
    total, apps = [], {}
    path = work / f"memory_{name}.txt"
    for line in (path.read_text().splitlines() if path.exists() else []):
        kind, _, rest = line.partition(" ")
        if kind == "total" and rest.strip().isdigit():
            total.append(int(rest))
        elif kind == "app" and "," in rest:
            pid, used = (v.strip() for v in rest.split(","))
            if used.isdigit():
                apps[pid] = max(apps.get(pid, 0), int(used))
    return {"peak_total_mib": max(total, default=None), "processes": len(apps),
            "peak_per_process_mib": sorted(apps.values(), reverse=True)}


def setting(name):
    runs = [json.loads(p.read_text()) for p in sorted((work / f"main_{name}").rglob("metrics.json"))]
    wall = int((work / f"wall_{name}").read_text()) if (work / f"wall_{name}").exists() else None
    steps = sum(r["epochs_run"] * math.ceil(r["n_train"] / r["config"]["batch_size"]) for r in runs)
    return {"runs": len(runs), "wall_seconds": wall, "training_steps": steps,
            "steps_per_second": steps / wall if wall and steps else None,
            "seconds_per_epoch": [round(r["seconds_per_epoch"], 2) for r in runs],
            "train_seconds": [round(r["train_seconds"], 1) for r in runs],
            "balanced_accuracy": {f"{r['mode']} fold{r['fold']}": round(r["balanced_accuracy"], 4) for r in runs},
            "device": sorted({r.get("device") for r in runs}), "memory": memory(name)}


out = {"default": setting("default"), "eager_one_at_a_time": setting("eager")}
jobs = re.findall(r"--jobs auto: (\d+) run\(s\) at a time on (\S+) \((.*)\)", log)
out["default"]["jobs_auto"] = [{"jobs": int(j), "device": d, "why": w} for j, d, w in jobs]
out["default"]["fell_back_to_eager"] = [l for l in log.splitlines() if "training steps eagerly" in l]
a, b = out["default"]["steps_per_second"], out["eager_one_at_a_time"]["steps_per_second"]
out["steps_per_second_ratio"] = a / b if a and b else None
json.dump(out, sys.stdout, indent=2)
EOF
say "main: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('default', r['default']['wall_seconds'], 's,', r['default']['steps_per_second'], 'steps/s; eager one at a time', r['eager_one_at_a_time']['steps_per_second'], 'steps/s; ratio', r['steps_per_second_ratio'])" "$OUT/main.json" 2>&1)"
rm -rf "$WORK"
say "done in ${SECONDS}s; files: $(ls "$OUT" | tr '\n' ' ')"
