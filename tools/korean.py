"""Korean surface forms for the corpus generators: particles, the copula, predicates, registers.

Verb morphology is never produced by string surgery on dictionary forms. A
predicate stores its present forms for every register, its past stem (ending
in ``ㅆ``), its long-negation base (``-지``) and its past adnominal form, and
only regular endings are attached to those: ``-다`` / ``-습니다`` / ``-어요``
after a past stem, ``않았다`` / ``않는다`` / ``않다`` after a ``-지`` base.
Particles and the copula follow the final sound of the word before them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

REGISTERS: tuple[str, ...] = ("plain", "formal", "polite")
_PAST_END = {"plain": "다", "formal": "습니다", "polite": "어요"}

_HANGUL_BASE = 0xAC00
_HANGUL_END = 0xD7A3
# Sino-Korean readings of digits: 영 일 이 삼 사 오 육 칠 팔 구
_DIGIT_HAS_BATCHIM = {"0": True, "1": True, "2": False, "3": True, "4": False,
                      "5": False, "6": True, "7": True, "8": True, "9": False}
_DIGIT_RIEUL = {"1", "7", "8"}


def final(word: str) -> tuple[bool, bool]:
    """(has_batchim, batchim_is_rieul) of the last character of ``word``."""
    ch = word.rstrip()[-1]
    code = ord(ch)
    if _HANGUL_BASE <= code <= _HANGUL_END:
        jong = (code - _HANGUL_BASE) % 28
        return jong != 0, jong == 8
    if ch.isdigit():
        return _DIGIT_HAS_BATCHIM[ch], ch in _DIGIT_RIEUL
    return False, False


def j(word: str, kind: str) -> str:
    """``word`` with a particle chosen by its final sound.

    kind: "topic" (은/는), "subj" (이/가), "obj" (을/를), "with" (과/와),
    "dir" (으로/로; ㄹ-final words take 로).
    """
    batchim, rieul = final(word)
    if kind == "topic":
        return word + ("은" if batchim else "는")
    if kind == "subj":
        return word + ("이" if batchim else "가")
    if kind == "obj":
        return word + ("을" if batchim else "를")
    if kind == "with":
        return word + ("과" if batchim else "와")
    if kind == "dir":
        return word + ("으로" if batchim and not rieul else "로")
    raise ValueError(kind)


def cop(word: str, reg: str, past: bool = False) -> str:
    """``word`` + the copula 이다 in register ``reg``."""
    batchim, _ = final(word)
    if past:
        return word + ("이었" if batchim else "였") + _PAST_END[reg]
    if reg == "plain":
        return word + "이다"
    if reg == "formal":
        return word + "입니다"
    return word + ("이에요" if batchim else "예요")


def not_true(reg: str) -> str:
    """"사실이 아니다" in register ``reg``."""
    return "사실이 " + {"plain": "아니다", "formal": "아닙니다", "polite": "아니에요"}[reg]


@dataclass(frozen=True)
class Pred:
    """A predicate with pre-conjugated pieces.

    now: present forms (plain, formal, polite), empty when the predicate is
    only used in the past; past: past stem ending in ㅆ ("샀"); neg: the
    long-negation base ("사지"); adj: an adjective (plain negative 않다, not
    않는다); adn: past adnominal form ("산"), for "민수가 산 사과".
    """

    past: str
    neg: str
    now: tuple[str, str, str] = ("", "", "")
    adj: bool = False
    adn: str = ""

    def say(self, reg: str, past: bool = True, neg: bool = False) -> str:
        if past:
            return f"{self.neg} 않았{_PAST_END[reg]}" if neg else self.past + _PAST_END[reg]
        if not neg:
            form = self.now[REGISTERS.index(reg)]
            if not form:
                raise ValueError(f"{self.past}-: no present form")
            return form
        if reg == "plain":
            return f"{self.neg} {'않다' if self.adj else '않는다'}"
        return f"{self.neg} {'않습니다' if reg == 'formal' else '않아요'}"


def s(*parts: str) -> str:
    """Join non-empty parts with spaces and end the sentence with a period."""
    return " ".join(p for p in parts if p) + "."


def pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


def other(rng: random.Random, seq, *exclude):
    """An element of ``seq`` that is none of ``exclude``."""
    choices = [x for x in seq if x not in exclude]
    return choices[rng.randrange(len(choices))]


NATIVE = ("", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉", "열")
