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
python -m pyro_ebnn.run grid --config configs/decoy_mnist_color_rf.yaml --modes feedback --set epochs=15 --set threads=1 --out results/protocol
for rule in position color; do for m in none feedback; do for f in 0 1 2; do
  python -m pyro_ebnn.run evaluate --run results/protocol/decoy_mnist_$rule/$m/fold$f --threads 1 \
      --methods saliency,gradcam --max-images 2000 --figure-images 6
done; done; done
for r in position_rf color_rf; do for f in 0 1 2; do
  python -m pyro_ebnn.run evaluate --run results/protocol/decoy_mnist_$r/feedback/fold$f --threads 1 \
      --methods saliency,gradcam --max-images 2000 --figure-images 6
done; done
python -m pyro_ebnn.run aggregate results/protocol --out experiments/results/protocol_summary \
    --columns balanced_accuracy,f1_macro,roc_auc,decoy_swap_accuracy,ece,nll,brier,overlap_saliency,overlap_gradcam
# 3. [001] fine-tuning on the four-corner rule: 1 epoch without feedback, then 17 epochs with feedback
#    on 0.4% of the training images, model selected on a validation fold with test-rule decoys
R=results/finetune3/corners
for f in 0 1 2; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold $f --set epochs=1 --set eval_samples=10 \
      --set threads=1 --set rho_init=-2 --set standardize=false --out $R/none/fold$f   # [000]'s rho, raw pixels; the config
      # now holds rho -4 (session 6) and standardize: true (session 7), both below
  python -m pyro_ebnn.run finetune --run $R/none/fold$f --fold $f --set validation_decoys=test --set mask_pool=receptive \
      --set patience=3 --set eval_samples=10 --set threads=1 --out $R/feedback/fold$f
done
for r in none feedback; do for f in 0 1 2; do
  python -m pyro_ebnn.run evaluate --run $R/$r/fold$f --threads 1 --max-images 2000 --figure-images 6
done; done
for lam in 10 100 0.1 0.01; do for f in 0 1 2; do   # a larger or smaller lambda, chosen against on validation
  python -m pyro_ebnn.run finetune --run $R/none/fold$f --fold $f --set validation_decoys=test --set mask_pool=receptive \
      --set patience=3 --set eval_samples=10 --set threads=1 --set finetune_lam=$lam --out results/finetune_lam/corners/feedback-lam$lam/fold$f
done; done
for f in 0 1 2; do   # [001]'s Eq. 12 gradient filter, and a 3x larger fine-tuning learning rate (both judged on validation)
  python -m pyro_ebnn.run finetune --run $R/none/fold$f --fold $f --set validation_decoys=test --set mask_pool=receptive \
      --set gradient_filter=true --set patience=3 --set eval_samples=10 --set threads=1 --out results/finetune_gf/corners/feedback-gf/fold$f
  python -m pyro_ebnn.run finetune --run $R/none/fold$f --fold $f --set validation_decoys=test --set mask_pool=receptive \
      --set finetune_lr=3e-3 --set patience=3 --set eval_samples=10 --set threads=1 --out results/finetune_lr/corners/feedback-lr0.003/fold$f
  for G in results/finetune_gf/corners/feedback-gf results/finetune_lr/corners/feedback-lr0.003; do
    python -m pyro_ebnn.run evaluate --run $G/fold$f --threads 1 --max-images 2000 --figure-images 6
  done
done
for lr in 1e-3 3e-3; do for f in 0 1 2; do   # validation every 20 steps inside the epochs (session 5)
  G=results/finetune_steps/corners/feedback-lr$lr
  python -m pyro_ebnn.run finetune --run $R/none/fold$f --fold $f --set validation_decoys=test --set mask_pool=receptive \
      --set finetune_lr=$lr --set val_every_steps=20 --set patience=3 --set eval_samples=10 --set threads=1 --out $G/fold$f
  python -m pyro_ebnn.run evaluate --run $G/fold$f --threads 1 --max-images 2000 --figure-images 6
done; done
python -m pyro_ebnn.run aggregate results/finetune_steps --out experiments/results/finetune_steps_summary \
    --columns balanced_accuracy,decoy_swap_accuracy,ece,nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
