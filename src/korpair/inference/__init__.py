"""Using a trained model: ``Predictor`` (PyTorch or ONNX Runtime), ONNX export, evaluation
with its metrics and plots."""

from korpair.inference.evaluation import EvalReport, evaluate_pairs
from korpair.inference.predictor import Predictor
from korpair.types import Prediction

__all__ = ["EvalReport", "Predictor", "Prediction", "evaluate_pairs"]
