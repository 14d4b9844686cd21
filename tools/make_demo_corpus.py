"""Regenerate the embedded demo NLI corpus in src/korpair/resources/demo_nli.

Run from the repository root:

    python -m tools.make_demo_corpus

The output is deterministic (fixed seed), so re-running it reproduces the
shipped files byte for byte (a test checks this).
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.demo_corpus import write_demo_corpus  # noqa: E402

OUT_DIR = ROOT / "src" / "korpair" / "resources" / "demo_nli"
# Multiples of three, so every split is exactly label-balanced. 24,000 pairs are what two epochs of the demo
# preset see in about two and a half minutes on 2 CPU cores.
N_TRAIN, N_VALIDATION, N_TEST = 24_000, 600, 900
SEED = 0


def gzip_file(path: Path) -> Path:
    """``path`` compressed to ``path.gz`` with no name or time in the header (the same bytes every run), then
    removed: korpair reads ``.jsonl.gz`` as it reads ``.jsonl``, and the package stays small."""
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, open(target, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return target


def main() -> None:
    write_demo_corpus(OUT_DIR, n_train=N_TRAIN, n_validation=N_VALIDATION, n_test=N_TEST, seed=SEED)
    gzip_file(OUT_DIR / "train.jsonl")
    for path in sorted(OUT_DIR.glob("*.jsonl*")):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as fh:
            n = sum(1 for _ in fh)
        print(f"wrote {path.relative_to(ROOT)} ({n} pairs)")


if __name__ == "__main__":
    main()