# how the evidence is met: scale of the evidence-layer pre-activations, masked cells and the others
python experiments/evidence_scale.py results/finetune3/corners/none/fold{0,1,2} results/finetune_lr/corners/feedback-lr0.003/fold{0,1,2} \
    results/protocol/decoy_mnist_position/{none,feedback}/fold{0,1,2}
# session 6: the initial posterior scale rho of the start model, chosen on fold 0's validation F1 after
# fine-tuning (validation every 20 steps), then the chosen rho = -4 (now the config's) on folds 1 and 2
for r in -3 -4 -5; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold 0 --set epochs=1 --set eval_samples=10 \
      --set threads=1 --set rho_init=$r --set standardize=false --out results/rho/corners/none-rho$r/fold0
done
for f in 1 2; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold $f --set epochs=1 --set eval_samples=10 \
      --set threads=1 --set standardize=false --out results/rho/corners/none-rho-4/fold$f
done
for run in none-rho-3/fold0 none-rho-5/fold0 none-rho-4/fold0 none-rho-4/fold1 none-rho-4/fold2; do
  f=${run##*fold}; G=results/rho/corners/feedback-${run#none-}
  python -m pyro_ebnn.run finetune --run results/rho/corners/$run --fold $f --set validation_decoys=test --set mask_pool=receptive \
      --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 --set threads=1 --out $G
  for E in results/rho/corners/$run $G; do
    python -m pyro_ebnn.run evaluate --run $E --threads 1 --max-images 2000 --figure-images 6
  done
done
for lam in 10 0.1; do   # lambda again at rho -4 (fold 0, judged on validation F1)
  python -m pyro_ebnn.run finetune --run results/rho/corners/none-rho-4/fold0 --fold 0 --set validation_decoys=test \
      --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 \
      --set threads=1 --set finetune_lam=$lam --out results/rho_lam/corners/feedback-rho-4-lam$lam/fold0
done
for f in 0 1 2; do   # fine-tuning lr 3e-3 at rho -4 (judged on the mean validation F1 over the folds)
  python -m pyro_ebnn.run finetune --run results/rho/corners/none-rho-4/fold$f --fold $f --set validation_decoys=test \
      --set mask_pool=receptive --set finetune_lr=3e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 \
      --set threads=1 --out results/rho_lr/corners/feedback-rho-4-lr3e-3/fold$f
  python -m pyro_ebnn.run evaluate --run results/rho_lr/corners/feedback-rho-4-lr3e-3/fold$f --threads 1 --max-images 2000 --figure-images 6
done
python -m pyro_ebnn.run aggregate results/rho_lr --out experiments/results/finetune_rho_lr_summary \
    --columns val_f1_macro,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
python -m pyro_ebnn.run explain --run results/rho/corners/none-rho-4/fold0 --run results/rho/corners/feedback-rho-4/fold0 \
    --out results/rho/explain_fold0 --n-images 6 --methods deeplift,gradcam --threads 2
for m in gradcam deeplift; do cp results/rho/explain_fold0/attributions_$m.png experiments/results/figures/corners_rho-4_fold0_$m.png; done
python experiments/evidence_scale.py results/rho/corners/none-rho-4/fold{0,1,2} results/rho/corners/feedback-rho-4/fold{0,1,2}
python -m pyro_ebnn.run aggregate results/rho --by name,mode,rho_init --out experiments/results/finetune_rho_summary \
    --columns balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,plugin_nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
python -m pyro_ebnn.run aggregate results/finetune3 --out experiments/results/finetune_summary \
    --columns balanced_accuracy,decoy_swap_accuracy,ece,nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
# plug-in (posterior-mean network) against predictive calibration of the rho -2 runs (session 6)
python -m pyro_ebnn.run aggregate results/finetune3/corners/none --out results/plugin_rho2_none --columns ece,plugin_ece,nll,plugin_nll
python -m pyro_ebnn.run aggregate results/finetune_steps/corners/feedback-lr1e-3 --out results/plugin_rho2_steps --columns ece,plugin_ece,nll,plugin_nll
# session 7: [000]'s input standardization (standardize: true) on the corners, ρ −4, 3 folds, then both
# attribution references (zero = black, mean = the training images' mean) for these and the ρ −4 runs
for f in 0 1 2; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold $f --set epochs=1 --set eval_samples=10 \
      --set threads=1 --out results/std/corners/none-std/fold$f   # standardize: true, from the config
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold$f --fold $f --set validation_decoys=test \
      --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 \
      --set threads=1 --out results/std/corners/feedback-std/fold$f
  for run in none-std feedback-std; do
    python -m pyro_ebnn.run evaluate --run results/std/corners/$run/fold$f --threads 1 --max-images 2000 --figure-images 6
    python -m pyro_ebnn.run evaluate --run results/std/corners/$run/fold$f --out results/std_mean/corners/$run/fold$f \
        --threads 1 --max-images 2000 --baseline mean --no-figures
  done
  for run in none-rho-4 feedback-rho-4; do
    python -m pyro_ebnn.run evaluate --run results/rho/corners/$run/fold$f --out results/rho_mean/corners/$run/fold$f \
        --threads 1 --max-images 2000 --baseline mean --no-figures
  done
done
python -m pyro_ebnn.run aggregate results/std --out experiments/results/finetune_std_summary \
    --columns val_f1_macro,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,plugin_nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
for r in std rho; do
  python -m pyro_ebnn.run aggregate results/${r}_mean --out experiments/results/finetune_${r}_mean_summary \
      --columns overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
done
python -m pyro_ebnn.run explain --run results/std/corners/none-std/fold0 --run results/std/corners/feedback-std/fold0 \
    --out results/std/explain_fold0 --n-images 6 --methods deeplift,gradcam --baseline mean --threads 1
for m in gradcam deeplift; do cp results/std/explain_fold0/attributions_$m.png experiments/results/figures/corners_std_fold0_$m.png; done
python experiments/evidence_scale.py results/std/corners/none-std/fold{0,1,2} results/std/corners/feedback-std/fold{0,1,2} --posterior-scales
#    the start model's rho and the fine-tuning lambda again, standardized, fold 0 (judged on validation F1)
for r in -3 -5; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold 0 --set epochs=1 --set eval_samples=10 \
      --set threads=1 --set rho_init=$r --out results/std_rho/corners/none-std-rho$r/fold0
  python -m pyro_ebnn.run finetune --run results/std_rho/corners/none-std-rho$r/fold0 --fold 0 --set validation_decoys=test \
      --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 \
      --set threads=1 --out results/std_rho/corners/feedback-std-rho$r/fold0
done
for lam in 3 0.3; do
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold0 --fold 0 --set validation_decoys=test \
      --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 \
      --set threads=1 --set finetune_lam=$lam --out results/std_lam/corners/feedback-std-lam$lam/fold0
done
python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold0 --fold 0 --set validation_decoys=test \
    --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 \
    --set threads=2 --set gradient_filter=true --out results/std_gf/corners/feedback-std-gf/fold0   # [001] Eq. 12
python -m pyro_ebnn.run evaluate --run results/std_gf/corners/feedback-std-gf/fold0 --threads 2 --max-images 2000 --figure-images 6
#    fine-tuning past [001]'s 17 epochs (session 8): 40 epochs, no early stop; the selected model and
#    the network after the last epoch, all four overlaps (black reference) and DeepLIFT/Occlusion (mean)
for f in 0 1 2; do
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold$f --fold $f --set validation_decoys=test \
      --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=1000 --set eval_samples=10 \
      --set finetune_epochs=40 --set threads=1 --out results/long/corners/fold$f
  for w in selected last; do
    python -m pyro_ebnn.run evaluate --run results/long/corners/fold$f --weights $w --max-images 2000 --threads 1 \
        --figure-images 6 --out results/long_eval/$w/fold$f
    python -m pyro_ebnn.run evaluate --run results/long/corners/fold$f --weights $w --max-images 2000 --threads 1 \
        --methods deeplift,occlusion --baseline mean --no-figures --out results/long_eval_mean/$w/fold$f
  done
done
#    the matched control: the same fine-tuning without any annotated image (finetune_budget=0, mode none)
for f in 0 1 2; do
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold$f --fold $f --set validation_decoys=test \
      --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set patience=3 --set eval_samples=10 \
      --set threads=1 --set finetune_budget=0 --out results/std_control/corners/fold$f
  python -m pyro_ebnn.run evaluate --run results/std_control/corners/fold$f --max-images 2000 --threads 1 --figure-images 6
  python -m pyro_ebnn.run evaluate --run results/std_control/corners/fold$f --weights last --no-attributions --threads 1 \
      --out results/std_control_last/corners/fold$f
done
python -m pyro_ebnn.run aggregate results/std_control_last --by evaluated_weights --out experiments/results/finetune_control_last_summary \
    --columns evaluated_epoch,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll
python -m pyro_ebnn.run aggregate results/std_control --out experiments/results/finetune_control_summary \
    --columns val_f1_macro,best_epoch,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,plugin_nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
for r in long_eval long_eval_mean; do
  python -m pyro_ebnn.run aggregate results/$r --by evaluated_weights --out experiments/results/finetune_${r}_summary \
      --columns evaluated_epoch,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
done
for f in 0 2; do cp results/long_eval/last/fold$f/validation_curve.png experiments/results/figures/corners_long_fold${f}_validation_curve.png; done
for w in selected last; do
  cp results/long_eval/$w/fold0/attributions_deeplift.png experiments/results/figures/corners_long_fold0_${w}_deeplift.png
done
#    [000]'s standardization on its own two rules (the configs keep raw pixels)
python -m pyro_ebnn.run grid --config configs/decoy_mnist_position.yaml --set epochs=30 --set threads=1 --set standardize=true --out results/protocol_std
python -m pyro_ebnn.run grid --config configs/decoy_mnist_color.yaml --set epochs=15 --set threads=1 --set standardize=true --out results/protocol_std
for rule in position color; do for m in none feedback; do for f in 0 1 2; do
  python -m pyro_ebnn.run evaluate --run results/protocol_std/decoy_mnist_$rule/$m/fold$f --threads 1 \
      --methods saliency,gradcam --max-images 2000 --figure-images 6
done; done; done
python -m pyro_ebnn.run aggregate results/protocol_std --out experiments/results/protocol_std_summary \
    --columns balanced_accuracy,f1_macro,roc_auc,decoy_swap_accuracy,ece,nll,brier,overlap_saliency,overlap_gradcam
# 4. step speed against plain PyTorch
python experiments/benchmark_step.py --threads 2 --repeats 200 --json experiments/results/benchmark_step.json
# 5. baselines on the same footing (issue 4): RRR and CDEP rules, 8 epochs per run, 3 folds, model
#    selection and penalty-weight / lambda choice on a validation fold with test-rule decoys
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --overlap saliency --overlap-images 2000 --out results/compare_val"
for rule in rrr cdep; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml \
    --methods none,feedback,none@deterministic,l1grad@deterministic,augment $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml \
    --methods rrr@deterministic,cdep@deterministic --penalty-weights 10,100,1000 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --methods feedback \
    --sweep feedback:lam=5e-4,5e-3 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --methods feedback \
    --sweep feedback:mask_pool=receptive $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --methods rrr,l1grad \
    --sweep rrr:penalty_weight=10 $C
done
#    Expected Gradients (session 5): the weight and the learning rate swept on validation for the
#    deterministic LeNet; the Bayesian one at the weight chosen there, both learning rates
for rule in rrr cdep; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --methods eg@deterministic \
    --sweep eg:penalty_weight=10,100,1000 --sweep eg:lr=1e-3,3e-3 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --methods eg \
    --sweep eg:penalty_weight=10 --sweep eg:lr=1e-3,3e-3 $C
done
#    the learning rate, swept on validation like the weights (session 4): feedback and the Bayesian
#    none at 3e-3 / 1e-2, the two best deterministic baselines at 3e-3
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep.yaml --methods feedback \
    --sweep feedback:mask_pool=receptive --sweep feedback:lr=3e-3,1e-2 $C
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --methods feedback --sweep feedback:lr=3e-3,1e-2 $C
for rule in cdep rrr; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --methods none,rrr@deterministic,l1grad@deterministic \
    --sweep none:lr=3e-3 --sweep rrr:penalty_weight=10 --sweep rrr:lr=3e-3 --sweep l1grad:lr=3e-3 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --methods augment,rrr,l1grad \
    --sweep augment:lr=3e-3 --sweep rrr:penalty_weight=10 --sweep rrr:lr=3e-3 --sweep l1grad:lr=3e-3 $C
done
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --collect-only --overlap none \
    --methods none,feedback,augment,rrr,l1grad,eg,rrr@deterministic,cdep@deterministic,l1grad@deterministic,eg@deterministic,none@deterministic \
    --out results/compare_val
cp results/compare_val/compare.md results/compare_val/compare.csv results/compare_val/compare_sweep.csv experiments/results/
# 5b. two CDEP probes on fold 0 (weight 10,000; masks on every training image)
for s in penalty_weight=10000 mask_fraction=1.0; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_cdep.yaml --set network=deterministic --mode cdep --fold 0 \
      --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --set $s --out results/cdep_probe/${s%%=*}
done
# 5c. the CDEP rule on [004]'s own CNN and training (Adam, weight decay 1e-3; configs/decoy_mnist_cdep_cnn.yaml)
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --overlap saliency --overlap-images 2000"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --methods none@deterministic,cdep@deterministic \
    --penalty-weights 1000,10000 $C --set validation_decoys=test --out results/compare_cnn
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --methods none@deterministic,cdep@deterministic \
    $C --set validation_decoys=train --out results/compare_cnn_trainval   # [004]'s setting: training-rule validation
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --methods cdep@deterministic --folds 0 \
    --penalty-weights 10,100 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --out results/cdep_probe/cnn
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --methods cdep@deterministic --penalty-weights 10000 \
    --folds 0,1,2 --set epochs=20 --set eval_samples=10 --set threads=1 --set validation_decoys=test --overlap saliency \
    --overlap-images 2000 --out results/compare_cnn20
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --methods none@deterministic,cdep@deterministic \
    --penalty-weights 10000 --folds 0,1,2 --set epochs=20 --set eval_samples=10 --set threads=1 --set validation_decoys=train \
    --overlap saliency --overlap-images 2000 --out results/compare_cnn20_trainval
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --methods eg@deterministic \
    --penalty-weights 10,100 $C --set validation_decoys=train --out results/compare_cnn_trainval   # Expected Gradients (session 5)
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --collect-only --overlap none \
    --methods none@deterministic,cdep@deterministic,eg@deterministic $C --set validation_decoys=train --out results/compare_cnn_trainval
#    [004]'s training code instead of its paper (session 8): batch 64, weight decay 1e-4, 5 epochs, no decay,
#    inputs scaled (standardized here; [004] maps them to [-1, 1]), every training image masked,
#    the model of the last epoch (training-rule validation, as [004]'s held-out 10%)
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --methods none@deterministic,cdep@deterministic \
    --penalty-weights 1000 --folds 0,1,2 --set epochs=5 --set batch_size=64 --set weight_decay=1e-4 --set lr_decay=1.0 \
    --set standardize=true --set mask_fraction=1.0 --set eval_samples=10 --set threads=1 --set validation_decoys=train \
    --overlap saliency --overlap-images 2000 --out results/cnn_repo_m1
cp results/cnn_repo_m1/compare.md experiments/results/compare_cnn_code_setting.md
R=results/compare_cnn/decoy_mnist_cdep_cnn
python experiments/cdep_diagnostic.py $R/none-deterministic/fold0 $R/cdep-deterministic-w1000/fold0 $R/cdep-deterministic-w10000/fold0
cp results/compare_cnn/compare.md experiments/results/compare_cnn.md
cp results/compare_cnn_trainval/compare.md experiments/results/compare_cnn_trainval.md
cp results/compare_cnn20/compare.md experiments/results/compare_cnn20.md
cp results/compare_cnn20_trainval/compare.md experiments/results/compare_cnn20_trainval.md
R=results/compare_val/decoy_mnist_cdep   # how the CDEP networks meet their penalty
python experiments/cdep_diagnostic.py $R/none-deterministic/fold0 $R/cdep-deterministic-w1000/fold0 \
    $R/cdep-deterministic-w10/fold0 $R/rrr-deterministic-w10/fold0
# 6. cost of every mode (time per step = per epoch, peak memory), ratios to the Bayesian step without feedback
python experiments/benchmark_modes.py --threads 1 --repeats 50 --rounds 5 --warmup 3 --json experiments/results/benchmark_modes.json
python experiments/profile_step.py --steps 20 > experiments/results/profile_step.txt
# 7. one full evaluation (10,000 test + 10,000 decoy-swap images, all four attribution methods), timed
/usr/bin/time -v python -m pyro_ebnn.run evaluate --run results/protocol/decoy_mnist_position/feedback/fold0 \
    --out results/full_eval --threads 1
python experiments/benchmark_predictive.py --images 2000 --samples 10 --threads 1 --rounds 3
