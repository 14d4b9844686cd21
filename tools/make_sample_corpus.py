"""Regenerate the embedded sample NLI corpus in src/korpair/resources/sample_nli.

Run from the repository root:

    python -m tools.make_sample_corpus

The output is deterministic (fixed seed), so re-running it reproduces the
shipped files byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.sample_corpus import write_sample_corpus  # noqa: E402

OUT_DIR = ROOT / "src" / "korpair" / "resources" / "sample_nli"
# Multiples of three, so every split is exactly label-balanced.
N_TRAIN, N_VALIDATION, N_TEST = 900, 150, 150
SEED = 0


def main() -> None:
    write_sample_corpus(OUT_DIR, n_train=N_TRAIN, n_validation=N_VALIDATION,
                        n_test=N_TEST, seed=SEED)
    for name in ("train", "validation", "test"):
        path = OUT_DIR / f"{name}.jsonl"
        with open(path, encoding="utf-8") as fh:
            n = sum(1 for _ in fh)
        print(f"wrote {path.relative_to(ROOT)} ({n} pairs)")


if __name__ == "__main__":
    main()
