"""Quiet by default (issue 12): loading a model draws no transformers progress bar, an int8 export gives no
ONNX Runtime advice, unless korpair's logger is at DEBUG (``korpair -v``)."""

from __future__ import annotations

import logging

import pytest
from transformers.utils import logging as hf_logging

from korpair.inference import Predictor
from korpair.inference.onnx import export_onnx

LOAD_BAR = "Loading weights"
ADVICE = "pre-processing before quantization"
OPTIMIZER = "word_embedding_table"  # the optimizer's embedding-size heuristics, on a vocabulary under 512


def plain_python(monkeypatch) -> logging.Logger:
    """The root logger as a script that configured no logging has it: pytest's handlers, which it adds for
    each test's call, set aside (so this runs in the test's body)."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    return root


@pytest.fixture
def korpair_verbose():
    logger = logging.getLogger("korpair")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield
    logger.setLevel(level)


def test_loading_a_model_draws_no_progress_bar(tiny_model_dir, capfd):
    assert hf_logging.is_progress_bar_enabled()
    Predictor.from_pretrained(tiny_model_dir, device="cpu")
    out, err = capfd.readouterr()
    assert LOAD_BAR not in out + err
    assert hf_logging.is_progress_bar_enabled(), "the bars are back on for the caller's own use"


def test_at_debug_the_progress_bar_is_shown(tiny_model_dir, capfd, korpair_verbose):
    Predictor.from_pretrained(tiny_model_dir, device="cpu")
    assert LOAD_BAR in capfd.readouterr().err  # so the test above would see it


def test_an_int8_export_gives_no_onnxruntime_advice(tiny_model_dir, tmp_path, capfd, monkeypatch):
    root = plain_python(monkeypatch)
    export_onnx(tiny_model_dir, tmp_path / "int8", quantize=True)
    out, err = capfd.readouterr()
    for line in (LOAD_BAR, ADVICE, OPTIMIZER):
        assert line not in out + err, line
    assert root.handlers == [], "ONNX Runtime's logging.warning did not configure the root logger"
    Predictor.from_pretrained(tmp_path / "int8")
    out, err = capfd.readouterr()
    assert out + err == ""


def test_an_int8_export_keeps_pytests_log_handlers_clean_too(tiny_model_dir, tmp_path, caplog):
    """Where the root logger has handlers (the CLI's, pytest's), the advice does not reach them either."""
    with caplog.at_level(logging.INFO):
        export_onnx(tiny_model_dir, tmp_path / "int8", quantize=True)
    assert not [r for r in caplog.records if ADVICE in r.getMessage() or OPTIMIZER in r.getMessage()]
    assert any("ONNX model (int8) written" in r.getMessage() for r in caplog.records), "korpair's own log stays"


def test_at_debug_the_advice_is_shown(tiny_model_dir, tmp_path, capfd, monkeypatch, korpair_verbose):
    root = plain_python(monkeypatch)
    export_onnx(tiny_model_dir, tmp_path / "int8", quantize=True)
    err = capfd.readouterr().err
    assert ADVICE in err and LOAD_BAR in err
    assert root.handlers == [], "not even when verbose"
