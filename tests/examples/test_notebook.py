"""The Korean notebook (examples/korpair_nli.ipynb) is stored clean and runs top to bottom in a real Jupyter kernel.

The slow test executes every cell with nbclient, as a user pressing "Run all" would, then checks what the
cells printed and wrote: a model that learned, a tokenized pair, a served answer, a stopped server.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from korpair.config import presets

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "korpair_nli.ipynb"
# The book's steps for pair classification; the tokenizer comes after training because a from-scratch
# model's WordPiece vocabulary is built by the run itself.
CHAPTERS = ("설치", "설정", "말뭉치", "학습", "토크나이저", "평가", "예측", "서빙")
HANGUL = re.compile("[가-힣]")
COLAB_LINK = "https://colab.research.google.com/github/korpair/korpair/blob/main/examples/korpair_nli.ipynb"
KERNEL = "korpair-notebook-test"


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters' (papermill's convention), found {len(tagged)}"
    assert tagged[0].cell_type == "code"
    return tagged[0]


def parameters(nb: nbformat.NotebookNode) -> dict:
    """The names the parameter cell assigns, with their literal values."""
    tree = ast.parse(parameters_cell(nb).source)
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}


def stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.outputs)


def test_the_notebook_is_stored_valid_and_without_outputs():
    nb = read_notebook()
    assert nb.nbformat == 4
    nbformat.validate(nb)
    dirty = [c.id for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, (f"{NOTEBOOK.name}: cells {dirty} hold outputs; clear them before committing "
                       "(Jupyter: Edit > Clear Outputs of All Cells) so diffs show only the code")
    for cell in nb.cells:
        if cell.cell_type == "code":
            ast.parse(cell.source, filename=f"{NOTEBOOK.name}:{cell.id}")  # plain Python: no magics, no typos


def test_the_parameter_cell_comes_first_and_names_real_presets():
    nb = read_notebook()
    cell = parameters_cell(nb)
    params = parameters(nb)
    assert {"PRESET", "OUTPUT_DIR", "EPOCHS"} <= set(params), params
    # papermill injects its values right after this cell: no cell before it may use them
    before = nb.cells[:nb.cells.index(cell)]
    used_early = {name for name in params for c in before if c.cell_type == "code" and name in c.source}
    assert not used_early, f"cells before the parameter cell use {used_early}"
    # the preset it runs and the GPU one its comment offers must both exist
    offered = re.findall(r'PRESET = "([\w-]+)"', cell.source)
    assert params["PRESET"] in offered and "kcbert-klue-nli" in offered, offered
    assert set(offered) <= set(presets()), set(offered) - set(presets())


def test_the_notebook_is_written_in_korean_in_the_books_order():
    nb = read_notebook()
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown and all(HANGUL.search(text) for text in markdown), "every markdown cell should be Korean"
    headings = [line for text in markdown for line in text.splitlines() if line.startswith("## ")]
    assert all(HANGUL.search(h) for h in headings), headings
    found = [next((i for i, h in enumerate(headings) if chapter in h), None) for chapter in CHAPTERS]
    assert None not in found, f"missing chapters: {[c for c, i in zip(CHAPTERS, found) if i is None]}"
    assert found == sorted(found), f"chapters out of order: {headings}"


def test_the_colab_badges_open_this_notebook():
    assert COLAB_LINK in read_notebook().cells[0].source
    assert COLAB_LINK in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture
def this_interpreters_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec that starts this very interpreter, found before any installed one."""
    from ipykernel.kernelspec import write_kernel_spec

    folder = tmp_path / "jupyter"
    write_kernel_spec(folder / "kernels" / KERNEL, overrides={"display_name": "korpair tests"})
    monkeypatch.setenv("JUPYTER_PATH", str(folder))
    return KERNEL


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_and_its_model_learns(tmp_path, monkeypatch, this_interpreters_kernel):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    monkeypatch.setenv("KORPAIR_HOME", str(home))  # the kernel inherits it: caches stay out of the user's home
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = parameters(nb)
    nb.cells.append(new_code_cell("import sys; print(sys.executable)", id="which-python"))
    client = NotebookClient(nb, kernel_name=this_interpreters_kernel, timeout=600,
                            resources={"metadata": {"path": str(work)}})
    client.execute()  # a failing cell raises CellExecutionError with its source and traceback
    cells = {c.id: c for c in nb.cells}

    assert stdout(cells["which-python"]).strip() == sys.executable, "the kernel ran another Python than pytest"

    run = work / params["OUTPUT_DIR"]
    for name in ("model/config.json", "model/model.safetensors", "training_curves.png"):
        assert (run / name).is_file(), f"{run / name} is missing"
    assert (home / "features").is_dir(), "the features cache should be under KORPAIR_HOME"
    assert images(cells["train"]) == 1, "the training curves should be shown"
    labels = set(json.loads((run / "model" / "config.json").read_text(encoding="utf-8"))["id2label"].values())

    tokens = re.search(r"^토큰: (.*)$", stdout(cells["tokenizer"]), re.M).group(1).split()
    types = ast.literal_eval(re.search(r"^token_type_ids: (.*)$", stdout(cells["tokenizer"]), re.M).group(1))
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]", tokens
    second = tokens.index("[SEP]") + 1
    assert types == [0] * second + [1] * (len(tokens) - second), (tokens, types)

    printed = float(re.search(r"정확도\(accuracy\): ([0-9.]+)", stdout(cells["evaluate"])).group(1))
    [metrics_file] = run.glob("eval-*/metrics.json")
    accuracy = json.loads(metrics_file.read_text(encoding="utf-8"))["accuracy"]
    assert printed == pytest.approx(accuracy, abs=5e-4)
    # Three balanced labels: guessing gets 1/3, and a model that learned nothing predicts one label (1/3).
    assert accuracy >= 0.5, f"the notebook's model did not learn: test accuracy {accuracy:.3f}"
    assert images(cells["evaluate"]) == 1, "the confusion matrix should be shown"

    predicted = re.findall(r"→ .* \((\w+), 확률 ([0-9.]+)\)", stdout(cells["predict"]))
    assert len(predicted) >= 3 and all(label in labels and 0 < float(p) <= 1 for label, p in predicted), predicted

    [answer_line] = [line for line in stdout(cells["serve"]).splitlines() if line.startswith("{")]
    answer = json.loads(answer_line)
    assert answer["label"] in labels and set(answer["scores"]) == labels, answer
    assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert "running=False" in stdout(cells["stop"]), "the server should be stopped at the end"
