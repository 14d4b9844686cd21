"""Scene families about relations: quantifiers over a group, roles and comparisons, states with antonyms.

Phenomena: all / none / some and what each entails about the others
(모두 -> 몇 명은; 아무도 ... 않았다 contradicts 몇 명은), swapped roles
(민수가 지영보다 먼저 도착했다 / 지영이 민수보다 먼저 도착했다), numbers in ages
and scores, and states with their antonyms (열려 있다 / 닫혀 있다, 뜨겁다 / 차갑다).

Each hypothesis is one step from its premise. Two steps that cancel (a swap
with an antonym, 지영은 민수보다 키가 작다; a negated antonym, 닫혀 있지 않다)
ask for an exclusive or of two cues, which the demo's from-scratch model did
not learn in its two epochs: with them, it got these families' other
relations wrong too.
"""

from __future__ import annotations

import random

from tools.korean import NATIVE, Pred, j, other, pick, s
from tools.scene import C, Cand, E, N, Scene
from tools.scenes_daily import CITIES, NAMES


def _now(plain: str, formal: str, polite: str) -> tuple[str, str, str]:
    return (plain, formal, polite)


# ---------------------------------------------------------------------------------------------- quantifiers

# (complement, predicate): what the members did
_DEEDS = {
    "점심을": Pred("먹었", "먹지", adn="먹은"), "우산을": Pred("가져왔", "가져오지", adn="가져온"),
    "시험에": Pred("합격했", "합격하지", adn="합격한"), "숙제를": Pred("냈", "내지", adn="낸"),
    "제시간에": Pred("도착했", "도착하지", adn="도착한"), "투표에": Pred("참여했", "참여하지", adn="참여한"),
    "설문에": Pred("답했", "답하지", adn="답한"), "이름표를": Pred("받았", "받지", adn="받은"),
}
# each group with the deeds that suit it
_GROUPS = {
    "우리 반 학생들": tuple(_DEEDS),
    "팀원들": ("점심을", "우산을", "제시간에", "투표에", "설문에", "이름표를"),
    "손님들": ("점심을", "우산을", "제시간에", "설문에", "이름표를"),
    "동아리 회원들": ("점심을", "우산을", "제시간에", "투표에", "설문에", "이름표를"),
    "직원들": ("점심을", "우산을", "제시간에", "투표에", "설문에", "이름표를"),
    "참가자들": ("점심을", "우산을", "시험에", "제시간에", "설문에", "이름표를"),
    "아이들": ("점심을", "우산을", "숙제를", "제시간에", "이름표를"),
}
# the truth of each hypothesis form given each premise form
_QUANT = {
    "all": {"none": C, "none2": C, "some": E, "some2": E, "some_not": C, "all2": E},
    "none": {"all": C, "all2": C, "some": C, "some2": C, "some_not": E, "none2": E},
    "some": {"all": N, "all2": N, "none": C, "none2": C, "some2": E, "some_not": N},
}


def quantifiers(rng: random.Random) -> Scene:
    frame = pick(rng, tuple(_QUANT))
    group = pick(rng, tuple(_GROUPS))
    what = pick(rng, _GROUPS[group])
    what2 = other(rng, _GROUPS[group], what)
    group2 = other(rng, [g for g, deeds in _GROUPS.items() if what in deeds], group)
    deed, deed2 = _DEEDS[what], _DEEDS[what2]
    e = {"plain": "다", "formal": "습니다", "polite": "어요"}

    def render(r: str) -> tuple[str, list[Cand]]:
        did, didnt = deed.say(r), deed.say(r, neg=True)
        forms = {
            "all": s(j(group, "topic"), "모두", what, did),
            "all2": s(group, "중", what, deed.neg, "않은 사람은 한 명도 없었" + e[r]),
            "none": s(group, "중 아무도", what, didnt),
            "none2": s(group, "중", what, deed.adn, "사람은 한 명도 없었" + e[r]),
            "some": s(group, "중 몇 명은", what, did),
            "some2": s(group, "중", what, deed.adn, "사람이 있었" + e[r]),
            "some_not": s(group, "중 몇 명은", what, didnt),
        }
        cands: list[Cand] = [(form, label, forms[form]) for form, label in _QUANT[frame].items()]
        cands += [("other_deed", N, s(j(group, "topic"), "모두", what2, deed2.say(r))),
                  ("other_group", N, s(j(group2, "topic"), "모두", what, did))]
        return forms[frame], cands

    return Scene("quantifiers", frame, what, render)


