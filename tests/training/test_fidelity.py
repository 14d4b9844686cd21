"""Fidelity: korpair's training step is the Hugging Face Trainer's step, loss for loss.

For a classifier (cross-entropy) and for a regression model (one output, MSE,
as ``problem_type="regression"``), and the validation metrics korpair reports
are those scipy and numpy compute from the same predictions.

Same initial weights (a checkpoint loaded with ``from_pretrained``), same
batches in the same order (no shuffling), dropout probability 0 (the model
still has to be in train mode), AdamW with the same weight-decay grouping, the same linear warmup/decay
and gradient clipping, fp32: the per-step training losses of 50 steps must
agree to 1e-4, and so must the learning rate each step used. A difference
means one of the two loops does something the other does not.
"""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from korpair.config import OptimConfig
from korpair.features import LengthGroupedBatchSampler, PairCollator, encode_pairs
from korpair.training.model import train_wordpiece_tokenizer
from korpair.training.task import PairClassificationTask
from korpair.types import LabelMap, Pair, ScoreRange
from tools.sample_corpus import LABELS, generate_pair_task
from tools.sample_sts import generate_sts_pairs

STEPS, BATCH, MAX_LENGTH, PAD_MULTIPLE = 50, 16, 64, 8
OPTIM = OptimConfig(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.999), eps=1e-8, scheduler="linear",
                    warmup_ratio=0.1)
CLIP = 1.0


@pytest.fixture(scope="module", params=["classification", "regression"])
def setup(request, tmp_path_factory):
    """Pairs, tokenizer and one randomly initialised tiny BERT (2 layers, hidden 64), dropout off.

    The model is saved and loaded back as a checkpoint is (``from_pretrained`` returns it in eval mode).
    """
    if request.param == "regression":
        rows = generate_sts_pairs(STEPS * BATCH, seed=11)
        pairs = [Pair(r["sentence1"], r["sentence2"], r["score"]) for r in rows]
        target, head = ScoreRange(0, 5), dict(num_labels=1, problem_type="regression")
    else:
        rows = generate_pair_task(STEPS * BATCH, seed=11)
        pairs = [Pair(r["premise"], r["hypothesis"], r["label"]) for r in rows]
        target, head = LabelMap(LABELS), dict(num_labels=len(LABELS))
    tokenizer = train_wordpiece_tokenizer((t for p in pairs for t in (p.premise, p.hypothesis)), 1000)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        classifier_dropout=0.0, pad_token_id=tokenizer.pad_token_id, max_position_embeddings=128,
                        **head)
    folder = tmp_path_factory.mktemp("init")
    BertForSequenceClassification(config).save_pretrained(folder)
    return pairs, tokenizer, target, BertForSequenceClassification.from_pretrained(folder)


