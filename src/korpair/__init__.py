"""korpair: fine-tune, evaluate and serve Korean sentence-pair classifiers.

Example::

    import korpair
    result = korpair.train("sample")
    korpair.Predictor.from_pretrained(result.model_dir).predict([("비가 온다", "날씨가 맑다")])
"""

from korpair.version import __version__

__all__ = ["__version__", "train", "tune", "evaluate", "predict", "push_to_hub", "Predictor", "Prediction",
           "TrainConfig"]


def __getattr__(name: str):
    # Lazy: `korpair --help` and `import korpair` stay fast; torch loads on first use.
    if name in ("train", "tune", "evaluate", "predict", "push_to_hub"):
        from korpair import api

        return getattr(api, name)
    if name == "Predictor":
        from korpair.inference import Predictor

        return Predictor
    if name == "Prediction":
        from korpair.types import Prediction

        return Prediction
    if name == "TrainConfig":
        from korpair.config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'korpair' has no attribute {name!r}")
