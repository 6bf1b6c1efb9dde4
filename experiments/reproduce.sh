#!/usr/bin/env bash
# The commands behind every number in docs/results/, grouped by the page that reports them.
# Budgets are those of a 2-core CPU machine (stated on each page). Runs land under results/ (not
# tracked); the tables that the pages cite are written to experiments/results/<study>/.
set -euo pipefail
cd "$(dirname "$0")/.."
EV="python -m pyro_ebnn.run evaluate"

# ==== docs/results/default-job.md ==================================================================
make main   # pip install -e ".[dev]", then python -m pyro_ebnn.run main -> results/main/summary.md

# ==== docs/results/protocol.md: the [000] protocol, shortened (30 / 15 epochs instead of 200) ======
python -m pyro_ebnn.run grid --config configs/decoy_mnist_position.yaml --set epochs=30 --set threads=1 --out results/protocol
python -m pyro_ebnn.run grid --config configs/decoy_mnist_color.yaml --set epochs=15 --set threads=1 --out results/protocol
python -m pyro_ebnn.run grid --config configs/decoy_mnist_position_rf.yaml --modes feedback --set epochs=30 --set threads=2 --out results/protocol
python -m pyro_ebnn.run grid --config configs/decoy_mnist_color_rf.yaml --modes feedback --set epochs=15 --set threads=1 --out results/protocol
for rule in position color; do for m in none feedback; do for f in 0 1 2; do   # calibration + overlap, first 2,000 masked test images
  $EV --run results/protocol/decoy_mnist_$rule/$m/fold$f --threads 1 --methods saliency,gradcam --max-images 2000 --figure-images 6
done; done; done
for r in position_rf color_rf; do for f in 0 1 2; do
  $EV --run results/protocol/decoy_mnist_$r/feedback/fold$f --threads 1 --methods saliency,gradcam --max-images 2000 --figure-images 6
done; done
python -m pyro_ebnn.run aggregate results/protocol --out experiments/results/protocol/protocol_summary \
    --columns balanced_accuracy,f1_macro,roc_auc,decoy_swap_accuracy,ece,nll,brier,overlap_saliency,overlap_gradcam
#    the same two rules with [000]'s input standardization (the configs keep raw pixels)
python -m pyro_ebnn.run grid --config configs/decoy_mnist_position.yaml --set epochs=30 --set threads=1 --set standardize=true --out results/protocol_std
python -m pyro_ebnn.run grid --config configs/decoy_mnist_color.yaml --set epochs=15 --set threads=1 --set standardize=true --out results/protocol_std
for rule in position color; do for m in none feedback; do for f in 0 1 2; do
  $EV --run results/protocol_std/decoy_mnist_$rule/$m/fold$f --threads 1 --methods saliency,gradcam --max-images 2000 --figure-images 6
done; done; done
python -m pyro_ebnn.run aggregate results/protocol_std --out experiments/results/protocol/protocol_std_summary \
    --columns balanced_accuracy,f1_macro,roc_auc,decoy_swap_accuracy,ece,nll,brier,overlap_saliency,overlap_gradcam

# ==== docs/results/paper-budget.md: [000]'s Tables 1 and 2 at 200 epochs, [000]'s settings ==========
#    resumes: run it again after an interruption
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --config configs/decoy_mnist_color.yaml \
    --modes none,feedback,augment --set standardize=true --jobs 2 --overlap saliency --out results/paper_budget