def undecayed(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> set[str]:
    """Names of the parameters that the optimizer does not decay."""
    free = {id(p) for group in optimizer.param_groups if group["weight_decay"] == 0 for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in free}


class _KorpairRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.undecayed: set[str] = set()
        self.train_mode: list[bool] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.undecayed = undecayed(pl_module.model, trainer.optimizers[0])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.train_mode.append(all(m.training for m in pl_module.model.modules()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class _HFRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.undecayed: set[str] = set()
        self.train_mode: list[bool] = []

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        self.undecayed = undecayed(model, optimizer)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
        # the Trainer switches to train mode inside the step, after on_step_begin
        self.train_mode.append(all(m.training for m in model.modules()))

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


def train_korpair(pairs, tokenizer, labels, model) -> _KorpairRecorder:
    feats = encode_pairs(tokenizer, pairs, labels, MAX_LENGTH)
    # The korpair training pipeline's sampler and collator, with shuffling off: batches in file order.
    sampler = LengthGroupedBatchSampler(feats.lengths, BATCH, shuffle=False, group_by_length=False)
    loader = DataLoader(feats, batch_sampler=sampler, collate_fn=PairCollator(tokenizer.pad_token_id, PAD_MULTIPLE))
    recorder = _KorpairRecorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=STEPS,
                        gradient_clip_val=CLIP, callbacks=[recorder], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(PairClassificationTask(model, labels, OPTIM), train_dataloaders=loader)
    return recorder


def train_hf(pairs, tokenizer, labels, model, output_dir) -> _HFRecorder:
    import datasets

    gold = [p.label if isinstance(labels, ScoreRange) else labels.id(p.label) for p in pairs]
    raw = datasets.Dataset.from_dict({"premise": [p.premise for p in pairs],
                                      "hypothesis": [p.hypothesis for p in pairs], "label": gold})
    encoded = raw.map(lambda b: tokenizer(b["premise"], b["hypothesis"], truncation=True, max_length=MAX_LENGTH),
                      batched=True, remove_columns=["premise", "hypothesis"])
    args = TrainingArguments(
        output_dir=str(output_dir), use_cpu=True, max_steps=STEPS, per_device_train_batch_size=BATCH,
        learning_rate=OPTIM.lr, weight_decay=OPTIM.weight_decay, adam_beta1=OPTIM.betas[0],
        adam_beta2=OPTIM.betas[1], adam_epsilon=OPTIM.eps, lr_scheduler_type="linear",
        warmup_steps=OPTIM.warmup_ratio,  # below 1: a fraction of the steps
        max_grad_norm=CLIP, train_sampling_strategy="sequential", logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, dataloader_pin_memory=False, seed=0,
    )
    recorder = _HFRecorder()
    trainer = Trainer(model=model, args=args, train_dataset=encoded, callbacks=[recorder],
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_MULTIPLE))
    trainer.train()
    return recorder


@pytest.fixture
def one_thread():
    # A 64-wide model gains nothing from a second thread, and on a busy 2-core machine two OpenMP
    # threads waiting on each other make each step 10-40x slower: one thread keeps the test < 60 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_korpair_and_hf_trainer_take_the_same_steps(setup, tmp_path, one_thread):
    pairs, tokenizer, labels, model = setup
    ours = train_korpair(pairs, tokenizer, labels, copy.deepcopy(model))
    theirs = train_hf(pairs, tokenizer, labels, copy.deepcopy(model), tmp_path / "hf")

    assert len(ours.losses) == len(theirs.losses) == STEPS
    assert ours.undecayed == theirs.undecayed, "weight decay grouping"
    # dropout is live in training (a loaded checkpoint starts in eval mode; both switch it to train)
    assert all(theirs.train_mode) and all(ours.train_mode), "every training step runs in train mode"
    assert any("LayerNorm" in n for n in ours.undecayed) and any("bias" in n for n in ours.undecayed)
    np.testing.assert_allclose(ours.lrs, theirs.lrs, rtol=1e-6, atol=1e-12, err_msg="learning rate per step")
    # warmup over the first 10% of the steps from 0, then linear decay to 0
    assert ours.lrs[0] == 0.0 and ours.lrs[5] == pytest.approx(OPTIM.lr)
    np.testing.assert_allclose(ours.losses, theirs.losses, rtol=0, atol=1e-4, err_msg="training loss per step")
    # and it learns: the loss of the last steps is well below the first (ln 3 = 1.10; MSE from about 9)
    assert np.mean(ours.losses[-5:]) < np.mean(ours.losses[:5]) - 0.1


def _macro_f1(gold: np.ndarray, predicted: np.ndarray, n: int) -> float:
    scores = []
    for c in range(n):
        tp = np.sum((predicted == c) & (gold == c))
        fp, fn = np.sum((predicted == c) & (gold != c)), np.sum((predicted != c) & (gold == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def test_validation_metrics_are_those_of_scipy_and_numpy(setup, one_thread):
    """The metrics a validation reports, against the same model's outputs scored by scipy and numpy."""
    from scipy.stats import pearsonr, spearmanr

    pairs, tokenizer, target, model = setup
    torch.manual_seed(1)
    with torch.no_grad():  # outputs spread well apart, so that the metrics are far from their trivial values
        for p in model.classifier.parameters():
            p.normal_(0.0, 2.0)
    feats = encode_pairs(tokenizer, pairs[:300], target, MAX_LENGTH)
    loader = DataLoader(feats, batch_sampler=LengthGroupedBatchSampler(feats.lengths, BATCH, shuffle=False,
                                                                       group_by_length=False),
                        collate_fn=PairCollator(tokenizer.pad_token_id, PAD_MULTIPLE))
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    [reported] = trainer.validate(PairClassificationTask(copy.deepcopy(model), target, OPTIM), loader, verbose=False)

    model.eval()
    with torch.no_grad():
        batches = list(loader)
        logits = torch.cat([model(**{k: v for k, v in b.items() if k != "labels"}).logits for b in batches]).numpy()
    gold = torch.cat([b["labels"] for b in batches]).numpy()
    assert reported["val_examples"] == len(gold) == 300
    if isinstance(target, ScoreRange):
        predicted = logits[:, 0]
        assert np.unique(predicted).size > 100 and np.unique(gold).size < 20  # ties in the gold scores
        expected = {"val_spearman": spearmanr(predicted, gold)[0], "val_pearson": pearsonr(predicted, gold)[0],
                    "val_mse": np.mean((predicted - gold) ** 2), "val_mae": np.mean(np.abs(predicted - gold))}
        expected["val_loss"] = expected["val_mse"]
        assert abs(expected["val_spearman"]) > 0.05
    else:
        predicted = logits.argmax(-1)
        expected = {"val_accuracy": np.mean(predicted == gold), "val_macro_f1": _macro_f1(gold, predicted, 3)}
        assert "val_f1" not in reported, "F1 of a positive label only for two labels"
    for name, value in expected.items():
        assert reported[name] == pytest.approx(float(value), abs=1e-5), name


def test_a_constant_prediction_has_correlation_zero_and_no_warning(recwarn):
    from korpair.training.metrics import PearsonCorrelation, SpearmanCorrelation

    for metric in (PearsonCorrelation(), SpearmanCorrelation()):
        metric.update(torch.full((10,), 2.5), torch.arange(10.0))
        assert float(metric.compute()) == 0.0
    task = PairClassificationTask(torch.nn.Linear(1, 1), ScoreRange(0, 5), OPTIM)
    task.val_metrics.update(torch.full((4,), 1.0), torch.tensor([0.0, 1.0, 2.0, 5.0]))
    computed = task.val_metrics.compute()
    assert float(computed["val_spearman"]) == float(computed["val_pearson"]) == 0.0
    assert not [w for w in recwarn if "torchmetrics" in str(w.filename) or "Metric" in str(w.message)], \
        [str(w.message) for w in recwarn]
