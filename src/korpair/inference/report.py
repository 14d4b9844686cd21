"""``report.html``: one self-contained page a learner reads to see where a model is wrong (``evaluate --report``).

No outside assets (the plots are inlined as PNG data), so it opens offline
and can be mailed; it reads on a phone (one column, tables that scroll).
Sections, with Korean headings: the metrics; the confusion matrix and the
reliability diagram; the errors the model was surest of, with both texts and
every probability; the right answers it was least sure of; and accuracy by
slice (gold label, premise length, annotator agreement, and the data's own
categorical fields such as KLUE's ``source``). A regression model's page shows its
metrics, its scatter plot and the pairs it missed by most. Every number
shown comes from ``metrics.json`` or ``predictions.jsonl`` of the same folder.

Example::

    write_report(Path("runs/demo/eval-demo-test"))    # after evaluate_pairs wrote that folder
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from korpair.atomic import write_text

REPORT_NAME = "report.html"
SHOWN = 20  # examples per list
MAX_GROUPS = 20  # a field with more values than this is not a slice to read
LENGTHS = ((0, 20, "짧음 (20자 이하)"), (21, 40, "보통 (21~40자)"), (41, None, "긺 (41자 이상)"))
STYLE = """
body{font-family:system-ui,"Noto Sans KR","Apple SD Gothic Neo",sans-serif;margin:0 auto;max-width:60rem;
padding:1rem;line-height:1.5;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}.wrong{color:#b00020}.ok{color:#1b5e20}.muted{color:#666;font-size:.85rem}
"""


def write_report(folder: Path) -> Path:
    """Write ``folder/report.html`` from the ``metrics.json``, ``predictions.jsonl`` and plots in ``folder``."""
    folder = Path(folder)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    if metrics.get("task") == "regression":
        body = _regression(metrics, rows, folder)
    else:
        body = _classification(metrics, rows, folder)
    page = (f'<!doctype html>\n<html lang="ko"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>korpair 평가 보고서</title><style>{STYLE}</style></head><body>"
            f"<h1>korpair 평가 보고서</h1><p class=muted>{_e(metrics.get('data', ''))}</p>{body}</body></html>\n")
    path = folder / REPORT_NAME
    write_text(path, page)
    return path


def _classification(metrics: dict, rows: list[dict], folder: Path) -> str:
    cal = metrics.get("calibration") or {}
    summary = [("accuracy", "정확도"), ("macro_f1", "macro-F1"), ("ece", "ECE (15구간)"), ("brier", "Brier"),
               ("nll", "NLL"), ("n", "쌍")]
    parts = [_section("summary", "요약", _numbers(metrics, summary) + _calibration_note(cal))]
    parts.append(_section("confusion", "혼동 행렬", _confusion(metrics) + _image(folder / "confusion_matrix.png")))
    note = "<p class=muted>점이 대각선에 가까울수록, 모델이 말하는 확률을 그대로 믿을 수 있습니다.</p>"
    parts.append(_section("reliability", "신뢰도 그림 (보정)", _image(folder / "reliability_diagram.png") + note))
    for row in rows:
        row["confidence"] = max(row["scores"].values())
    errors = sorted((r for r in rows if r["predicted"] != r["gold"]), key=lambda r: -r["confidence"])[:SHOWN]
    unsure = sorted((r for r in rows if r["predicted"] == r["gold"]), key=lambda r: r["confidence"])[:SHOWN]
    labels = list(rows[0]["scores"]) if rows else []
    parts.append(_section("errors", "가장 확신한 오답", _examples(errors, labels)))
    parts.append(_section("unsure", "가장 자신 없던 정답", _examples(unsure, labels)))
    parts.append(_section("slices", "구간별 정확도", _slices(rows)))
    return "".join(parts)


def _regression(metrics: dict, rows: list[dict], folder: Path) -> str:
    summary = [("pearson", "Pearson"), ("spearman", "Spearman"), ("mse", "MSE"), ("mae", "MAE"), ("n", "쌍")]
    parts = [_section("summary", "요약", _numbers(metrics, summary))]
    parts.append(_section("scatter", "예측 점수와 정답 점수", _image(folder / "predictions_scatter.png")))
    worst = sorted(rows, key=lambda r: -abs(r["score"] - r["gold"]))[:SHOWN]
    table = "".join(f"<tr><td>{_e(r['premise'])}</td><td>{_e(r['hypothesis'])}</td><td class=num>{r['gold']:g}</td>"
                    f"<td class=num>{r['score']:.3f}</td></tr>" for r in worst)
    parts.append(_section("errors", "가장 크게 빗나간 쌍", _table(["전제", "가설", "정답", "예측"], table)))
    return "".join(parts)


def _numbers(metrics: dict, keys: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{name}</th><td class=num data-metric={key}>{_fmt(metrics[key])}</td></tr>"
                    for key, name in keys if metrics.get(key) is not None)
    return f"<div class=scroll><table>{cells}</table></div>"


def _calibration_note(cal: dict) -> str:
    if cal.get("calibrated") is None:
        return "<p class=muted>보정 없음: 모델의 원래 확률입니다.</p>"
    raw, fitted = cal["uncalibrated"], cal["calibrated"]
    state = "적용함" if cal.get("applied") else "적용 안 함"
    return (f"<p class=muted>온도 보정 T={cal['temperature']:.3f} ({state}): ECE {raw['ece']:.4f} → "
            f"{fitted['ece']:.4f}, NLL {raw['nll']:.4f} → {fitted['nll']:.4f}</p>")


def _confusion(metrics: dict) -> str:
    names, matrix = metrics["labels"], metrics["confusion_matrix"]
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = "".join(f"<tr><th>{_e(n)}</th>" + "".join(f"<td class=num>{v}</td>" for v in row) + "</tr>"
                   for n, row in zip(names, matrix))
    return (f"<div class=scroll><table><tr><th>정답 \\ 예측</th>{head}</tr>{body}</table></div>")


def _examples(rows: list[dict], labels: list[str]) -> str:
    if not rows:
        return "<p>없음</p>"
    body = "".join(
        f"<tr><td>{_e(r['premise'])}</td><td>{_e(r['hypothesis'])}</td><td>{_e(r['gold'])}</td>"
        f"<td class={'ok' if r['predicted'] == r['gold'] else 'wrong'}>{_e(r['predicted'])}</td>"
        + "".join(f"<td class=num>{r['scores'][n]:.3f}</td>" for n in labels) + "</tr>" for r in rows)
    return _table(["전제", "가설", "정답", "예측", *labels], body)


def _slices(rows: list[dict]) -> str:
    groups: dict[tuple[str, str], list[bool]] = {}
    categorical = _categorical_fields(rows)
    for r in rows:
        length = len(r["premise"])
        bucket = next(name for low, high, name in LENGTHS if length >= low and (high is None or length <= high))
        kinds = [("정답 레이블", str(r["gold"])), ("전제 길이", bucket)]
        if "agreement" in r:
            kinds.append(("주석자 합의", r["agreement"]))
        kinds += [(name, r["fields"][name]) for name in categorical if name in r.get("fields", {})]
        for kind, value in kinds:
            groups.setdefault((kind, value), []).append(r["predicted"] == r["gold"])
    body = "".join(f"<tr><td>{_e(kind)}</td><td>{_e(value)}</td><td class=num>{len(hits)}</td>"
                   f"<td class=num data-slice='{_e(kind)}={_e(value)}'>{sum(hits) / len(hits):.4f}</td></tr>"
                   for (kind, value), hits in groups.items())
    return _table(["구간", "값", "쌍", "정확도"], body)


def _categorical_fields(rows: list[dict]) -> list[str]:
    """The data's own fields that sort pairs into a few groups (KLUE's source); not ids, which every pair has
    its own of."""
    values: dict[str, set[str]] = {}
    for r in rows:
        for name, value in r.get("fields", {}).items():
            values.setdefault(name, set()).add(value)
    return [name for name, seen in values.items() if 2 <= len(seen) <= MAX_GROUPS and len(seen) <= len(rows) / 2]


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{title}</h2>{content}</section>'


def _table(headers: list[str], body: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<div class=scroll><table><tr>{head}</tr>{body}</table></div>"


def _image(path: Path) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'


def _fmt(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)