# ---------------------------------------------------------------------------------------------- roles

_ADJ = {
    "크": Pred("컸", "크지", _now("크다", "큽니다", "커요"), adj=True),
    "작": Pred("작았", "작지", _now("작다", "작습니다", "작아요"), adj=True),
    "많": Pred("많았", "많지", _now("많다", "많습니다", "많아요"), adj=True),
    "적": Pred("적었", "적지", _now("적다", "적습니다", "적어요"), adj=True),
    "세": Pred("셌", "세지", _now("세다", "셉니다", "세요"), adj=True),
    "약": Pred("약했", "약하지", _now("약하다", "약합니다", "약해요"), adj=True),
    "빠": Pred("빨랐", "빠르지", _now("빠르다", "빠릅니다", "빨라요"), adj=True),
    "느": Pred("느렸", "느리지", _now("느리다", "느립니다", "느려요"), adj=True),
    "어": Pred("어렸", "어리지", _now("어리다", "어립니다", "어려요"), adj=True),
}
# (noun with particle, predicate, antonym)
_ATTRS = (("키가", "크", "작"), ("나이가", "많", "적"), ("힘이", "세", "약"), ("달리기가", "빠", "느"),
          ("목소리가", "크", "작"))
# (verb of an event both took part in): who did it first
_ORDERED = (Pred("도착했", "도착하지"), Pred("출발했", "출발하지"), Pred("일어났", "일어나지"),
            Pred("잠들었", "잠들지"), Pred("숙제를 끝냈", "숙제를 끝내지"))
_WON = Pred("이겼", "이기지")
_LOST = Pred("졌", "지지")
_ROLE_FRAMES = ("compare", "age", "order", "match")


