"""The demo page as served: ``page.html`` with what the model is written into it.

The page reads a JSON block (``<script id="model-info">``) to choose its look:
probability bars for a classifier, a similarity gauge for a regression model.
Written in when the app is built, so the page shows the right one at once,
without a request.

>>> gauge_range(ScoreRange(0, 5)), gauge_range(ScoreRange()), gauge_range(ScoreRange(None, 1))
((0, 5), (0.0, 5.0), (0.0, 1))
"""

from __future__ import annotations

import json

from korpair.types import ScoreRange

# The block as page.html ships it: a classifier's, which is also what the page assumes without one.
INFO_BLOCK = '<script id="model-info" type="application/json">{"task": "classification"}</script>'


def render_page(html: str, score_range: ScoreRange | None) -> str:
    """``html`` for a classifier (``score_range`` None) or a regression model with that score range."""
    if INFO_BLOCK not in html:
        raise RuntimeError("page.html has lost its model-info block; the page could not tell the task")
    if score_range is None:
        return html
    info = {"task": "regression", "score_range": [score_range.low, score_range.high],
            "gauge": list(gauge_range(score_range))}
    # Numbers only: nothing in it could end the <script> element it sits in.
    return html.replace(INFO_BLOCK, INFO_BLOCK.replace('{"task": "classification"}', json.dumps(info)))


def gauge_range(score_range: ScoreRange) -> tuple[float, float]:
    """The ends the gauge is drawn between: the model's score range, open ends as on the STS scale (0 to 5)."""
    low, high = score_range.low, score_range.high
    if low is None:
        low = 0.0 if high is None or high > 0 else high - 5.0
    if high is None:
        high = 5.0 if low < 5 else low + 5.0
    return low, high