for r in results/paper_budget/*/*/fold*; do [ -f $r/metrics.json ] || continue   # the network after the last epoch
  $EV --run $r --out results/paper_budget_last/${r#results/paper_budget/} --checkpoint last --methods saliency --max-images 2000 --figure-images 6 --threads 1
done
C=balanced_accuracy,f1_macro,roc_auc,decoy_swap_accuracy,ece,nll,brier,overlap_saliency
python -m pyro_ebnn.run aggregate results/paper_budget --out experiments/results/paper_budget/summary --columns $C,best_epoch
python -m pyro_ebnn.run aggregate results/paper_budget_last --out experiments/results/paper_budget/summary_last --columns $C
python docs/figures/paper_budget.py --runs results/paper_budget
python experiments/position_probe.py --runs results/paper_budget/decoy_mnist_position --json experiments/results/paper_budget/position_probe.json
#    the position rule's setting chosen on counterfactual validation (swapped squares), 30 epochs
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback \
    --sweep feedback:mask_pool=max,receptive --sweep feedback:standardize=false,true \
    --set validation_decoys=swap --set epochs=30 --jobs 2 --overlap saliency --out results/select_swap
python -m pyro_ebnn.run aggregate results/select_swap --by name,mask_pool,standardize \
    --columns $C,val_balanced_accuracy,best_epoch --out experiments/results/paper_budget/select_swap
cp results/select_swap/compare.md experiments/results/paper_budget/select_swap_compare.md
#    the chosen setting at 60 epochs and at the paper's 200 (and its networks after epoch 200)
for e in 60 200; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback --set mask_pool=receptive \
      --set standardize=false --set validation_decoys=swap --set epochs=$e --jobs 3 --overlap saliency --out results/select_swap_$e
  python -m pyro_ebnn.run aggregate results/select_swap_$e --by name,mask_pool,standardize,epochs \
      --columns $C,val_balanced_accuracy,best_epoch --out experiments/results/paper_budget/select_swap_$e
done
for r in results/select_swap_200/*/*/fold*; do
  python -m pyro_ebnn.run evaluate --run $r --out results/select_swap_200_last/${r#results/select_swap_200/} --checkpoint last \
      --methods saliency --max-images 2000 --figure-images 6 --threads 1
done
python -m pyro_ebnn.run aggregate results/select_swap_200_last --by name,mask_pool,standardize,epochs --columns $C \
    --out experiments/results/paper_budget/select_swap_200_last
#    the chosen setting on the color rule at 200 epochs
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes feedback --set mask_pool=receptive \
    --set standardize=false --set validation_decoys=swap --set epochs=200 --jobs 3 --overlap saliency \
    --out results/select_swap_color_200
python -m pyro_ebnn.run aggregate results/select_swap_color_200 --by name,mask_pool,standardize,epochs \
    --columns $C,val_balanced_accuracy,best_epoch --out experiments/results/paper_budget/select_swap_color_200
cp results/select_swap_color_200/compare.md experiments/results/paper_budget/select_swap_color_200_compare.md

# ==== docs/results/finetune.md: [001] fine-tuning on the four-corner rule ==========================
FT="--set validation_decoys=test --set mask_pool=receptive --set finetune_lr=1e-3 --set val_every_steps=20 --set eval_samples=10 --set threads=1"
#    the configuration of record (configs/decoy_mnist_corners.yaml: rho_init -4, standardize: true):
#    1 epoch without feedback, then up to 17 epochs with feedback on 0.4% of the training images
for f in 0 1 2; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold $f --set epochs=1 --set eval_samples=10 \
      --set threads=1 --out results/std/corners/none-std/fold$f
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold$f --fold $f $FT --set patience=3 \
      --out results/std/corners/feedback-std/fold$f
  for run in none-std feedback-std; do
    $EV --run results/std/corners/$run/fold$f --threads 1 --max-images 2000 --figure-images 6                   # black reference
    $EV --run results/std/corners/$run/fold$f --out results/std_mean/corners/$run/fold$f --threads 1 --max-images 2000 \
        --reference mean --no-figures                                                                            # mean reference
  done
done
python -m pyro_ebnn.run aggregate results/std --out experiments/results/finetune/finetune_std_summary \
    --columns val_f1_macro,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,plugin_nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
python -m pyro_ebnn.run aggregate results/std_mean --out experiments/results/finetune/finetune_std_mean_summary \
    --columns overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
python -m pyro_ebnn.run explain --run results/std/corners/none-std/fold0 --run results/std/corners/feedback-std/fold0 \
    --out results/std/explain_fold0 --n-images 6 --methods deeplift,gradcam --reference mean --threads 1
for m in gradcam deeplift; do cp results/std/explain_fold0/attributions_$m.png experiments/results/finetune/figures/corners_std_fold0_$m.png; done
#    how the configuration was chosen (validation macro F1, test-rule decoys): rho_init and the
#    fine-tuning lambda on fold 0, and [001]'s Eq. 12 gradient filter
for r in -3 -5; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold 0 --set epochs=1 --set eval_samples=10 \
      --set threads=1 --set rho_init=$r --out results/std_rho/corners/none-std-rho$r/fold0
  python -m pyro_ebnn.run finetune --run results/std_rho/corners/none-std-rho$r/fold0 --fold 0 $FT --set patience=3 \
      --out results/std_rho/corners/feedback-std-rho$r/fold0
done
for lam in 3 0.3; do
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold0 --fold 0 $FT --set patience=3 \
      --set finetune_lam=$lam --out results/std_lam/corners/feedback-std-lam$lam/fold0
done
python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold0 --fold 0 $FT --set patience=3 --set threads=2 \
    --set gradient_filter=true --out results/std_gf/corners/feedback-std-gf/fold0
$EV --run results/std_gf/corners/feedback-std-gf/fold0 --threads 2 --max-images 2000 --figure-images 6
#    fine-tuning past [001]'s 17 epochs: 40 epochs, no early stop; the selected model and the network
#    after the last epoch, all four overlaps (black reference) and DeepLIFT / Occlusion (mean reference)
for f in 0 1 2; do
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold$f --fold $f $FT --set patience=1000 \
      --set finetune_epochs=40 --out results/long/corners/fold$f
  for c in selected last; do
    $EV --run results/long/corners/fold$f --checkpoint $c --max-images 2000 --threads 1 --figure-images 6 \
        --out results/long_eval/$c/fold$f
    $EV --run results/long/corners/fold$f --checkpoint $c --max-images 2000 --threads 1 --methods deeplift,occlusion \
        --reference mean --no-figures --out results/long_eval_mean/$c/fold$f
  done
done
for r in long_eval long_eval_mean; do
  python -m pyro_ebnn.run aggregate results/$r --by evaluated_checkpoint --out experiments/results/finetune/finetune_${r}_summary \
      --columns evaluated_epoch,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
done
for f in 0 2; do cp results/long_eval/last/fold$f/validation_curve.png experiments/results/finetune/figures/corners_long_fold${f}_validation_curve.png; done
for c in selected last; do
  cp results/long_eval/$c/fold0/attributions_deeplift.png experiments/results/finetune/figures/corners_long_fold0_${c}_deeplift.png
done
#    the matched control: the same fine-tuning without any annotated image (finetune_budget=0, mode none)
for f in 0 1 2; do
  python -m pyro_ebnn.run finetune --run results/std/corners/none-std/fold$f --fold $f $FT --set patience=3 \
      --set finetune_budget=0 --out results/std_control/corners/fold$f
  $EV --run results/std_control/corners/fold$f --max-images 2000 --threads 1 --figure-images 6
  $EV --run results/std_control/corners/fold$f --checkpoint last --no-attributions --threads 1 \
      --out results/std_control_last/corners/fold$f
done
python -m pyro_ebnn.run aggregate results/std_control --out experiments/results/finetune/finetune_control_summary \
    --columns val_f1_macro,best_epoch,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,plugin_nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
python -m pyro_ebnn.run aggregate results/std_control_last --by evaluated_checkpoint --out experiments/results/finetune/finetune_control_last_summary \
    --columns evaluated_epoch,balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll
#    how the evidence is met: evidence-layer scales (start and fine-tuned models; the position rule's
#    protocol runs) and the posterior scales of every layer
python experiments/evidence_scale.py results/std/corners/none-std/fold{0,1,2} results/std/corners/feedback-std/fold{0,1,2} --posterior-scales
python experiments/evidence_scale.py results/protocol/decoy_mnist_position/{none,feedback}/fold{0,1,2}
#    earlier settings: raw pixels (standardize=false) with [000]'s rho_init -2, and with rho_init -4
R=results/finetune3/corners
for f in 0 1 2; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_corners.yaml --fold $f --set epochs=1 --set eval_samples=10 \
      --set threads=1 --set rho_init=-2 --set standardize=false --out $R/none/fold$f
  python -m pyro_ebnn.run finetune --run $R/none/fold$f --fold $f --set validation_decoys=test --set mask_pool=receptive \
      --set patience=3 --set eval_samples=10 --set threads=1 --out $R/feedback/fold$f
  for r in none feedback; do $EV --run $R/$r/fold$f --threads 1 --max-images 2000 --figure-images 6; done
done
python -m pyro_ebnn.run aggregate results/finetune3 --out experiments/results/finetune/finetune_summary \
    --columns balanced_accuracy,decoy_swap_accuracy,ece,nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion
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
  python -m pyro_ebnn.run finetune --run results/rho/corners/$run --fold $f $FT --set patience=3 --out $G
  for E in results/rho/corners/$run $G; do $EV --run $E --threads 1 --max-images 2000 --figure-images 6; done
done
python -m pyro_ebnn.run aggregate results/rho --by name,mode,rho_init --out experiments/results/finetune/finetune_rho_summary \
    --columns balanced_accuracy,decoy_swap_accuracy,ece,plugin_ece,nll,plugin_nll,brier,overlap_saliency,overlap_deeplift,overlap_gradcam,overlap_occlusion

# ==== docs/results/baselines.md: every method on the same footing (RRR and CDEP rules) ============
#    8 epochs per run, 3 folds; model selection and every swept setting chosen on a validation fold
#    whose decoys follow the test rule
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --overlap saliency --overlap-images 2000 --out results/compare_val"
for rule in rrr cdep; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes none,feedback,none@deterministic,l1grad@deterministic,augment $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes rrr@deterministic,cdep@deterministic --penalty-weights 10,100,1000 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes feedback --sweep feedback:lam=5e-4,5e-3 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes feedback --sweep feedback:mask_pool=receptive $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes rrr,l1grad --sweep rrr:penalty_weight=10 --sweep l1grad:penalty_weight=1000 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes eg@deterministic \
      --sweep eg:penalty_weight=10,100,1000 --sweep eg:lr=1e-3,3e-3 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes eg --sweep eg:penalty_weight=10 --sweep eg:lr=1e-3,3e-3 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes none,rrr@deterministic,l1grad@deterministic \
      --sweep none:lr=3e-3 --sweep rrr:penalty_weight=10 --sweep rrr:lr=3e-3 --sweep l1grad:lr=3e-3 $C
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes augment,rrr,l1grad \
      --sweep augment:lr=3e-3 --sweep rrr:penalty_weight=10 --sweep rrr:lr=3e-3 --sweep l1grad:lr=3e-3 \
      --sweep l1grad:penalty_weight=1000 $C
done
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep.yaml --modes feedback --sweep feedback:mask_pool=receptive --sweep feedback:lr=3e-3,1e-2 $C
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes feedback --sweep feedback:lr=3e-3,1e-2 $C
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --collect-only --overlap none \
    --modes none,feedback,augment,rrr,l1grad,eg,rrr@deterministic,cdep@deterministic,l1grad@deterministic,eg@deterministic,none@deterministic \
    --out results/compare_val
cp results/compare_val/compare.md results/compare_val/compare.csv results/compare_val/compare_sweep.csv experiments/results/baselines/
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes none,none@deterministic $C --jobs 2   # Grad-CAM penalties
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes rrr_gradcam,hint,rrr_gradcam@deterministic,hint@deterministic \
    --penalty-weights 0.1,1,10 $C --jobs 2
cp results/compare_val/compare.md experiments/results/baselines/gradcam_compare.md
cp results/compare_val/compare_sweep.csv experiments/results/baselines/gradcam_compare_sweep.csv
C1="--set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --overlap saliency --overlap-images 2000 --out results/compare_val"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes rbr@deterministic --penalty-weights 0.1,1,10,100 --folds 0 $C1   # RBR
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes rbr --penalty-weights 0.01,0.1,1 --folds 0 $C1
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes none,none@deterministic --folds 0,1,2 $C1
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes none,none@deterministic,rbr,rbr@deterministic \
    --penalty-weights 0.01,0.1,1,10,100 --folds 0,1,2 --collect-only --overlap none --set epochs=8 --set eval_samples=10 \
    --set threads=1 --set validation_decoys=test --out results/compare_val
cp results/compare_val/compare.md experiments/results/baselines/rbr_compare.md
cp results/compare_val/compare_sweep.csv experiments/results/baselines/rbr_compare_sweep.csv
python experiments/benchmark_modes.py --threads 1 --repeats 10 --rounds 3 --variants bayes:none,bayes:rrr,bayes:rbr,det:none,det:rrr,det:rbr
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes feedback --folds 0,1,2 $C1 \
    --set mask_fraction=0.2 --out results/masks20   # masks on 20% of the images
python -m pyro_ebnn.run compare --config configs/color_mnist.yaml --modes none,none@deterministic --folds 0,1,2 \
    --set eval_samples=10 --set threads=1 --overlap none --out results/color_mnist   # ColorMNIST
cp results/color_mnist/compare.md experiments/results/baselines/color_mnist_compare.md
for n in incomplete:0.5 wrong:1.0; do   # feedback of lower quality
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes feedback --folds 0,1,2 $C1 \
      --set feedback_noise=$n --out results/noise_${n%%:*}
done
R=results/compare_val/decoy_mnist_cdep   # how the CDEP networks meet their penalty
python experiments/cdep_diagnostic.py $R/none-deterministic/fold0 $R/cdep-deterministic-w1000/fold0 \
    $R/cdep-deterministic-w10/fold0 $R/rrr-deterministic-w10/fold0
#    two CDEP probes on LeNet, fold 0: weight 10,000; masks on every training image
for s in penalty_weight=10000 mask_fraction=1.0; do
  python -m pyro_ebnn.run train --config configs/decoy_mnist_cdep.yaml --set network=deterministic --mode cdep --fold 0 \
      --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --set $s --out results/cdep_probe/${s%%=*}
done
#    the CDEP rule on [004]'s own CNN and training (configs/decoy_mnist_cdep_cnn.yaml)
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --overlap saliency --overlap-images 2000"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --modes none@deterministic,cdep@deterministic \
    --penalty-weights 1000,10000 $C --set validation_decoys=test --out results/compare_cnn
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --modes none@deterministic,cdep@deterministic \
    $C --set validation_decoys=train --out results/compare_cnn_trainval        # [004]'s selection: training-rule validation
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --modes eg@deterministic \
    --penalty-weights 10,100 $C --set validation_decoys=train --out results/compare_cnn_trainval
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --collect-only --overlap none \
    --modes none@deterministic,cdep@deterministic,eg@deterministic $C --set validation_decoys=train --out results/compare_cnn_trainval
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --modes cdep@deterministic --folds 0 \
    --penalty-weights 10,100 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --out results/cdep_probe/cnn
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --modes cdep@deterministic --penalty-weights 10000 \
    --folds 0,1,2 --set epochs=20 --set eval_samples=10 --set threads=1 --set validation_decoys=test --overlap saliency \
    --overlap-images 2000 --out results/compare_cnn20
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --modes none@deterministic,cdep@deterministic \
    --penalty-weights 10000 --folds 0,1,2 --set epochs=20 --set eval_samples=10 --set threads=1 --set validation_decoys=train \
    --overlap saliency --overlap-images 2000 --out results/compare_cnn20_trainval
#    [004]'s training code: batch 64, weight decay 1e-4, 5 epochs, no decay, standardized inputs,
#    every training image masked, training-rule validation
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep_cnn.yaml --modes none@deterministic,cdep@deterministic \
    --penalty-weights 1000 --folds 0,1,2 --set epochs=5 --set batch_size=64 --set weight_decay=1e-4 --set lr_decay=1.0 \
    --set standardize=true --set mask_fraction=1.0 --set eval_samples=10 --set threads=1 --set validation_decoys=train \
    --overlap saliency --overlap-images 2000 --out results/cnn_repo_m1
cp results/cnn_repo_m1/compare.md experiments/results/baselines/compare_cnn_code_setting.md
cp results/compare_cnn/compare.md experiments/results/baselines/compare_cnn.md
cp results/compare_cnn_trainval/compare.md experiments/results/baselines/compare_cnn_trainval.md
cp results/compare_cnn20/compare.md experiments/results/baselines/compare_cnn20.md
cp results/compare_cnn20_trainval/compare.md experiments/results/baselines/compare_cnn20_trainval.md
R=results/compare_cnn/decoy_mnist_cdep_cnn
python experiments/cdep_diagnostic.py $R/none-deterministic/fold0 $R/cdep-deterministic-w1000/fold0 $R/cdep-deterministic-w10000/fold0

# the Bayesian network's default penalty weights
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes none,rrr,l1grad,cdep,eg --penalty-weights 1,10,100,1000 --folds 0 --set epochs=5 --set max_train_images=20000 --set validation_decoys=test --set threads=1 --overlap none --out results/bayesian_weights

#    every mode on [000]'s position and color rules, 3 folds
for rule in position color; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml \
      --modes none,feedback,none@deterministic,rrr@deterministic,cdep@deterministic,hint@deterministic,rrr_gradcam@deterministic,l1grad@deterministic,augment,rrr \
      --folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
      --overlap saliency --overlap-images 2000 --jobs 2 --out results/rule_tables/$rule
  cp results/rule_tables/$rule/compare.md experiments/results/baselines/rule_${rule}_compare.md
  cp results/rule_tables/$rule/compare.csv experiments/results/baselines/rule_${rule}_compare.csv
done
#    every mode on [001]'s corners rule, 3 folds, and feedback with lam: auto
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test --overlap saliency --overlap-images 2000 --jobs 2"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_corners.yaml \
    --modes none,feedback,rrr,l1grad@deterministic,augment,hint@deterministic $C --out results/rule_tables/corners
python -m pyro_ebnn.run compare --config configs/decoy_mnist_corners.yaml \
    --modes none@deterministic,rrr@deterministic,cdep@deterministic,rrr_gradcam@deterministic $C --out results/rule_tables/corners_more
python -m pyro_ebnn.run compare --config configs/decoy_mnist_corners.yaml --modes feedback --set lam=auto $C \
    --out results/rule_tables/corners_auto
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback --set lam=auto $C \
    --out results/rule_tables/position_auto
for t in corners corners_more corners_auto position_auto; do
  cp results/rule_tables/$t/compare.md experiments/results/baselines/rule_${t}_compare.md
  cp results/rule_tables/$t/compare.csv experiments/results/baselines/rule_${t}_compare.csv
done
#    [000]'s color rule with smaller starting posterior scales, lambda chosen on validation
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
   --overlap saliency --overlap-images 2000 --jobs 2"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes none,feedback $C \
    --sweep none:rho_init=-4,-5 --sweep feedback:rho_init=-4,-5 --out results/color_rho
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes feedback $C --set rho_init=-5 \
    --sweep feedback:lam=0.0005,0.005 --out results/color_rho/lam
python -m pyro_ebnn.run aggregate results/color_rho --by mode,rho_init,lam \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece \
    --out experiments/results/baselines/rule_color_rho
#    [000]'s position rule: lambda, the holes and the pool chosen on validation
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
   --overlap saliency --overlap-images 2000 --jobs 2"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes none,feedback $C \
    --sweep feedback:lam=0.0003,0.003,0.01 --sweep feedback:evidence_holes=own,shared,none --out results/position_grid/max
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback $C \
    --set evidence_holes=shared --set mask_pool=receptive --sweep feedback:lam=0.003,0.01,0.03 --out results/position_grid/receptive
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback $C \
    --set mask_fraction=1.0 --sweep feedback:evidence_holes=own,none,auto --out results/position_grid/all_masks_lam3e-4
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback $C --set lam=0.003 \
    --set mask_fraction=1.0 --sweep feedback:evidence_holes=own,shared,none --out results/position_grid/all_masks_lam3e-3
python -m pyro_ebnn.run aggregate results/position_grid --by mode,lam,evidence_holes,mask_pool,mask_fraction \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece,hole_information \
    --out experiments/results/baselines/rule_position_lam_holes
#    attending channels and the step size chosen on validation, both of [000]'s rules
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
   --overlap saliency --overlap-images 2000 --jobs 2"
F="--sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr $C $F \
    --sweep feedback:lam=0.003,0.01 --sweep feedback:lr=0.001,0.003 --sweep feedback:evidence_channels=all,attending \
    --sweep rrr:lr=0.001,0.003 --out results/position_attending/grid
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback $C $F \
    --sweep feedback:lam=0.03,0.1 --sweep feedback:lr=0.003 --sweep feedback:evidence_channels=attending \
    --out results/position_attending/strong
python -m pyro_ebnn.run aggregate results/position_attending --by mode,lam,lr,evidence_channels \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece,seconds_per_epoch \
    --out experiments/results/baselines/rule_position_attending
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
   --overlap saliency --overlap-images 2000 --jobs 2"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes feedback,rrr,l1grad@deterministic $C \
    --sweep feedback:rho_init=-5 --sweep feedback:lam=0.00005,0.0005,0.005 --sweep feedback:lr=0.003 \
    --sweep feedback:evidence_channels=attending --sweep rrr:lr=0.003 --sweep l1grad:lr=0.001,0.003 \
    --out results/color_attending
python -m pyro_ebnn.run aggregate results/color_attending --by mode,network,lam,lr,evidence_channels \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece,seconds_per_epoch \
    --out experiments/results/baselines/rule_color_attending
#    the chosen settings at 20 epochs
C20="--folds 0,1,2 --set epochs=20 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
     --overlap saliency --overlap-images 2000 --jobs 2"
POSITION_CHOSEN="--sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive --sweep feedback:lam=0.01 \
    --sweep feedback:lr=0.003 --sweep feedback:evidence_channels=attending --sweep rrr:lr=0.003"
COLOR_CHOSEN="--sweep feedback:rho_init=-5 --sweep feedback:lam=0.00005 --sweep feedback:lr=0.003 \
    --sweep feedback:evidence_channels=attending"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr $C20 $POSITION_CHOSEN \
    --out results/rules_20ep/position
python -m pyro_ebnn.run aggregate results/rules_20ep/position --by mode,lam,lr,evidence_channels \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece,best_epoch \
    --out experiments/results/baselines/rule_position_20_epochs
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes feedback,l1grad@deterministic $C20 \
    $COLOR_CHOSEN --sweep l1grad:lr=0.003 --out results/rules_20ep/color
python -m pyro_ebnn.run aggregate results/rules_20ep/color --by mode,network,lam,lr,evidence_channels \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece,best_epoch \
    --out experiments/results/baselines/rule_color_20_epochs
# a weaker prior, N(0, 1), for both chosen settings and RRR (8 epochs: $C of the attending-channel runs)
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr $C $POSITION_CHOSEN \
    --sweep feedback:prior_scale=1 --sweep rrr:prior_scale=1 --out results/prior/position
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes feedback,rrr $C $COLOR_CHOSEN \
    --sweep rrr:lr=0.003 --sweep feedback:prior_scale=1 --sweep rrr:prior_scale=1 --out results/prior/color
python -m pyro_ebnn.run aggregate results/prior --by rule,mode,prior_scale,lam,lr \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece \
    --out experiments/results/baselines/rule_prior_scale
# a tempered posterior: the weights' KL at 0.1 and 0.01 of the ELBO's (kl_scale), 8 and 20 epochs
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr $C $POSITION_CHOSEN \
    --sweep feedback:kl_scale=0.1,0.01 --sweep rrr:kl_scale=0.1,0.01 --out results/kl/position
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes none,feedback $C \
    --sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive --sweep feedback:lam=0.0003,0.001,0.003 \
    --sweep feedback:lr=0.003 --sweep feedback:evidence_channels=attending --sweep feedback:kl_scale=0.1 \
    --sweep none:lr=0.003 --sweep none:kl_scale=0.1 --out results/kl/position_lam
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback $C \
    --sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive --sweep feedback:lam=0.003,0.01 \
    --sweep feedback:lr=0.003 --sweep feedback:evidence_channels=all --sweep feedback:kl_scale=0.1 --out results/kl/position_all
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback $C $POSITION_CHOSEN \
    --sweep feedback:kl_scale=0.1 --sweep feedback:rho_init=-5 --out results/kl/position_rho
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback $C \
    --sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive --sweep feedback:lr=0.003 \
    --sweep feedback:evidence_channels=attending --sweep feedback:kl_scale=0.1 --sweep feedback:lam=0.03,0.1 \
    --out results/kl/position_strong
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr $C20 \
    --sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive --sweep feedback:lam=0.003 \
    --sweep feedback:lr=0.003 --sweep feedback:evidence_channels=all --sweep feedback:kl_scale=0.1 \
    --sweep rrr:lr=0.003 --sweep rrr:kl_scale=0.1 --out results/kl/position_20ep
python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr ${C20/epochs=20/epochs=40} \
    --sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive --sweep feedback:lam=0.003 \
    --sweep feedback:lr=0.003 --sweep feedback:evidence_channels=all --sweep feedback:kl_scale=0.1 \
    --sweep rrr:lr=0.003 --sweep rrr:kl_scale=0.1 --out results/kl/position_40ep
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes feedback,rrr $C $COLOR_CHOSEN \
    --sweep feedback:kl_scale=0.1,0.01 --sweep rrr:lr=0.003 --sweep rrr:kl_scale=0.1 --out results/kl/color
python -m pyro_ebnn.run compare --config configs/decoy_mnist_color.yaml --modes feedback,rrr $C20 $COLOR_CHOSEN \
    --sweep feedback:kl_scale=0.1 --sweep rrr:lr=0.003 --sweep rrr:kl_scale=0.1 --out results/kl/color_20ep
B="--sweep eg:lr=0.003 --sweep eg:penalty_weight=10 --sweep l1grad:lr=0.003"
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes feedback,eg@deterministic,l1grad@deterministic $C20 \
    --sweep feedback:lr=0.003 --sweep feedback:kl_scale=0.1 $B --out results/kl/rrr_20ep
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep.yaml --modes feedback,eg@deterministic,l1grad@deterministic $C20 \
    --sweep feedback:lr=0.003 --sweep feedback:mask_pool=receptive --sweep feedback:kl_scale=0.1 $B --out results/kl/cdep_20ep
python -m pyro_ebnn.run compare --config configs/decoy_mnist_rrr.yaml --modes feedback $C20 --sweep feedback:lr=0.003 \
    --out results/kl/rrr_20ep_untempered
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep.yaml --modes feedback $C20 --sweep feedback:lr=0.003 \
    --sweep feedback:mask_pool=receptive --out results/kl/cdep_20ep_untempered
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep.yaml --modes feedback $C20 --sweep feedback:lr=0.003 \
    --sweep feedback:mask_pool=receptive --sweep feedback:kl_scale=0.1 --sweep feedback:lam=0.0005,0.005 \
    --out results/kl/cdep_20ep_lam
python -m pyro_ebnn.run compare --config configs/decoy_mnist_cdep.yaml --modes feedback,eg@deterministic,l1grad@deterministic \
    ${C20/epochs=20/epochs=40} --sweep feedback:lr=0.003 --sweep feedback:mask_pool=receptive --sweep feedback:kl_scale=0.1 $B \
    --out results/kl/cdep_40ep
python -m pyro_ebnn.run aggregate results/kl --by rule,mode,network,kl_scale,lam,epochs,evidence_channels,rho_init \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,overlap_saliency,ece,best_epoch \
    --out experiments/results/baselines/rule_kl_scale

# ==== docs/results/channels.md: channel-selective against all-channel evidence ([000] rules) ========
for rule in position color; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_$rule.yaml --modes feedback \
      --sweep feedback:evidence_channels=all,attending --folds 0,1,2 --set epochs=8 --set eval_samples=10 \
      --set threads=1 --set validation_decoys=test --out results/channels
done

# ==== docs/results/photos.md: real photographs through the image-folder path =====================
python experiments/shortcut_photos.py --out data/shortcut_photos
python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback,augment \
    --sweep feedback:lam=1e-4,1e-3,1e-2 --folds 0,1,2 --set data_dir=data/shortcut_photos \
    --set threads=1 --set workers=1 --overlap saliency --overlap-images 500 --out results/photos
cp results/photos/compare.md results/photos/compare.csv results/photos/compare_sweep.csv experiments/results/photos/
R=results/photos/image_folder_small
python -m pyro_ebnn.run explain --run $R/none/fold0 --run $R/feedback-lam0.0001/fold0 --run $R/augment/fold0 \
    --out results/photos/explain --n-images 6 --methods saliency,gradcam

#    ResNet-18 against LeNet (5 epochs, fold 0)
python experiments/shortcut_photos.py --task photos --out data/photos
C="python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback --folds 0 --set data_dir=data/photos --set epochs=5 --set threads=1 --jobs 1 --overlap saliency --overlap-images 500"
$C --set architecture=torchvision:resnet18 --set kl_scale=1e-4 --out results/resnet_photos/resnet18
$C --out results/resnet_photos/lenet
$C --modes feedback --set architecture=torchvision:resnet18 --set kl_scale=1e-4 --set evidence_layer=layer1 --out results/resnet_photos/resnet18_layer1
cp results/resnet_photos/lenet/compare.md experiments/results/photos/backbones_lenet.md
cp results/resnet_photos/resnet18/compare.md experiments/results/photos/backbones_resnet18_layer2.md
cp results/resnet_photos/resnet18_layer1/compare.md experiments/results/photos/backbones_resnet18_layer1.md

# ==== docs/results/cost.md: time and memory =======================================================
python experiments/benchmark_modes.py --threads 1 --repeats 50 --rounds 5 --warmup 3 --json experiments/results/cost/benchmark_modes.json
python experiments/profile_step.py --steps 20 > experiments/results/cost/profile_step.txt
python experiments/benchmark_step.py --threads 2 --repeats 200 --json experiments/results/cost/benchmark_step.json
/usr/bin/time -v $EV --run results/protocol/decoy_mnist_position/feedback/fold0 --out results/full_eval --threads 1
python experiments/benchmark_predictive.py --images 2000 --samples 10 --threads 1 --rounds 3 > experiments/results/cost/benchmark_predictive.txt
python experiments/benchmark_alexnet.py --batch 4 --repeats 2 --rounds 3 --samples 20 --images 8 --json experiments/results/cost/benchmark_alexnet.json

# ==== docs/results/annotation.md: selection strategies and simulated annotators ==================
#    one start model per rule (mode none; 20,000 train+val and 5,000 test images), then per seed,
#    strategy, oracle and budget a feedback store and `finetune --feedback` on it (6 epochs);
#    resumes; tables, CSV and figure in experiments/results/annotation/
python experiments/learning_curves.py --root results/annotation --budgets 50,100,200 --out experiments/results/annotation
#    against the annotator's actions (painter, clicker, groups), then the finder on its own
python experiments/learning_curves.py --root results/annotation --actions 5,10,20,50 --annotators groups,clicker,painter --out experiments/results/annotation
python experiments/learning_curves.py --root results/annotation --rules corners,position --actions 100,200 --annotators groups,clicker,painter \
    --out results/actions_100_200   # then copied to experiments/results/annotation/action_curves_100_200.*
#    the finder: 5 actions, fine-tuned 17 epochs with the weight chosen on validation, one process per rule;
#    then the photo task trained from scratch on the finder's stores (train --feedback)
for rule in corners position photos; do
  python experiments/learning_curves.py --root results/annotation --rules $rule --actions 5 --annotators finder \
      --finetune-epochs 17 --finetune-lam auto --out results/finder_e17 &
done; wait
python experiments/learning_curves.py --root results/annotation --rules corners,position,photos --summary-only \
    --actions 5 --annotators finder --finetune-epochs 17 --finetune-lam auto --out experiments/results/annotation/finder
python experiments/learning_curves.py --root results/annotation --rules photos --actions 5 --annotators finder \
    --route train --out experiments/results/annotation/finder
python experiments/propagation.py --root results/annotation --out experiments/results/annotation
#    (the fine-tuning weight's scaling paragraph: the finder of commit d918cb6 and the package of 99ff6f2,
#    `learning_curves.py --actions 5 --annotators finder`, then `finetune --set finetune_lam=auto` on its stores)
python experiments/benchmark_annotate.py --run results/annotation/position/base --images 20 --strategy random
python -m pytest -q -s tests/test_annotate_page.py

# ==== docs/results/baselines.md: feedback of lower quality on the position rule ===================
for n in incomplete:0.5 wrong:1.0; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr,l1grad@deterministic \
      --folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
      --set feedback_noise=$n --overlap saliency --overlap-images 2000 --jobs 2 --out results/rule_noise/position_${n%%:*}
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes hint@deterministic,augment \
      --folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
      --set feedback_noise=$n --overlap saliency --overlap-images 2000 --jobs 2 --out results/rule_noise/position_${n%%:*}_more
done
python -m pyro_ebnn.run aggregate results/rule_noise --by feedback_noise,mode,network \
    --columns balanced_accuracy,worst_group_accuracy,overlap_saliency,ece --out experiments/results/baselines/rule_position_noise
#    CDEP and RRR-G under the same two variants
for n in incomplete:0.5 wrong:1.0; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes cdep@deterministic,rrr_gradcam@deterministic \
      --folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
      --set feedback_noise=$n --overlap saliency --overlap-images 2000 --jobs 2 --out results/rule_noise/position_${n%%:*}_grad
done
python -m pyro_ebnn.run aggregate results/rule_noise --by feedback_noise,mode,network \
    --columns balanced_accuracy,worst_group_accuracy,overlap_saliency,ece --out experiments/results/baselines/rule_position_noise_grad
#    the settings chosen on validation under the same two variants
C="--folds 0,1,2 --set epochs=8 --set eval_samples=10 --set threads=1 --set validation_decoys=test \
   --overlap saliency --overlap-images 2000 --jobs 2"
for n in incomplete:0.5 wrong:1.0; do
  python -m pyro_ebnn.run compare --config configs/decoy_mnist_position.yaml --modes feedback,rrr $C --set feedback_noise=$n \
      --sweep feedback:evidence_holes=shared --sweep feedback:mask_pool=receptive --sweep feedback:lam=0.01 \
      --sweep feedback:lr=0.003 --sweep feedback:evidence_channels=attending --sweep rrr:lr=0.003 \
      --out results/rule_noise_chosen/position_${n%%:*}
done
python -m pyro_ebnn.run aggregate results/rule_noise_chosen --by feedback_noise,mode,lr \
    --columns val_balanced_accuracy,balanced_accuracy,worst_group_accuracy,plugin_balanced_accuracy,overlap_saliency,ece \
    --out experiments/results/baselines/rule_position_noise_chosen

# ==== docs/results/own-images.md: photograph shortcut tasks with the shipped defaults ===============
for t in corner photos moving control textures; do
  python experiments/shortcut_photos.py --task $t --out data/$t
  python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback \
      --folds 0,1,2 --set data_dir=data/$t --jobs 2 --overlap saliency --overlap-images 500 \
      --out results/own_images/$t
done
python experiments/own_images_table.py --root results/own_images --out experiments/results/own_images
# why feedback fails on the moving patch: the patch's effect per network, and the receptive pool
for t in moving control photos; do for k in 0 1 2; do
  python -m pyro_ebnn.run train --config configs/image_folder_small.yaml --set data_dir=data/$t \
      --set mask_pool=receptive --set evidence_channels=all --fold $k --out results/own_images_receptive/$t/fold$k
done; done
for t in moving control photos; do
  python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes feedback --folds 0,1,2 \
      --set data_dir=data/$t --set mask_pool=receptive --jobs 2 --overlap none --out results/own_images_receptive/$t
done
python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes feedback --folds 0,1,2 \
    --set data_dir=data/textures --set evidence_channels=all --jobs 2 --overlap none --out results/own_images_all/textures
# how much the holes the head sees tell the class, before training
for t in corner photos moving control textures; do
  python experiments/hole_information.py --config configs/image_folder_small.yaml --set data_dir=data/$t
done
R=results/own_images/moving/image_folder_small
python experiments/patch_sensitivity.py --task-dir data/moving --run none=$R/none/fold0 --run feedback=$R/feedback/fold0 \
    --run feedback-receptive=results/own_images_receptive/moving/fold0 --out experiments/results/own_images/patch_moving.md
R=results/own_images/corner/image_folder_small
python experiments/patch_sensitivity.py --task-dir data/corner --run none=$R/none/fold0 --run feedback=$R/feedback/fold0 \
    --out experiments/results/own_images/patch_corner.md

# no feedback kept to the end of lam: auto's search: the control with both modes, the seed-0 feedback runs again
python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback --folds 0,1,2 \
    --set data_dir=data/control --jobs 2 --overlap saliency --overlap-images 500 --out results/own_images/control
for t in corner photos textures moving; do
  python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback \
      --folds 0,1,2 --set data_dir=data/$t --jobs 2 --overlap none --out results/own_images/$t
done
python experiments/own_images_table.py --root results/own_images --out experiments/results/own_images/no_feedback_kept
# no feedback kept to the end of lam: auto's search: two 48-px tasks of the other family, 3 folds
python experiments/shortcut_photos.py --task moving --family living --size 48 --patch 8 --colour green --seed 47 --out data/living48
python experiments/shortcut_photos.py --task control --family living --size 48 --seed 47 --out data/control48
for t in living48 control48; do
  python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback --folds 0,1,2 \
      --set data_dir=data/$t --set threads=1 --jobs 2 --overlap none --out results/no_feedback_kept/$t
done
# tasks built after the defaults were fixed, fold 0, the shipped config
python experiments/shortcut_photos.py --task corner --size 96 --patch 20 --seed 11 --out data/new_corner96
python experiments/shortcut_photos.py --task control --size 96 --patch 20 --seed 11 --out data/new_control96
for t in new_corner96 new_control96; do
  python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback --folds 0 \
      --set data_dir=data/$t --jobs 2 --overlap none --out results/new_tasks_shared/$t
done
python experiments/shortcut_photos.py --task moving --family living --size 80 --patch 14 --colour red --seed 23 --out data/living80
python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback --folds 0 \
    --set data_dir=data/living80 --jobs 2 --overlap none --out results/living80
python experiments/shortcut_photos.py --task photos --family grey --size 72 --patch 10 --colour cyan --seed 113 --out data/grey72
python experiments/shortcut_photos.py --task control --family grey --size 72 --seed 114 --out data/ctl72
python experiments/shortcut_digits.py --task clear --seed 7 --out data/digits_clear
python experiments/shortcut_digits.py --task faint --seed 8 --out data/digits_faint
for t in grey72 ctl72 digits_clear digits_faint; do
  python -m pyro_ebnn.run compare --config configs/image_folder_small.yaml --modes none,feedback --folds 0 \
      --set data_dir=data/$t --set threads=1 --jobs 2 --overlap none --out results/untuned/$t
done

# ==== docs/evaluation.md: the warning for a class whose marked test images score apart =============
python experiments/marked_gaps.py --root results/own_images --root results/untuned \
    --out experiments/results/own_images/marked_gaps.md
python -m pyro_ebnn.run evaluate --run results/own_images/corner/image_folder_small/none/fold0 \
    --out results/eval_corner_none --no-attributions
cp results/eval_corner_none/shortcut_groups.png docs/figures/shortcut_groups_corner.png

# ==== docs/tutorial.md: a shortcut fixed in an image folder, played in Chromium =====================
python experiments/shortcut_photos.py --task corner --out data/corner
python -m pyro_ebnn.run train --config configs/image_folder_small.yaml --set data_dir=data/corner --mode none --fold 0 --out runs/corner
python experiments/tutorial.py --run runs/corner --out results/tutorial --figures docs/figures/tutorial

# ==== docs/distributed.md: one process against two ================================================
S="--config configs/decoy_mnist_position.yaml --set epochs=5 --set max_train_images=20000 --set patience=null"
for seed in 0 1; do
  python -m pyro_ebnn.run train $S --set seed=$seed --set threads=2 --set batch_size=128 --out results/dist/p1t2_s$seed
  torchrun --standalone --nproc_per_node 2 -m pyro_ebnn.run train $S --set seed=$seed --set threads=1 --set batch_size=64 --out results/dist/p2_s$seed
  python -m pyro_ebnn.run train $S --set seed=$seed --set threads=1 --set batch_size=128 --out results/dist/p1t1_s$seed
done