def roles(rng: random.Random) -> Scene:
    frame = pick(rng, _ROLE_FRAMES)
    a = pick(rng, NAMES)
    b = other(rng, NAMES, a)
    c = other(rng, NAMES, a, b)
    if frame == "match":
        a, b, c = (team + "팀" for team in _three(rng, CITIES))
    i = rng.randrange(len(_ATTRS))
    noun, pos, ant = _ATTRS[i]
    if rng.random() < 0.5:
        pos, ant = ant, pos
    noun2, pos2, _ = _ATTRS[other(rng, range(len(_ATTRS)), i)]
    n = rng.randint(1, 9)
    m = other(rng, range(1, 10), n)
    verb = pick(rng, _ORDERED)
    x = rng.randint(1, 5)
    y = rng.randint(0, x - 1)
    z = other(rng, range(0, 8), x)
    slot = {"compare": a, "age": "나이", "order": verb.past, "match": b}[frame]

    def render(r: str) -> tuple[str, list[Cand]]:
        if frame == "compare":
            def cmp(p: str, q: str, adj: str, neg: bool = False, attr: str = noun, role: str = "topic") -> str:
                return s(j(p, role), q + "보다", attr, _ADJ[adj].say(r, past=False, neg=neg))

            return cmp(a, b, pos), [
                ("swap", C, cmp(b, a, pos)), ("restate", E, cmp(a, b, pos, role="subj")),
                ("antonym", C, cmp(a, b, ant)), ("negation", C, cmp(a, b, pos, neg=True)),
                ("third", N, cmp(a, c, pos)), ("third2", N, cmp(c, b, pos)),
                ("other_attr", N, cmp(a, b, pos2, attr=noun2))]
        if frame == "age":
            def age(p: str, q: str, k: int, adj: str, years: bool = True) -> str:
                return s(j(p, "topic"), q + "보다", f"{NATIVE[k]} 살" if years else "나이가",
                         _ADJ[adj].say(r, past=False))

            return age(a, b, n, "많"), [
                ("swap", C, age(b, a, n, "많")),
                ("other_number", C, age(a, b, m, "많")), ("older", E, age(a, b, n, "많", years=False)),
                ("younger", C, age(a, b, n, "적", years=False)), ("third", N, age(c, b, n, "많"))]
        if frame == "order":
            def first(p: str, q: str, adv: str = "먼저") -> str:
                return s(j(p, "subj"), q + "보다" if q else "", adv, verb.say(r))

            return first(a, b), [
                ("swap", C, first(b, a)), ("drop_other", E, first(a, "")), ("antonym", C, first(a, b, "늦게")),
                ("third", N, first(c, a)), ("third2", N, first(b, c))]
        won = _WON.say(r)
        prem = s(j(a, "subj"), j(b, "obj"), j(f"{x}대 {y}", "dir"), won)
        return prem, [
            ("swap", C, s(j(b, "subj"), j(a, "obj"), won)),
            ("antonym", C, s(j(a, "subj"), b + "에게", _LOST.say(r))), ("winner", E, s(j(a, "topic"), "경기에서", won)),
            ("goals", E, s(j(a, "topic"), f"{NATIVE[x]} 골을", "넣었" + r_end(r))),
            ("goals_other", C, s(j(a, "topic"), f"{NATIVE[z]} 골을 넣었" + r_end(r)) if z
             else s(j(a, "topic"), "한 골도 넣지 못했" + r_end(r))),
            ("draw", C, s("두 팀은", "비겼" + r_end(r))), ("crowd", N, s("경기장에는 관중이 많이", "왔" + r_end(r))),
            ("third", N, s(j(c, "subj"), j(b, "obj"), won))]

    return Scene("roles", frame, slot, render)


def _three(rng: random.Random, seq) -> tuple:
    a = pick(rng, seq)
    b = other(rng, seq, a)
    return a, b, other(rng, seq, a, b)


def r_end(r: str) -> str:
    return {"plain": "다", "formal": "습니다", "polite": "어요"}[r]


# ---------------------------------------------------------------------------------------------- states


def _state(past: str, neg: str, now: tuple[str, str, str]) -> Pred:
    return Pred(past, neg, now, adj=True)


_OPEN = _state("열려 있었", "열려 있지", _now("열려 있다", "열려 있습니다", "열려 있어요"))
_SHUT = _state("닫혀 있었", "닫혀 있지", _now("닫혀 있다", "닫혀 있습니다", "닫혀 있어요"))
_ON = _state("켜져 있었", "켜져 있지", _now("켜져 있다", "켜져 있습니다", "켜져 있어요"))
_OFF = _state("꺼져 있었", "꺼져 있지", _now("꺼져 있다", "꺼져 있습니다", "꺼져 있어요"))
_BUSY = Pred("붐볐", "붐비지", _now("붐빈다", "붐빕니다", "붐벼요"))
_QUIET = _state("한산했", "한산하지", _now("한산하다", "한산합니다", "한산해요"))


def _adj(stem_past: str, neg: str, plain: str, formal: str, polite: str) -> Pred:
    return Pred(stem_past, neg, (plain, formal, polite), adj=True)


