#!/usr/bin/env bash
# The commands behind every number in the README (CPU budgets as stated there).
set -euo pipefail
cd "$(dirname "$0")/.."
# 1. default job (3 folds x {none, feedback}, 8 epochs each)
make main
# 2. [000] protocol on the position and color rules, shortened: 30 and 15 epochs instead of 200
python -m pyro_ebnn.run grid --config configs/decoy_mnist_position.yaml --set epochs=30 --set threads=1 --out results/protocol
python -m pyro_ebnn.run grid --config configs/decoy_mnist_color.yaml --set epochs=15 --set threads=1 --out results/protocol
python -m pyro_ebnn.run grid --config configs/decoy_mnist_position_rf.yaml --modes feedback --set epochs=30 --set threads=2 --out results/protocol
for m in none feedback; do for f in 0 1 2; do
  python -m pyro_ebnn.run evaluate --run results/protocol/decoy_mnist_position/$m/fold$f --threads 1 \
      --methods saliency,gradcam --max-images 2000 --figure-images 6
done; done
python -m pyro_ebnn.run aggregate results/protocol --out experiments/results/protocol_summary \
    --columns balanced_accuracy,f1_macro,roc_auc,decoy_swap_accuracy,ece,nll,overlap_saliency,overlap_gradcam
# 3. [001] fine-tuning on the four-corner rule
python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --set epochs=1 --set eval_samples=10 --out results/finetune/corners/none
python -m pyro_ebnn.run finetune --run results/finetune/corners/none --set eval_samples=10 --out results/finetune/corners/feedback
for r in none feedback; do
  python -m pyro_ebnn.run evaluate --run results/finetune/corners/$r --threads 1 --max-images 2000 --figure-images 6
done
python -m pyro_ebnn.run aggregate results/finetune --out experiments/results/finetune_summary \
    --columns balanced_accuracy,decoy_swap_accuracy,ece,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
# 4. step speed against plain PyTorch
python experiments/benchmark_step.py --threads 2 --repeats 200 --json experiments/results/benchmark_step.json
