"""What a scene family returns, and the labels (shared by the scene modules and the driver)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

E, C, N = "entailment", "contradiction", "neutral"
LABELS: tuple[str, str, str] = (E, C, N)

# (relation, label, hypothesis)
Cand = tuple[str, str, str]


@dataclass(frozen=True)
class Scene:
    """One premise situation: its family, premise frame and main slot, and a renderer.

    ``render(register)`` gives the premise and every hypothesis the scene can
    pair with it, each with its relation name and label. Nothing in
    ``render`` is random, so a scene renders the same in every call.
    ``frame`` names the premise's template; ``slot`` its main filler (an
    activity, an item, a predicate ...): held-out rules match on
    (family, frame, relation, slot).
    """

    family: str
    frame: str
    slot: str
    render: Callable[[str], tuple[str, list[Cand]]]


# A held-out rule: (family, frame, relation, slot); None matches anything.
Rule = tuple[str, "str | None", "str | None", "str | None"]


def held_out(rules: tuple[Rule, ...], family: str, frame: str, relation: str, slot: str) -> bool:
    return any(f == family and fr in (None, frame) and r in (None, relation) and sl in (None, slot)
               for f, fr, r, sl in rules)
