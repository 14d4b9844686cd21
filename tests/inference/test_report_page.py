"""evaluate --report: one self-contained HTML page, opened in a real headless Chromium (conftest's ``browser``): it loads offline, shows each section, reads on a phone, and its numbers are those of metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from korpair import api

SECTIONS = ["요약", "혼동 행렬", "신뢰도 그림 (보정)", "가장 확신한 오답", "가장 자신 없던 정답", "구간별 정확도"]
LABELS = ("entailment", "neutral", "contradiction")
TEXTS = ["민수는 어제 공원에서 자전거를 탔다", "지영은 집에 있지 않았다", "비가 많이 온다", "날씨가 맑다",
         "할머니가 시장에서 아주 싱싱하고 빨간 사과를 한 봉지나 샀다", "<b>굵게</b> & 따옴표 \"쌍\"",
         "회의는 오후 세 시에 끝났다", "선생님은 학생들에게 긴 숙제를 내 주셨고 학생들은 주말 내내 그것을 했다"]


def labelled_file(tmp_path: Path, scores: bool = False) -> Path:
    rows = [{"guid": f"dev-{i:03d}", "premise": a, "hypothesis": b, "source": ("news", "wiki", "reviews")[i % 4 % 3],
             "label": (i % 6) * 1.0 if scores else LABELS[i % 3]}
            for i, (a, b) in enumerate((a, b) for a in TEXTS for b in TEXTS[:5])]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def open_offline(browser, path: Path, **options):
    """The page at ``path`` in a fresh context where every request but the file itself fails."""
    context = browser.new_context(**options)
    requested: list[str] = []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                  else (requested.append(route.request.url), route.abort())[1])
    page = context.new_page()
    page.goto(path.as_uri())
    return context, page, requested


def test_the_report_shows_every_section_with_the_numbers_of_metrics_json(browser, tiny_model_dir, tmp_path):
    report = api.evaluate(tiny_model_dir, labelled_file(tmp_path), output_dir=tmp_path / "eval", report=True)
    metrics = report.metrics
    rows = [json.loads(line) for line in report.predictions_file.read_text(encoding="utf-8").splitlines()]
    context, page, requested = open_offline(browser, report.output_dir / "report.html",
                                            viewport={"width": 390, "height": 844})
    try:
        assert page.locator("h2").all_inner_texts() == SECTIONS
        assert not requested, f"the report asked the network for {requested}"
        for key in ("accuracy", "macro_f1", "ece", "brier", "nll"):
            assert page.locator(f"[data-metric={key}]").inner_text() == f"{metrics[key]:.4f}", key
        assert page.locator("[data-metric=n]").inner_text() == str(metrics["n"])
        cells = page.locator("#confusion table td").all_inner_texts()
        assert [int(c) for c in cells] == [v for row in metrics["confusion_matrix"] for v in row]
        images = page.locator("img")
        assert images.count() == 2
        assert all(page.evaluate("(img) => img.complete && img.naturalWidth > 100", images.nth(i).element_handle())
                   for i in range(2)), "both plots are inlined and decode"

        wrong = sorted((r for r in rows if r["predicted"] != r["gold"]), key=lambda r: -max(r["scores"].values()))
        shown = page.locator("#errors tr").all()[1:]
        assert len(shown) == min(20, len(wrong)) > 0
        first = shown[0].locator("td").all_inner_texts()
        assert first[:4] == [wrong[0]["premise"], wrong[0]["hypothesis"], wrong[0]["gold"], wrong[0]["predicted"]]
        assert page.locator("#unsure tr").count() - 1 == min(20, len(rows) - len(wrong))
        for label in LABELS:
            hits = [r["predicted"] == r["gold"] for r in rows if r["gold"] == label]
            cell = page.locator(f"[data-slice='정답 레이블={label}']").inner_text()
            assert cell == f"{sum(hits) / len(hits):.4f}"
        for source in ("news", "wiki", "reviews"):  # the data's own categorical field is a slice; its ids are not
            hits = [r["predicted"] == r["gold"] for r in rows if r["fields"]["source"] == source]
            assert page.locator(f"[data-slice='source={source}']").inner_text() == f"{sum(hits) / len(hits):.4f}"
        assert page.locator("[data-slice^='guid=']").count() == 0
        assert page.get_by_text("<b>굵게</b>", exact=False).count() > 0, "texts shown as text, never as markup"
        assert page.locator("b", has_text="굵게").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling on a phone"
    finally:
        context.close()


def test_a_similarity_report_lists_the_pairs_missed_by_most(browser, tiny_regressor_dir, tmp_path):
    report = api.evaluate(tiny_regressor_dir, labelled_file(tmp_path, scores=True), output_dir=tmp_path / "sts",
                          report=True)
    context, page, requested = open_offline(browser, report.output_dir / "report.html")
    try:
        assert page.locator("h2").all_inner_texts() == ["요약", "예측 점수와 정답 점수", "가장 크게 빗나간 쌍"]
        assert page.locator("[data-metric=mae]").inner_text() == f"{report.metrics['mae']:.4f}"
        rows = [json.loads(line) for line in report.predictions_file.read_text(encoding="utf-8").splitlines()]
        worst = max(rows, key=lambda r: abs(r["score"] - r["gold"]))
        assert page.locator("#errors tr").nth(1).locator("td").first.inner_text() == worst["premise"]
        assert not requested
    finally:
        context.close()


def test_evaluating_again_without_report_removes_the_old_page(tiny_model_dir, tmp_path):
    data = labelled_file(tmp_path)
    api.evaluate(tiny_model_dir, data, output_dir=tmp_path / "eval", report=True)
    assert (tmp_path / "eval" / "report.html").is_file()
    api.evaluate(tiny_model_dir, data, output_dir=tmp_path / "eval")
    assert not (tmp_path / "eval" / "report.html").exists(), "a page that no longer matches metrics.json"
