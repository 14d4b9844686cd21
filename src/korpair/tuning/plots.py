"""``search.png``: a study at a glance, the objective of each trial and which parameters mattered.

Left, every trial's value (complete trials as dots, pruned ones as crosses at
their last reported value, failed ones as marks on the axis) and the best
value so far; right, Optuna's parameter importances (fANOVA), once two
trials have completed.
"""

from __future__ import annotations

from pathlib import Path

from korpair.atomic import write_figure


def plot_search(study, path: Path, monitor: str) -> None:
    import optuna
    from matplotlib.figure import Figure  # not pyplot: a notebook's own plots stay as they are

    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})

    complete = [t for t in trials if t.state == state.COMPLETE]
    pruned = [t for t in trials if t.state == state.PRUNED and t.intermediate_values]
    failed = [t for t in trials if t.state == state.FAIL]
    left.scatter([t.number for t in complete], [t.value for t in complete], color="tab:blue", label="complete")
    left.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                 marker="x", color="tab:gray", label="pruned (last validation)")
    if complete:
        better = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
        best, line = None, []
        for t in sorted(complete, key=lambda t: t.number):
            best = t.value if best is None else better(best, t.value)
            line.append((t.number, best))
        line.append((trials[-1].number, best))  # on to the last trial, whatever became of it
        left.step(*zip(*line), where="post", color="tab:orange", label="best so far")
    if failed:
        left.scatter([t.number for t in failed], [0] * len(failed), marker="|", color="tab:red",
                     transform=left.get_xaxis_transform(), label="failed or interrupted")
    left.set(xlabel="trial", ylabel=monitor, title=f"study {study.study_name!r}: {len(trials)} trials")
    left.legend(fontsize="small")
    left.grid(alpha=0.3)

    importances = {}
    if len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # e.g. every complete trial had the same parameters
            importances = {}
    if importances:
        names = list(importances)[::-1]
        right.barh(names, [importances[n] for n in names], color="tab:green")
        right.set(xlabel="importance (fANOVA)", title="what mattered")
    else:
        right.text(0.5, 0.5, "parameter importances need\ntwo complete trials that differ", ha="center",
                   va="center", transform=right.transAxes)
        right.set_axis_off()
    fig.tight_layout()
    write_figure(path, fig)