_HOTTER = _adj("뜨거웠", "뜨겁지", "뜨겁다", "뜨겁습니다", "뜨거워요")
_COOL = _adj("차가웠", "차갑지", "차갑다", "차갑습니다", "차가워요")
_BIG = _adj("컸", "크지", "크다", "큽니다", "커요")
_LONG = _adj("길었", "길지", "길다", "깁니다", "길어요")
# (subjects, predicate, antonym, a predicate unrelated to both or None)
_STATES = (
    (("가게 문", "교실 문", "현관문", "도서관 문"), _OPEN, _SHUT,
     _adj("무거웠", "무겁지", "무겁다", "무겁습니다", "무거워요")),
    (("교실 불", "거실 불", "사무실 불", "복도 불"), _ON, _OFF, None),
    (("창문", "교실 창문", "거실 창문"), _OPEN, _SHUT, _BIG),
    (("커피", "국", "차", "물"), _HOTTER, _COOL,
     _adj("맛있었", "맛있지", "맛있다", "맛있습니다", "맛있어요")),
    (("방", "교실", "거실", "부엌"), _adj("깨끗했", "깨끗하지", "깨끗하다", "깨끗합니다", "깨끗해요"),
     _adj("지저분했", "지저분하지", "지저분하다", "지저분합니다", "지저분해요"),
     _adj("넓었", "넓지", "넓다", "넓습니다", "넓어요")),
    (("가방", "상자", "짐"), _adj("무거웠", "무겁지", "무겁다", "무겁습니다", "무거워요"),
     _adj("가벼웠", "가볍지", "가볍다", "가볍습니다", "가벼워요"), _BIG),
    (("식당", "버스", "지하철", "카페"), _BUSY, _QUIET,
     _adj("시원했", "시원하지", "시원하다", "시원합니다", "시원해요")),
    (("길", "도로", "골목"), _adj("넓었", "넓지", "넓다", "넓습니다", "넓어요"),
     _adj("좁았", "좁지", "좁다", "좁습니다", "좁아요"),
     _adj("어두웠", "어둡지", "어둡다", "어둡습니다", "어두워요")),
    (("시험", "숙제", "문제"), _adj("쉬웠", "쉽지", "쉽다", "쉽습니다", "쉬워요"),
     _adj("어려웠", "어렵지", "어렵다", "어렵습니다", "어려워요"), _LONG),
    (("영화", "수업", "공연"), _adj("재미있었", "재미있지", "재미있다", "재미있습니다", "재미있어요"),
     _adj("지루했", "지루하지", "지루하다", "지루합니다", "지루해요"), _LONG),
)
# intensifiers that suit a state: 활짝 열려 있다, not 아주 열려 있다
_STRONG = {_OPEN: ("활짝",), _SHUT: ("꼭", "굳게"), _ON: ("환하게",), _OFF: ("모두",)}
_STATE_FRAMES = ("now", "past", "strong")


def states(rng: random.Random) -> Scene:
    frame = pick(rng, _STATE_FRAMES)
    subjects, pos, ant, side = pick(rng, _STATES)
    if rng.random() < 0.5:
        pos, ant = ant, pos
    subj = pick(rng, subjects)
    subj2 = other(rng, subjects, subj)
    past = frame == "past"
    when = pick(rng, ("어제", "아까", "어젯밤에는")) if past and rng.random() < 0.6 else \
        ("" if past else pick(rng, ("", "", "지금", "오늘")))
    strong = pick(rng, _STRONG.get(pos, ("아주", "무척", "몹시")))

    def render(r: str) -> tuple[str, list[Cand]]:
        def say(x: str, pred: Pred, neg: bool = False, adv: str = "") -> str:
            return s(when, j(x, "subj"), adv, pred.say(r, past=past, neg=neg))

        prem = say(subj, pos, adv=strong if frame == "strong" else "")
        cands: list[Cand] = [
            ("antonym", C, say(subj, ant)), ("restate", E, s(when, j(subj, "topic"), pos.say(r, past=past))),
            ("negation", C, say(subj, pos, neg=True)), ("other_subject", N, say(subj2, ant)),
            ("other_subject_same", N, say(subj2, pos))]
        if side is not None:
            cands += [("unrelated", N, say(subj, side)), ("neg_unrelated", N, say(subj, side, neg=True))]
        if frame == "strong":
            cands.append(("drop_adverb", E, say(subj, pos)))
        return prem, cands

    return Scene("states", frame, subjects[0], render)
