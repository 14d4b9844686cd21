"""Using a trained model: ``Predictor`` (one loader for PyTorch, ONNX and int8 ONNX folders, on the
runtime each needs), ONNX export, evaluation with its metrics and plots."""

from korpair.inference.evaluation import EvalReport, evaluate_pairs
from korpair.inference.predictor import Predictor
from korpair.types import Prediction

__all__ = ["EvalReport", "Predictor", "Prediction", "evaluate_pairs"]
