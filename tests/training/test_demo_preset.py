"""The offline demo of README block 1 learns: the `demo` preset, from scratch on the embedded demo corpus, gets
most of its held-out test split right.

The whole preset (two epochs, about two minutes on 2 cores) is what a learner runs first, so it runs
here whole, once."""

from __future__ import annotations

import pytest

from korpair import api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return api.train("demo", overrides=[f"trainer.output_dir={out}", "trainer.progress_bar=false",
                                          f"data.cache_dir={out / 'cache'}"])


def test_the_demo_learns_what_its_test_split_holds_out(demo_model, tmp_path):
    report = api.evaluate(demo_model.model_dir, corpus="demo", split="test", output_dir=tmp_path / "eval")
    # The sample corpus's 900 pairs gave 0.49 (chance is 0.33); see the README for what to expect.
    assert report.metrics["accuracy"] >= 0.75, report.metrics
    assert demo_model.metrics["val_accuracy"] >= 0.78, demo_model.metrics

