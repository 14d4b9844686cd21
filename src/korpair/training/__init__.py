"""Fine-tuning: the network (``model``), the Lightning module (``task``), stop-and-resume
(``resume``), the Trainer (``trainer``), the saved folder (``export``) and the run itself (``run.fit``)."""

from korpair.training.run import TrainResult, fit

__all__ = ["TrainResult", "fit"]
