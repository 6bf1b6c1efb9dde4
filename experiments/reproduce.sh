#!/usr/bin/env bash
# The commands behind every number in the README (CPU budgets as stated there).
set -euo pipefail
cd "$(dirname "$0")/.."
# 1. default job (3 folds x {none, feedback}, 8 epochs each)
python -m pyro_ebnn.run main --out results/main
# 2. [000] protocol on the position and color rules, shortened: 30 and 15 epochs instead of 200
python -m pyro_ebnn.run grid --config configs/decoy_mnist_position.yaml --set epochs=30 --set threads=1 --out results/protocol
python -m pyro_ebnn.run grid --config configs/decoy_mnist_color.yaml --set epochs=15 --set threads=1 --out results/protocol
python -m pyro_ebnn.run aggregate results/protocol
# 3. step speed against plain PyTorch
python experiments/benchmark_step.py --threads 2 --repeats 200
