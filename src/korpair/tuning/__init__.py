"""Hyperparameter search: an Optuna study whose trials are korpair runs (``study.tune``), its search space
(``space``) and its picture (``plots``)."""

from korpair.tuning.study import TuneInterrupted, TuneResult, tune

__all__ = ["TuneInterrupted", "TuneResult", "tune"]
