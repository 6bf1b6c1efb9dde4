"""The annotation loop ([001] Fig. 1, step 3): which training images to show (selection), the
task of a trained run (images, predictions, explanations, candidate regions), the page a person
answers on (server), simulated annotators (oracle), and one session of all of them (session)."""
from .oracle import ORACLES, answer_with_oracle, oracle_answer
from .selection import STRATEGIES, SelectionError, select
from .server import AnnotateError, create_app, serve
from .session import annotate, default_annotator, finetune_command
from .task import POOL, SAMPLES, AnnotationTask, explanation_maps

__all__ = ["ORACLES", "answer_with_oracle", "oracle_answer", "STRATEGIES", "SelectionError", "select",
           "AnnotateError", "create_app", "serve", "annotate", "default_annotator", "finetune_command", "POOL",
           "SAMPLES", "AnnotationTask", "explanation_maps"]
