"""Experiments: configuration, the run directory, the training loop, training and fine-tuning runs,
evaluation, grids of runs, tables and figures."""
from .config import Config, load_config
from .evaluation import evaluate_run, explain_runs
from .runs import finetune, train

__all__ = ["Config", "load_config", "train", "finetune", "evaluate_run", "explain_runs"]
