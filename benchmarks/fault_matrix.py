"""Kill -9 a real ``korpair train`` at each phase of a run, then ``korpair train --resume auto``: what survives?

Phases, and the moments inside each that a try picks at random (seeded):

* ``encoding``: inside the tokenizer call of the training split or of the validation split, before or after
  it returns (the features cache holds a half-written temporary entry);
* ``epoch``: after a training step in the middle of an epoch;
* ``validation``: after a validation batch, at an epoch's end or in the validation after training;
* ``checkpoint``: inside a checkpoint save (best or last), half of its bytes written, or all written but not
  yet renamed into place;
* ``export``: while the model folder is filled (weights written, tokenizer not), when it is complete but not
  yet renamed into place, or in place with ``metrics.json`` not yet written.

Each try trains into a fresh folder (features cache included), with a command that SIGKILLs itself at the
chosen moment, then runs the same command with ``--resume auto``, as a requeued SLURM job would. The killing
command is korpair's own CLI (``korpair.cli.main``) started by a small wrapper that patches the moment's
function (Trainer callbacks, ``torch.save``, ``os.replace``, an audit hook on ``open``) in that process only:
korpair has no hook of its own, and normal runs pay nothing. Reported per phase:

* ``resumed cleanly``: the resume exits 0 with every step trained (``global_step`` as uninterrupted), a model
  folder whose weights load, ``metrics.json``, and no temporary file or folder left anywhere in the run
  folder, its features cache or ``$TMPDIR``;
* ``same result``: its validation metrics equal the uninterrupted run's (4 decimals);
* ``steps lost``: steps trained before the kill minus the step of the newest good checkpoint after it;
* ``data lost``: a checkpoint damaged under its final name after the kill, or no loadable model after the
  resume.

    python benchmarks/fault_matrix.py                     # 5 phases x 3 tries, ~8 minutes on 2 busy cores
    python benchmarks/fault_matrix.py --tries 1 --phases export checkpoint
    python benchmarks/fault_matrix.py --phases epoch validation --set trainer.checkpoint_every_n_steps=10 \
        --name fault_matrix_every10                       # a resume point every 10 steps too, ~3 minutes

Writes benchmarks/results/fault_matrix.json and fault_matrix.md (``--name``: other names).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, machine_info  # noqa: E402

PHASES = ("encoding", "epoch", "validation", "checkpoint", "export")
TRAIN_PAIRS, VALIDATION_PAIRS, EPOCHS = 960, 192, 2
OVERRIDES = ["model.from_scratch=true", "model.vocab_size=2000", "model.hidden_size=64", "model.num_layers=2",
             "model.num_heads=2", "model.intermediate_size=128", "model.dropout=0.1", "optim.lr=2e-3",
             "trainer.progress_bar=false", f"trainer.max_epochs={EPOCHS}"]
PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])  # this checkout's korpair, and its tools/
TEMPORARY = re.compile(r"^\..+\.(tmp|new|old|del)$|^\.encoding\.|^tmp")

# Runs in the killed process: patches the chosen moment, then hands over to korpair's CLI.
WRAPPER = r'''
import io, json, os, signal, sys
from pathlib import Path

fault = json.loads(os.environ["FAULT"])
out = Path(os.environ["FAULT_OUT"]).resolve()
mark = Path(os.environ["FAULT_MARK"])
phase = fault.get("phase")
seen = {"step": 0, "encodes": 0, "val_batches": 0, "saves": 0}


def record(**extra):
    mark.write_text(json.dumps({**seen, **extra}))


def die(moment):
    record(killed=moment)
    os.kill(os.getpid(), signal.SIGKILL)


import lightning as L
import torch


class Watch(L.Callback):
    def on_train_batch_end(self, trainer, *args, **kwargs):
        seen["step"] = trainer.global_step
        if phase == "epoch" and trainer.global_step == fault["step"]:
            die(f"after training step {trainer.global_step}")

    def on_validation_batch_end(self, trainer, *args, **kwargs):
        if trainer.sanity_checking:
            return
        seen["val_batches"] += 1
        if phase == "validation" and seen["val_batches"] == fault["batch"]:
            die(f"validation batch {seen['val_batches']} (after step {trainer.global_step})")


trainer_init = L.Trainer.__init__


def init(self, *args, callbacks=None, **kwargs):
    trainer_init(self, *args, callbacks=[*(callbacks or []), Watch()], **kwargs)


L.Trainer.__init__ = init

import korpair.features.encode as encode_module

real_encode = encode_module.encode_pairs


def encode_pairs(*args, **kwargs):
    seen["encodes"] += 1
    if phase == "encoding" and seen["encodes"] == fault["call"]:
        if fault["after"]:
            real_encode(*args, **kwargs)
        die(f"tokenizer call {fault['call']}, {'after' if fault['after'] else 'before'} it ran")
    return real_encode(*args, **kwargs)


encode_module.encode_pairs = encode_pairs

real_save = torch.save


def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and "optimizer_states" in obj:  # a Lightning checkpoint
        seen["saves"] += 1
        if phase == "checkpoint" and seen["saves"] == fault["save"]:
            name = Path(os.readlink(f"/proc/self/fd/{f.fileno()}") if hasattr(f, "fileno") else str(f)).name
            if fault["half"]:
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                die(f"checkpoint save {seen['saves']} ({name}) half written")
            real_save(obj, f, *args, **kwargs)
            die(f"checkpoint save {seen['saves']} ({name}) written, not renamed")
    return real_save(obj, f, *args, **kwargs)


torch.save = save

real_replace = os.replace


def replace(src, dst, *args, **kwargs):
    if phase == "export" and Path(os.fsdecode(dst)).resolve() == out / "model":
        if fault["moment"] == "complete":
            die("model folder complete, not yet renamed into place")
        real_replace(src, dst, *args, **kwargs)
        if fault["moment"] == "in place":
            die("model folder in place, metrics.json not written")
        return
    return real_replace(src, dst, *args, **kwargs)


os.replace = replace


def audit(event, args):
    # the model's weights are written, its tokenizer is next
    if (phase == "export" and fault["moment"] == "filling" and event == "open" and isinstance(args[0], str)
            and "/.model." in args[0] and args[0].endswith("tokenizer_config.json")):
        die("model folder half filled (weights written, tokenizer not)")


sys.addaudithook(audit)

import atexit

atexit.register(record)  # a run that was not killed says how far it went
sys.argv = ["korpair", *sys.argv[1:]]
from korpair.cli import main

main()
'''


def make_data(folder: Path) -> list[str]:
    from tools.sample_corpus import generate_pair_task

    rows = generate_pair_task(TRAIN_PAIRS + VALIDATION_PAIRS, seed=11)
    for name, part in (("train", rows[:TRAIN_PAIRS]), ("validation", rows[TRAIN_PAIRS:])):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return ["corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
            f"corpus.validation_file={folder / 'validation.jsonl'}", *OVERRIDES]


def command(data: list[str], out: Path, cache: Path) -> list[str]:
    args = ["train"]
    for item in [*data, f"trainer.output_dir={out}", f"data.cache_dir={cache}"]:
        args += ["--set", item]
    return args


def run_hooked(args: list[str], fault: dict, out: Path, tmpdir: Path, timeout_s: float) -> tuple[int, dict, str]:
    mark = out.parent / "fault.json"
    env = {**os.environ, "FAULT": json.dumps(fault), "FAULT_OUT": str(out), "FAULT_MARK": str(mark),
           "TMPDIR": str(tmpdir), "PYTHONPATH": PYTHONPATH}
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env, cwd=ROOT)
    seen = json.loads(mark.read_text()) if mark.exists() else {}
    return proc.returncode, seen, proc.stderr


def choose(phase: str, index: int, seed: int, counts: dict) -> dict:
    """The ``index``-th try's moment of ``phase``, within what the uninterrupted run went through (``counts``).

    Where a phase has few moments (encoding, checkpoint, export), the tries go through them in a shuffled
    order, so that three tries see three different ones.
    """
    steps_per_epoch = counts["step"] // EPOCHS
    rng = random.Random(f"{seed}-{phase}-{index}")
    if phase == "epoch":
        mid = [s for s in range(1, counts["step"]) if s % steps_per_epoch not in (0, 1, steps_per_epoch - 1)]
        return {"phase": phase, "step": rng.choice(mid)}
    if phase == "validation":
        return {"phase": phase, "batch": rng.randint(1, counts["val_batches"])}
    if phase == "encoding":
        moments = [{"call": c, "after": a} for c in range(1, counts["encodes"] + 1) for a in (False, True)]
    elif phase == "checkpoint":  # from the second save on: there is a previous checkpoint to lose
        moments = [{"save": n, "half": h} for n in range(2, counts["saves"] + 1) for h in (True, False)]
    else:
        moments = [{"moment": m} for m in ("filling", "complete", "in place")]
    random.Random(f"{seed}-{phase}").shuffle(moments)
    return {"phase": phase, **moments[index % len(moments)]}


def checkpoint_step(out: Path) -> tuple[int, list[str]]:
    """The step of the checkpoint a resume would use (the newest good one), and the damaged ones by name.

    Read without korpair's find_resume_checkpoint, which settles leftovers: that is the resume's job.
    """
    import torch

    from korpair.training.resume import checkpoint_problem

    folder, step, damaged = out / "checkpoints", None, []
    for name in ("interrupted.ckpt", "last.ckpt", "best.ckpt"):
        path = folder / name
        if not path.is_file():
            continue
        if checkpoint_problem(path) is not None:
            damaged.append(name)
        elif step is None:
            step = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    return step or 0, damaged


def model_loads(model: Path) -> bool:
    from safetensors.torch import load_file

    try:
        json.loads((model / "config.json").read_text())
        load_file(model / "model.safetensors")
        return True
    except (OSError, ValueError, RuntimeError):
        return False


def temporary_names(*folders: Path) -> list[str]:
    return sorted(str(p.relative_to(folder.parent)) for folder in folders if folder.exists()
                  for p in folder.rglob("*") if TEMPORARY.match(p.name))


def one_try(phase: str, index: int, fault: dict, data: list[str], work: Path, baseline: dict,
            timeout_s: float) -> dict:
    folder = work / f"{phase}-{index}"
    out, cache, tmpdir = folder / "run", folder / "cache", folder / "tmp"
    tmpdir.mkdir(parents=True)
    args = command(data, out, cache)
    started = time.perf_counter()
    rc, seen, stderr = run_hooked(args, fault, out, tmpdir, timeout_s)
    killed = rc == -9
    resume_step, damaged = checkpoint_step(out)
    trained = seen.get("step", 0)
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": PYTHONPATH}
    resumed = subprocess.run([sys.executable, "-m", "korpair", *args, "--resume", "auto"], capture_output=True,
                             text=True, timeout=timeout_s, env=env, cwd=ROOT)
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    loads = model_loads(out / "model")
    leftovers = temporary_names(out, cache, tmpdir)
    same = all(round(metrics.get(k, float("nan")), 4) == round(baseline[k], 4)
               for k in ("val_loss", "val_accuracy", "val_macro_f1"))
    clean = (resumed.returncode == 0 and metrics.get("global_step") == baseline["global_step"] and loads
             and not leftovers)
    return {
        "phase": phase, "try": index, "fault": fault, "killed": killed, "kill_rc": rc,
        "moment": seen.get("killed", "not killed"), "steps_trained": trained, "resumed_from_step": resume_step,
        "steps_lost": max(trained - resume_step, 0) if killed else 0,
        "damaged_checkpoints": damaged, "resume_rc": resumed.returncode,
        "resume_error": _last_line(resumed.stderr) if resumed.returncode else None,
        "global_step": metrics.get("global_step"), "model_loads": loads, "leftovers": leftovers,
        "resumed_cleanly": clean, "same_result": same and clean,
        "data_lost": bool(damaged) or not loads,
        "seconds": round(time.perf_counter() - started, 1),
        "kill_error": None if killed else _last_line(stderr),
    }


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def summarize(tries: list[dict]) -> list[dict]:
    rows = []
    for phase in dict.fromkeys(t["phase"] for t in tries):
        mine = [t for t in tries if t["phase"] == phase]
        lost = [t["steps_lost"] for t in mine]
        rows.append({
            "phase": phase, "tries": len(mine), "killed": sum(t["killed"] for t in mine),
            "resumed_cleanly": sum(t["resumed_cleanly"] for t in mine),
            "same_result": sum(t["same_result"] for t in mine),
            "steps_lost_median": statistics.median(lost), "steps_lost_max": max(lost),
            "data_lost": sum(t["data_lost"] for t in mine),
            "moments": sorted({t["moment"] for t in mine}),
        })
    return rows


def write_report(result: dict, out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    m, b = result["machine"], result["baseline"]
    lines = [
        "# korpair fault matrix: kill -9 at each phase of a run, then `--resume auto`", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}, "
        f"lightning {m['lightning']}. Run: a tiny from-scratch model, {TRAIN_PAIRS} training and "
        f"{VALIDATION_PAIRS} validation pairs, {EPOCHS} epochs = {b['global_step']} steps "
        f"({b['seconds']} s uninterrupted, CLI start included). {result['tries_per_phase']} tries a phase, "
        f"seed {result['seed']}; total {result['seconds']} s, load average {result['load_average']}."
        + (f" Overrides: `{' '.join(result['overrides'])}`." if result["overrides"] else ""), "",
        "| phase | tries | killed | resumed cleanly | same result as uninterrupted | steps lost (median / max) "
        "| data lost |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["phases"]:
        lines.append(f"| {r['phase']} | {r['tries']} | {r['killed']} | {r['resumed_cleanly']} | {r['same_result']} "
                     f"| {r['steps_lost_median']:g} / {r['steps_lost_max']} | {r['data_lost']} |")
    lines += ["", "Each try, the moment of the kill and what followed:", "",
              "| phase | moment | steps trained | resumed from step | damaged checkpoints | resume | leftovers |",
              "|---|---|---:|---:|---|---|---|"]
    for t in result["tries"]:
        resume = "exit 0" if t["resume_rc"] == 0 else f"exit {t['resume_rc']}: {t['resume_error']}"
        lines.append(f"| {t['phase']} | {t['moment']} | {t['steps_trained']} | {t['resumed_from_step']} "
                     f"| {', '.join(t['damaged_checkpoints']) or 'none'} | {resume} "
                     f"| {', '.join(t['leftovers']) or 'none'} |")
    lines += ["", "`resumed cleanly`: the resume exits 0 with every step trained, a model whose weights load, "
              "`metrics.json`, and no temporary file left in the run folder, its features cache or `$TMPDIR`. "
              "`steps lost`: steps trained before the kill minus the step of the newest good checkpoint. "
              "`data lost`: a checkpoint damaged under its final name, or no loadable model after the resume. "
              "Made by `python benchmarks/fault_matrix.py`.", ""]
    (out_dir / f"{name}.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=3, help="tries per phase")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per korpair command")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="fault_matrix", help="the results' file names: NAME.json and NAME.md")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, e.g. trainer.checkpoint_every_n_steps=10")
    args = parser.parse_args()

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="korpair-fault-matrix-"))
    try:
        data = [*make_data(work), *args.set]
        base = work / "baseline"
        (base / "tmp").mkdir(parents=True)
        t0 = time.perf_counter()
        rc, counts, stderr = run_hooked(command(data, base / "run", base / "cache"), {"phase": None},
                                        base / "run", base / "tmp", args.timeout_s)
        if rc != 0:
            sys.exit(f"the uninterrupted run failed (exit {rc}):\n{stderr[-3000:]}")
        baseline = json.loads((base / "run" / "metrics.json").read_text())
        baseline["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"uninterrupted: {baseline['global_step']} steps, {counts}", flush=True)
        tries = []
        for phase in args.phases:
            for index in range(args.tries):
                t = one_try(phase, index, choose(phase, index, args.seed, counts), data, work, baseline, args.timeout_s)
                tries.append(t)
                print(f"{phase} #{index}: {t['moment']}; resumed cleanly {t['resumed_cleanly']}, "
                      f"steps lost {t['steps_lost']}, data lost {t['data_lost']}"
                      + (f"; resume: {t['resume_error']}" if t["resume_error"] else ""), flush=True)
        result = {
            "machine": machine_info(("torch", "lightning", "transformers")),
            "seed": args.seed, "tries_per_phase": args.tries, "overrides": args.set, "load_average": load_average(),
            "baseline": {k: baseline[k] for k in ("global_step", "val_loss", "val_accuracy", "val_macro_f1",
                                                  "seconds")},
            "counts": counts, "phases": summarize(tries), "tries": tries,
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_report(result, args.out, args.name)
        print((args.out / f"{args.name}.md").read_text())
    finally:
        if args.keep:
            print(f"run folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
