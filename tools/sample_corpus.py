"""Deterministic generator for korpair's small embedded Korean NLI corpus.

Every sentence produced here is built from templates and hand-written slot
fillers (people, places, times, activities, weather, prices, quantities, ...)
that were written for korpair.  No sentence is copied or paraphrased from
KLUE-NLI, KorNLI, KorSTS or any other data set.  The generated corpus that
ships in ``korpair/resources/sample_nli`` is licensed together with the
project under the Apache License, Version 2.0.

Design notes
------------
* Verb morphology is never produced by string surgery on dictionary forms.
  Each predicate stores its pre-conjugated pieces (past stem ending in ``ㅆ``,
  long-negation base ``-지``, honorific past stem, adnominal forms, or the full
  present-tense forms for every register), and only regular endings are
  attached (``-다`` / ``-습니다`` / ``-어요`` after a past stem, ``않았다`` after
  a ``-지`` base).
* Particles (은/는, 이/가, 을/를, 와/과, 으로/로) and the copula are chosen from
  the final syllable of the host word.
* One speech register is used per pair: plain (``-다``), formal polite
  (``-습니다``) or informal polite (``-어요``).
* No single surface cue decides the label: some premises are negative, some
  entailed hypotheses contain negation, many contradictions contain none and
  some neutral hypotheses are negative.

Public API: :func:`generate_nli_pairs`, :func:`write_sample_corpus` and
:func:`generate_pair_task`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.corpus_files import label_quotas, write_splits
from tools.korean import cop, final, j, not_true

__all__ = [
    "LABELS",
    "generate_nli_pairs",
    "generate_pair_task",
    "write_sample_corpus",
]

LABELS: tuple[str, str, str] = ("entailment", "contradiction", "neutral")

_REGISTERS: tuple[str, ...] = ("plain", "formal", "polite")
_REGISTER_WEIGHTS: tuple[float, ...] = (0.5, 0.25, 0.25)
_PAST_END = {"plain": "다", "formal": "습니다", "polite": "어요"}


# Hangul helpers (particles by the final sound, the copula) are shared with the demo corpus's generator.
_final, _j, _cop, _not_true = final, j, cop, not_true


# ---------------------------------------------------------------------------
# Predicates with pre-conjugated forms
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _V:
    """A past-tense predicate.

    past: past stem ending in ㅆ ("탔"); neg: long-negation base ("타지");
    hon: honorific past stem ("타셨"); adn / adn_hon: past adnominal forms
    ("탄" / "타신"); neg_hon: honorific negation base when the honorific is
    carried by the main verb ("계시지" for 있다).
    """

    past: str
    neg: str
    hon: str = ""
    adn: str = ""
    adn_hon: str = ""
    neg_hon: str = ""

    def say(self, reg: str, neg: bool = False, hon: bool = False) -> str:
        end = _PAST_END[reg]
        if not neg:
            return ((self.hon or self.past) if hon else self.past) + end
        if hon and self.neg_hon:
            return f"{self.neg_hon} 않았{end}"
        if hon and self.hon:
            return f"{self.neg} 않으셨{end}"
        return f"{self.neg} 않았{end}"

    def rel(self, hon: bool = False) -> str:
        return (self.adn_hon or self.adn) if hon else self.adn


@dataclass(frozen=True)
class _P:
    """A present-tense predicate with explicit forms per register.

    forms: (plain, formal, polite); neg: long-negation base; adj: whether it
    is an adjective (않다) or a verb (않는다) for the plain negative.
    """

    plain: str
    formal: str
    polite: str
    neg: str = ""
    adj: bool = False

    def say(self, reg: str, neg: bool = False) -> str:
        if not neg:
            return {"plain": self.plain, "formal": self.formal, "polite": self.polite}[reg]
        if reg == "plain":
            return f"{self.neg} {'않다' if self.adj else '않는다'}"
        if reg == "formal":
            return f"{self.neg} 않습니다"
        return f"{self.neg} 않아요"


def _s(*parts: str) -> str:
    """Join non-empty parts with spaces and end the sentence with a period."""
    return " ".join(p for p in parts if p) + "."


# Common predicates
_HAD = _V("했", "하지", "하셨", "한", "하신")
_ATE = _V("먹었", "먹지", "드셨", "먹은", "드신")
_DRANK = _V("마셨", "마시지", "드셨", "마신", "드신")
_BOUGHT = _V("샀", "사지", "사셨", "산", "사신")
_SAW = _V("봤", "보지", "보셨", "본", "보신")
_WAS = _V("있었", "있지", "계셨", "있던", "계시던", neg_hon="계시지")
_WENT = _V("갔", "가지", "가셨", "간", "가신")
_LEFT = _V("떠났", "떠나지", "떠나셨", "떠난", "떠나신")
_STAYED = _V("머물렀", "머무르지", "머무르셨", "머무른", "머무르신")
_SLEPT = _V("잤", "자지", "주무셨", "잔", "주무신", neg_hon="주무시지")
_MET = _V("만났", "만나지", "만나셨", "만난", "만나신")
_CAME_BACK = _V("돌아왔", "돌아오지", "돌아오셨", "돌아온", "돌아오신")
_ATTENDED = _V("참석했", "참석하지", "참석하셨", "참석한", "참석하신")
_CAUGHT = _V("걸렸", "걸리지", "걸리셨", "걸린", "걸리신")


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    name: str
    hon: bool = False


_PEOPLE: tuple[_Person, ...] = (
    _Person("민수"), _Person("지영"), _Person("서준"), _Person("하은"),
    _Person("도윤"), _Person("수진"), _Person("현우"), _Person("예린"),
    _Person("준호"), _Person("소연"), _Person("태민"), _Person("유나"),
    _Person("내 동생"), _Person("옆집 아저씨"),
    _Person("할머니", True), _Person("할아버지", True),
    _Person("우리 팀장님", True), _Person("김 선생님", True),
    _Person("박 과장님", True), _Person("이모", True),
)
_PLAIN_NAMES: tuple[str, ...] = tuple(p.name for p in _PEOPLE[:12])

# (phrase used in the premise, the day it falls on)
_TIMES: tuple[tuple[str, str], ...] = (
    ("어제 오후에", "어제"), ("오늘 아침에", "오늘"),
    ("지난 토요일 오후에", "지난 토요일"), ("그저께 저녁에", "그저께"),
    ("지난 일요일 아침에", "지난 일요일"), ("오늘 점심때", "오늘"),
    ("어제 저녁에", "어제"), ("지난 금요일 오후에", "지난 금요일"),
)

# place -> outdoor? (True outdoors, False indoors, None unclear)
_PLACES: dict[str, bool | None] = {
    "공원": True, "강변 산책로": True, "운동장": True, "호숫가": True,
    "도서관": False, "카페": False, "사무실": False, "시장": None,
    "마트": False, "영화관": False, "수영장": None, "바다": True,
    "바닷가": True, "궁궐": True, "분식집": False, "노래방": False,
    "체육관": False, "강가": True, "저수지": True, "빵집": False,
    "연습실": False, "음악실": False, "학교 강당": False,
}

_EXERCISE = ("운동을", _HAD)
_EAT = ("음식을", _ATE)
_DRINK = ("음료를", _DRANK)
_SHOP = ("물건을", _BOUGHT)


@dataclass(frozen=True)
class _Act:
    obj: str
    verb: _V
    gen: tuple[str, _V] | None
    places: tuple[str, ...]


_ACTS: tuple[_Act, ...] = (
    _Act("자전거를", _V("탔", "타지", "타셨", "탄", "타신"), _EXERCISE,
         ("공원", "강변 산책로", "운동장", "호숫가")),
    _Act("책을", _V("읽었", "읽지", "읽으셨", "읽은", "읽으신"), None,
         ("도서관", "카페", "공원")),
    _Act("커피를", _DRANK, _DRINK, ("카페", "사무실", "공원")),
    _Act("축구를", _HAD, _EXERCISE, ("운동장", "공원")),
    _Act("장을", _SAW, _SHOP, ("시장", "마트")),
    _Act("영화를", _SAW, None, ("영화관", "학교 강당")),
    _Act("수영을", _HAD, _EXERCISE, ("수영장", "바다")),
    _Act("사진을", _V("찍었", "찍지", "찍으셨", "찍은", "찍으신"), None,
         ("공원", "바닷가", "궁궐", "호숫가")),
    _Act("김밥을", _ATE, _EAT, ("공원", "분식집", "강변 산책로")),
    _Act("노래를", _V("불렀", "부르지", "부르셨", "부른", "부르신"), None, ("노래방", "음악실")),
    _Act("산책을", _HAD, None, ("공원", "호숫가", "강변 산책로")),
    _Act("배드민턴을", _V("쳤", "치지", "치셨", "친", "치신"), _EXERCISE,
         ("공원", "체육관")),
    _Act("낚시를", _HAD, None, ("강가", "저수지", "바다")),
    _Act("빵을", _BOUGHT, _SHOP, ("빵집", "시장")),
    _Act("피아노를", _V("쳤", "치지", "치셨", "친", "치신"), None, ("연습실", "음악실")),
    _Act("요가를", _HAD, _EXERCISE, ("체육관", "공원")),
    _Act("떡볶이를", _ATE, _EAT, ("분식집", "시장")),
)

_CITIES: tuple[str, ...] = ("서울", "부산", "대구", "인천", "광주", "대전",
                            "제주", "강릉", "춘천", "전주", "여수", "경주")


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


def _other(rng: random.Random, seq, *exclude):
    choices = [x for x in seq if x not in exclude]
    return choices[rng.randrange(len(choices))]


def _reg(rng: random.Random) -> str:
    return rng.choices(_REGISTERS, weights=_REGISTER_WEIGHTS)[0]


# A family samples its slots with ``rng`` and returns a renderer.  The renderer
# uses no randomness: given a register it returns the premise and, for every
# label, one or more groups of candidate hypotheses (a group is picked
# uniformly first, then a hypothesis inside it).
_Groups = dict[str, list[list[str]]]
_Render = Callable[[str], tuple[str, _Groups]]

# Probability that a scene states one of its optional side facts.
_SIDE_P = 0.45


@dataclass(frozen=True)
class _Side:
    """An optional side fact of a scene.

    When the premise states it, ``ent`` hypotheses are entailed and ``con``
    hypotheses contradicted; when it does not, all of them are neutral.  This
    spreads the same hypothesis wording over all three labels.
    """

    ent: list[str]
    con: list[str]


def _result(prem: str, ent: list[str], con: list[str], neu: list[str],
            sides: list[_Side] = (), inc: int = -1) -> tuple[str, _Groups]:
    groups: _Groups = {"entailment": [ent], "contradiction": [con], "neutral": [neu]}
    absent: list[str] = []
    for i, side in enumerate(sides):
        if i == inc:
            groups["entailment"].append(side.ent)
            groups["contradiction"].append(side.con)
        else:
            absent += side.ent + side.con
    groups["neutral"].append(absent)
    return prem, groups


def _side_index(rng: random.Random, n_sides: int) -> int:
    return rng.randrange(n_sides) if n_sides and rng.random() < _SIDE_P else -1


_RELATIVE_DAYS = ("어제", "오늘", "그저께")
_WEEK_DAYS = ("지난 금요일", "지난 토요일", "지난 일요일")


def _other_day(rng: random.Random, day: str) -> str:
    """A day that is certainly different from ``day``."""
    group = _RELATIVE_DAYS if day in _RELATIVE_DAYS else _WEEK_DAYS
    return _other(rng, group, day)


def _day_adv(day: str) -> str:
    return day + "에" if day.startswith("지난") else day


_WORE = _V("썼", "쓰지", "쓰셨")
_TOOK = _V("가져갔", "가져가지", "가져가셨")
_GOT_HOME = _V("귀가했", "귀가하지", "귀가하셨")
_GOOD_MOOD = _V("좋았", "좋지", "좋으셨")


# ---------------------------------------------------------------------------
# Family 1: someone did an activity at a place at a time
# ---------------------------------------------------------------------------


def _fam_activity(rng: random.Random) -> _Render:
    p = _pick(rng, _PEOPLE)
    t, day = _pick(rng, _TIMES)
    other_day = _other_day(rng, day)
    act = _pick(rng, _ACTS)
    place = _pick(rng, act.places)
    other_place = _other(rng, act.places, place)  # every activity has >= 2 places
    comp = _other(rng, _PEOPLE, p)
    inc = _side_index(rng, 6)
    h = p.hon
    top, sub = _j(p.name, "topic"), _j(p.name, "subj")

    def render(reg: str):
        e = _PAST_END[reg]
        v = act.verb
        did, didnt = v.say(reg, hon=h), v.say(reg, neg=True, hon=h)
        together = _j(comp.name, "with") + " 함께"
        lead = {0: together, 1: "처음으로", 2: "모자를 쓰고",
                3: "휴대폰을 집에 두고 나가서"}.get(inc, "")
        if inc == 4:
            prem = _s(top, "기분 전환을 하려고", t, place + "에서", act.obj, did)
        else:
            prem = _s(top, t, lead, place + "에서", act.obj, did)
        if inc == 5:
            prem += " " + _s("그리고 밤늦게 집에", _CAME_BACK.say(reg, hon=h))
        sides = [
            _Side([_s(_j(comp.name, "topic"), t, place + "에", _WAS.say(reg, hon=comp.hon)),
                   _s(top, together, act.obj, did)],
                  [_s(top, t, "혼자", act.obj, did)]),
            _Side([_s(top, "전에는", place + "에서", act.obj, v.rel(h), "적이 없었" + e)],
                  [_s(top, "전에도", place + "에서", act.obj, v.rel(h), "적이 있었" + e)]),
            _Side([_s(top, t, "모자를", _WORE.say(reg, hon=h))],
                  [_s(top, t, "모자를", _WORE.say(reg, neg=True, hon=h))]),
            _Side([_s(top, t, "휴대폰을", _TOOK.say(reg, neg=True, hon=h))],
                  [_s(top, t, "휴대폰을", _TOOK.say(reg, hon=h))]),
            _Side([_s(sub, act.obj, v.rel(h), "것은 기분 전환을 하기", _cop("위해서", reg, past=True))],
                  []),
            _Side([_s(top, day, "밤늦게", _GOT_HOME.say(reg, hon=h))],
                  [_s(top, day, "저녁 일곱 시 전에 집에", _CAME_BACK.say(reg, hon=h))]),
        ]
        ent = [
            _s(top, act.obj, did),
            _s(top, place + "에서", act.obj, did),
            _s(top, _day_adv(day), act.obj, did),
            _s(top, t, place + "에", _WAS.say(reg, hon=h)),
            _s(top, t, "집에", _WAS.say(reg, neg=True, hon=h)),
            _s(t, place + "에서", act.obj, v.rel(), "사람이 있었" + e),
        ]
        if act.gen is not None:
            ent.append(_s(top, t, act.gen[0], act.gen[1].say(reg, hon=h)))
        if _PLACES[place] is True:
            ent.append(_s(top, t, "바깥에", _WAS.say(reg, hon=h)))
        elif _PLACES[place] is False:
            ent.append(_s(top, t, "실내에", _WAS.say(reg, hon=h)))
        con = [
            _s(top, t, act.obj, didnt),
            _s(top, t, place + "에서", act.obj, didnt),
            _s(top, day, "하루 종일 집에만", _WAS.say(reg, hon=h)),
            _s(top, t, "집에서",
               "주무시고 계셨" + e if h else "낮잠을 자고 있었" + e),
            _s(sub, t, act.obj, v.rel(h), "곳은", _cop(other_place, reg, past=True)),
            _s(t, place + "에서", act.obj, v.rel(), "사람은 아무도 없었" + e),
            _s(t, place + "에서는 아무도", act.obj, v.say(reg, neg=True)),
            _s(top, t, together, other_place + "에서", act.obj, did),
            _s(top, "기분 전환을 하려고", t, other_place + "에서", act.obj, did),
            _s(top, t, "처음으로", other_place + "에서", act.obj, did),
        ]
        neu = [
            _s(top, other_day, "하루 종일 집에만", _WAS.say(reg, hon=h)),
            _s(t, other_place + "에서는 아무도", act.obj, v.say(reg, neg=True)),
            _s(t, other_place + "에서", act.obj, v.rel(), "사람은 아무도 없었" + e),
            _s(top, _day_adv(other_day), act.obj, did),
            _s(top, _day_adv(other_day), act.obj, didnt),
            _s(sub, _day_adv(other_day), act.obj, v.rel(h), "곳은",
               _cop(other_place, reg, past=True)),
            _s(top, t, "기분이 무척", _GOOD_MOOD.say(reg, hon=h)),
        ]
        return _result(prem, ent, con, neu, sides, inc)

    return render


# ---------------------------------------------------------------------------
# Family 2: weather (gradable antonyms, rain)
# ---------------------------------------------------------------------------

_WEATHER_TIMES = ("어제", "오늘 오후", "지난 주말", "그저께", "지난 월요일", "오늘 아침")

# (pos, pos adnominal, antonym, antonym adnominal, intensifier)
_WEATHER = (
    (_V("더웠", "덥지"), "더운", _V("추웠", "춥지"), "추운", "무척"),
    (_V("맑았", "맑지"), "맑은", _V("흐렸", "흐리지"), "흐린", "하루 종일"),
    (_V("따뜻했", "따뜻하지"), "따뜻한", _V("쌀쌀했", "쌀쌀하지"), "쌀쌀한", "꽤"),
    (_V("습했", "습하지"), "습한", _V("건조했", "건조하지"), "건조한", "몹시"),
)
_RAINED = _V("내렸", "내리지")
_CAME = _V("왔", "오지")
_CLEAR = _V("맑았", "맑지")


def _fam_weather(rng: random.Random) -> _Render:
    t = _pick(rng, _WEATHER_TIMES)
    city = _pick(rng, _CITIES)
    other_city = _other(rng, _CITIES, city)
    kind = rng.randrange(len(_WEATHER) + 1)  # last index = rain
    negative = rng.random() < 0.35
    swap = rng.random() < 0.5
    resident = _pick(rng, _PEOPLE)
    inc = _side_index(rng, 4)
    top, otop = _j(city, "topic"), _j(other_city, "topic")
    loc = city + "에는"

    def render(reg: str):
        e = _PAST_END[reg]
        rh = resident.hon
        side_sents = [
            _s("그날", city + "에서는 축제가 열렸" + e),
            _s("그날", city + "에 사는", _j(resident.name, "topic"), "감기에", _CAUGHT.say(reg, hon=rh)),
            _s("그날", loc, "관광객이", _V("많았", "많지").say(reg)),
            _s("그날", city + "의 놀이공원은 문을", _V("열었", "열지").say(reg, neg=True)),
        ]
        sides = [
            _Side([_s(t, city + "에서 축제가 있었" + e)],
                  [_s(t, city + "에서는 아무 축제도", _V("열렸", "열리지").say(reg, neg=True))]),
            _Side([_s(_j(resident.name, "topic"), t, "감기에", _CAUGHT.say(reg, hon=rh))],
                  [_s(_j(resident.name, "topic"), t, "감기에", _CAUGHT.say(reg, neg=True, hon=rh))]),
            _Side([_s(t, loc, "관광객이", _V("적었", "적지").say(reg, neg=True))],
                  [_s(t, loc, "관광객이 거의 없었" + e)]),
            _Side([_s(t, city + "의 놀이공원은 문을", _V("닫았", "닫지").say(reg))],
                  [_s(t, city + "의 놀이공원은 평소처럼 문을", _V("열었", "열지").say(reg))]),
        ]

        def finish(prem, ent, con, neu):
            if inc >= 0:
                prem += " " + side_sents[inc]
            return _result(prem, ent, con, neu, sides, inc)

        if kind == len(_WEATHER):  # rain
            if not negative:
                prem = _s(t, loc, "하루 종일 비가", _RAINED.say(reg))
                ent = [_s(t, loc, "비가", _CAME.say(reg)),
                       _s(t, city + "의 하늘은", _CLEAR.say(reg, neg=True))]
                con = [_s(t, loc, "비가 한 방울도", _RAINED.say(reg, neg=True)),
                       _s(t, top, "하루 종일", _CLEAR.say(reg))]
                neu = [_s(t, loc, "천둥도", _V("쳤", "치지").say(reg)),
                       _s(t, other_city + "에는 비가 한 방울도", _RAINED.say(reg, neg=True)),
                       _s(t, otop, "하루 종일", _CLEAR.say(reg))]
            else:
                prem = _s(t, loc, "비가 전혀", _CAME.say(reg, neg=True))
                ent = [_s(t, loc, "비가", _RAINED.say(reg, neg=True)),
                       _s(t, city + "에서는 우산이 필요", _V("없었", "없지").say(reg))]
                con = [_s(t, loc, "비가 많이", _RAINED.say(reg)),
                       _s(t, loc, "하루 종일 비가", _CAME.say(reg))]
                neu = [_s(t, top, "무척", _V("더웠", "덥지").say(reg)),
                       _s(t, other_city + "에는 비가 많이", _RAINED.say(reg))]
            return finish(prem, ent, con, neu)

        pos, pos_adn, ant, ant_adn, adv = _WEATHER[kind]
        if swap:
            pos, pos_adn, ant, ant_adn = ant, ant_adn, pos, pos_adn
        neu = [_s(t, otop, ant.say(reg)), _s(t, otop, pos.say(reg, neg=True))]
        if not negative:
            prem = _s(t, top, adv, pos.say(reg))
            ent = [_s(t, top, pos.say(reg)),
                   _s(t, top, ant.say(reg, neg=True)),
                   _s(t, city + "의 날씨는", pos.say(reg))]
            con = [_s(t, top, ant.say(reg)),
                   _s(t, top, adv, ant.say(reg)),
                   _s(t, top, pos.say(reg, neg=True))]
        else:
            prem = _s(t, top, "그다지", pos.say(reg, neg=True))
            ent = [_s(t, city + "의 날씨는", pos.say(reg, neg=True)),
                   _s(t, top, pos_adn, "날씨가", "아니었" + e)]
            con = [_s(t, top, adv, pos.say(reg)),
                   _s(t, city + "의 날씨는 몹시", pos.say(reg))]
            neu.append(_s(t, otop, adv, pos.say(reg)))
        return finish(prem, ent, con, neu)

    return render


# ---------------------------------------------------------------------------
# Family 3: prices (present tense)
# ---------------------------------------------------------------------------

# (item, unit, base price, shops)
_ITEMS = (
    ("아메리카노", "한 잔", 4500, ("역 앞 카페", "회사 근처 카페")),
    ("김밥", "한 줄", 3500, ("학교 앞 분식집", "시장 입구 가게")),
    ("떡볶이", "1인분", 5000, ("학교 앞 분식집", "시장 입구 가게")),
    ("운동화", "한 켤레", 89000, ("역 앞 신발 가게", "동네 마트")),
    ("우산", "하나", 12000, ("동네 마트", "역 앞 편의점")),
    ("수박", "한 통", 25000, ("동네 마트", "시장 입구 가게")),
    ("공책", "한 권", 2000, ("학교 앞 문구점", "동네 마트")),
    ("칼국수", "한 그릇", 9000, ("회사 근처 식당", "시장 입구 가게")),
    ("샌드위치", "하나", 5500, ("역 앞 카페", "역 앞 편의점")),
    ("꽃다발", "하나", 30000, ("동네 꽃집", "역 앞 꽃집")),
)

_SELLS = _P("판다", "팝니다", "팔아요", "팔지")
_CHEAPER = _P("싸다", "쌉니다", "싸요", "싸지", adj=True)
_EXCEEDS = _P("넘는다", "넘습니다", "넘어요", "넘지")
_CAN_BUY = _P("살 수 있다", "살 수 있습니다", "살 수 있어요")
_CANNOT_BUY = _P("살 수 없다", "살 수 없습니다", "살 수 없어요")
_CLOSES = _P("닫는다", "닫습니다", "닫아요", "닫지")
_OPEN_BIZ = _P("영업한다", "영업합니다", "영업해요", "영업하지")
_MANY = _P("많다", "많습니다", "많아요", "많지", adj=True)
_NONE = _P("없다", "없습니다", "없어요")
_WORKS = _P("된다", "됩니다", "돼요", "되지")
_CAN_PAY = _P("계산할 수 있다", "계산할 수 있습니다", "계산할 수 있어요")
_ONLY_CASH = _P("현금으로만 계산할 수 있다", "현금으로만 계산할 수 있습니다",
                "현금으로만 계산할 수 있어요")


def _won(x: int) -> str:
    return f"{x:,}원"


def _fam_price(rng: random.Random) -> _Render:
    item, unit, base, shops = _pick(rng, _ITEMS)
    shop = _pick(rng, shops)
    other_shop = _other(rng, shops, shop)
    step = 500 if base < 20000 else 1000
    price = max(step, round(base * rng.choice((0.8, 0.9, 1.0, 1.1, 1.2)) / step) * step)
    hi = price + step * rng.randint(1, 4)
    hi2 = price + step * rng.randint(0, 3)
    lo = max(step, price - step * rng.randint(1, 3))
    other = price + step * rng.choice((-2, -1, 1, 2, 3))
    if other <= 0:
        other = price + step
    variant = rng.randrange(3)  # 0, 1: affirmative phrasings; 2: negative premise
    card_ok = rng.random() < 0.5
    inc = _side_index(rng, 2 if variant == 2 else 4)
    top_item = _j(item, "topic")
    shop_of = shop + "의"
    shop_top = _j(shop, "topic")

    def render(reg: str):
        side_sents = [
            _s(shop + "에서는 카드 결제가", _WORKS.say(reg, neg=not card_ok)),
            _s(shop_top, "밤 열 시에 문을", _CLOSES.say(reg)),
            _s(shop_of, top_item, "인기가", _MANY.say(reg)),
            _s(shop_of, item, "값은 작년보다", _V("올랐", "오르지").say(reg)),
        ]
        card_yes = _s(shop + "에서는 카드로", _CAN_PAY.say(reg))
        card_no = _s(shop + "에서는 카드 결제가", _WORKS.say(reg, neg=True))
        sides = [
            _Side([card_yes], [card_no]) if card_ok else
            _Side([_s(shop + "에서는", _ONLY_CASH.say(reg))], [card_yes]),
            _Side([_s(shop_top, "밤 열한 시에는", _OPEN_BIZ.say(reg, neg=True))],
                  [_s(shop_top, "밤 열두 시까지", _OPEN_BIZ.say(reg))]),
            _Side([_s(shop + "에서", _j(item, "obj"), "찾는 손님이", _MANY.say(reg))],
                  [_s(shop_of, top_item, "인기가", _NONE.say(reg))]),
            _Side([_s(shop_of, top_item, "작년에는 지금보다", _V("쌌", "싸지").say(reg))],
                  [_s(shop_of, item, "값은 작년보다", _V("내렸", "내리지").say(reg))]),
        ]
        if variant == 2:
            sides = sides[:2]
        neu = [
            _s(other_shop + "에서는", _j(item, "obj"), _SELLS.say(reg, neg=True)),
            _s(other_shop + "의", top_item, unit + "에", _cop(_won(other), reg)),
        ]
        if variant == 2:
            prem = _s(shop + "에서는", _j(item, "obj"), _SELLS.say(reg, neg=True))
            ent = [_s(shop + "에서는", _j(item, "obj"), _CANNOT_BUY.say(reg))]
            con = [_s(shop_of, top_item, unit + "에", _cop(_won(price), reg)),
                   _s(shop + "에서", _j(item, "obj"), _SELLS.say(reg))]
        else:
            if variant == 0:
                prem = _s(shop_of, top_item, unit + "에", _cop(_won(price), reg))
            else:
                prem = _s(shop + "에서", item, _j(unit, "topic"), _cop(_won(price), reg))
            ent = [
                _s(shop_of, top_item, unit + "에", _won(hi) + "보다", _CHEAPER.say(reg)),
                _s(shop_of, item, "값은", _j(_won(hi2), "obj"), _EXCEEDS.say(reg, neg=True)),
                _s(shop + "에서는", _j(_won(price), "dir"), item, _j(unit, "obj"),
                   _CAN_BUY.say(reg)),
                _s(shop + "에서", _j(item, "obj"), _SELLS.say(reg)),
            ]
            con = [
                _s(shop_of, top_item, unit + "에", _cop(_won(other), reg)),
                _s(shop_of, top_item, unit + "에", _won(lo) + "보다", _CHEAPER.say(reg)),
                _s(shop_of, item, "값은", _j(_won(lo), "obj"), _EXCEEDS.say(reg, neg=True)),
                _s(shop + "에서는", _j(item, "obj"), _SELLS.say(reg, neg=True)),
            ]
        if inc >= 0:
            prem += " " + side_sents[inc]
        return _result(prem, ent, con, neu, sides, inc)

    return render


# ---------------------------------------------------------------------------
# Family 4: attendance counts
# ---------------------------------------------------------------------------

_GATHERINGS = ("오늘 회의", "어제 동아리 모임", "지난 토요일 독서 모임",
               "어제 저녁 세미나", "지난주 동창회", "어젯밤 생일 파티",
               "지난달 반상회", "오늘 오전 신입 사원 교육", "지난 일요일 봉사 활동",
               "어제 오후 학부모 모임", "그저께 저녁 송년회", "이번 주 월요일 특강")


def _fam_attendance(rng: random.Random) -> _Render:
    ev = _pick(rng, _GATHERINGS)
    other_ev = _other(rng, _GATHERINGS, ev)
    n = rng.randint(3, 15)
    m = rng.randint(2, n - 1)
    big = n + rng.randint(1, 5)
    cap = n + rng.randint(0, 5)
    p = _pick(rng, _PEOPLE)
    negative = rng.random() < 0.3
    inc = -1 if negative else _side_index(rng, 4)
    at = ev + "에는"
    ev_top = _j(ev, "topic")
    head = _j("그 " + ev.split()[-1], "topic")  # e.g. "그 회의는"
    ppl_top = _j(p.name, "topic")

    def render(reg: str):
        e = _PAST_END[reg]
        p_went = _s(ppl_top, ev + "에", _ATTENDED.say(reg, hon=p.hon))
        p_absent = _s(ev + "에", ppl_top, _ATTENDED.say(reg, neg=True, hon=p.hon))
        neu = [_s(other_ev + "에는 아무도", _ATTENDED.say(reg, neg=True)),
               _s(other_ev + "에는", f"{m}명만", _ATTENDED.say(reg))]
        if negative:
            prem = _s(at, "아무도", _ATTENDED.say(reg, neg=True))
            ent = [_s(ev + "에 참석한 사람은 한 명도 없었" + e), p_absent,
                   _s(ev + "에 온 사람은 없었" + e)]
            con = [_s(at, f"{n}명이", _ATTENDED.say(reg)), p_went]
            neu += [_s(ev, "장소는 학교 근처", _cop("카페", reg, past=True)),
                    _s(ev_top, "원래 다른 장소에서 열릴", _cop("예정", reg, past=True))]
            return _result(prem, ent, con, neu)
        side_sents = [
            _s("그 자리에서는 간식이", _V("나왔", "나오지").say(reg)),
            _s(head, "두 시간 동안", _V("이어졌", "이어지지").say(reg)),
            _s(head, "예정보다 늦게", _V("시작되었", "시작되지").say(reg)),
            _s(ppl_top, "그 자리에", _WAS.say(reg, neg=True, hon=p.hon)
               if p.hon else "없었" + e),
        ]
        sides = [
            _Side([_s(ev + "에서는 먹을 것이", _V("제공되었", "제공되지").say(reg))],
                  [_s(ev + "에서는 간식이", _V("나왔", "나오지").say(reg, neg=True))]),
            _Side([_s(ev_top, "한 시간 넘게", _V("진행되었", "진행되지").say(reg))],
                  [_s(ev_top, "삼십 분 만에", _V("끝났", "끝나지").say(reg))]),
            _Side([_s(ev_top, "제시간에", _V("시작되었", "시작되지").say(reg, neg=True))],
                  [_s(ev_top, "예정된 시간에 바로", _V("시작되었", "시작되지").say(reg))]),
            _Side([p_absent], [p_went]),
        ]
        prem = _s(at, f"{n}명이", _ATTENDED.say(reg))
        ent = [_s(at, "여러 명이", _ATTENDED.say(reg)),
               _s(ev + "에 참석한 사람은", f"{m}명이", _V("넘었", "넘지").say(reg)),
               _s(ev + "에 참석한 사람은", f"{cap}명을", _V("넘었", "넘지").say(reg, neg=True)),
               _s(ev + "에 온 사람은", _cop(f"{n}명", reg, past=True))]
        con = [_s(at, "아무도", _ATTENDED.say(reg, neg=True)),
               _s(at, f"{m}명만", _ATTENDED.say(reg)),
               _s(ev + "에 참석한 사람은", f"{big}명이", _V("넘었", "넘지").say(reg)),
               _s(at, "한 명밖에", _V("왔", "오지").say(reg, neg=True))]
        if inc >= 0:
            prem += " " + side_sents[inc]
        return _result(prem, ent, con, neu, sides, inc)

    return render


# ---------------------------------------------------------------------------
# Family 5: states with antonyms (open/closed, on/off, crowded/quiet, ...)
# ---------------------------------------------------------------------------

_STATE_TIMES = ("오늘 아침", "어젯밤", "어제 오후", "오늘 새벽", "그날 저녁")

# (thing or None for the place itself, places, pos, pos adverb, antonym,
#  antonym adverb, complementary?)
_STATES = (
    ("문", ("가게", "도서관", "교실", "약국", "은행", "우체국"),
     _V("열려 있었", "열려 있지"), "활짝", _V("닫혀 있었", "닫혀 있지"), "굳게", True),
    ("불", ("사무실", "교실", "거실", "복도", "창고"),
     _V("켜져 있었", "켜져 있지"), "환하게", _V("꺼져 있었", "꺼져 있지"), "모두", True),
    ("창문", ("교실", "거실", "회의실", "강의실"),
     _V("열려 있었", "열려 있지"), "활짝", _V("닫혀 있었", "닫혀 있지"), "꼭", True),
    (None, ("식당", "도서관", "지하철", "카페", "공항"),
     _V("붐볐", "붐비지"), "무척", _V("한산했", "한산하지"), "무척", False),
    ("바닥", ("교실", "거실", "사무실", "식당"),
     _V("깨끗했", "깨끗하지"), "아주", _V("지저분했", "지저분하지"), "아주", False),
)
_AC_ON = _V("켜져 있었", "켜져 있지")
_AC_OFF = _V("꺼져 있었", "꺼져 있지")


def _fam_state(rng: random.Random) -> _Render:
    thing, places, pos, pos_adv, ant, ant_adv, compl = _pick(rng, _STATES)
    place = _pick(rng, places)
    other_place = _other(rng, places, place)
    t = _pick(rng, _STATE_TIMES)
    p = _pick(rng, _PEOPLE)
    if rng.random() < 0.5:
        pos, pos_adv, ant, ant_adv = ant, ant_adv, pos, pos_adv
    negative = compl and rng.random() < 0.4
    inc = _side_index(rng, 3)
    subj = _j(place if thing is None else f"{place} {thing}", "topic")
    osubj = _j(other_place if thing is None else f"{other_place} {thing}", "topic")

    def render(reg: str):
        e = _PAST_END[reg]
        side_sents = [
            _s("그때", place + "에는", _j(p.name, "subj"), _WAS.say(reg, hon=p.hon)),
            _s("그때", place + "에서는 음악 소리가", _V("들렸", "들리지").say(reg)),
            _s("그때", place + "의 에어컨은", _AC_ON.say(reg)),
        ]
        absent = "계시지 않았" + e if p.hon else "없었" + e
        sides = [
            _Side([_s(_j(p.name, "topic"), t, place + "에", _WAS.say(reg, hon=p.hon))],
                  [_s(t, place + "에", _j(p.name, "topic"), absent)]),
            _Side([_s(t, place + "에서는 음악이", _V("흘러나왔", "흘러나오지").say(reg))],
                  [_s(t, place + "에서는 아무 소리도", _V("들렸", "들리지").say(reg, neg=True))]),
            _Side([_s(t, place + "의 에어컨은", _AC_OFF.say(reg, neg=True))],
                  [_s(t, place + "의 에어컨은", _AC_OFF.say(reg))]),
        ]
        neu = [_s(t, osubj, ant.say(reg)), _s(t, osubj, pos.say(reg, neg=True))]
        if negative:
            prem = _s(t, subj, pos.say(reg, neg=True))
            ent = [_s(t, subj, ant.say(reg))]
            con = [_s(t, subj, pos.say(reg)), _s(t, subj, pos_adv, pos.say(reg))]
        else:
            prem = _s(t, subj, pos_adv, pos.say(reg))
            ent = [_s(t, subj, pos.say(reg)), _s(t, subj, ant.say(reg, neg=True))]
            con = [_s(t, subj, ant.say(reg)), _s(t, subj, pos.say(reg, neg=True))]
        if inc >= 0:
            prem += " " + side_sents[inc]
        return _result(prem, ent, con, neu, sides, inc)

    return render


# ---------------------------------------------------------------------------
# Family 6: travel
# ---------------------------------------------------------------------------

_TRAVEL_TIMES = (("지난 주말에", "지난 주말 내내"), ("어제 아침에", "어제 아침 내내"),
                 ("연휴 첫날에", "연휴 첫날 내내"), ("지난 금요일에", "지난 금요일 내내"))
# transport -> cities it can reach
_TRANSPORT = {
    "기차": ("부산", "강릉", "전주", "경주", "여수", "대전", "광주", "춘천"),
    "고속버스": ("부산", "강릉", "전주", "경주", "대전", "광주", "춘천", "속초"),
    "비행기": ("제주", "부산", "광주", "여수"),
    "배": ("제주",),
    "야간 버스": ("부산", "강릉", "속초", "여수"),
}
_VISITED = _V("방문했", "방문하지", "방문하셨")
_RODE = _V("탔", "타지", "타셨")


def _fam_travel(rng: random.Random) -> _Render:
    p = _pick(rng, _PEOPLE)
    t, t_all = _pick(rng, _TRAVEL_TIMES)
    tr = _pick(rng, tuple(_TRANSPORT))
    city = _pick(rng, _TRANSPORT[tr])
    other_city = _other(rng, ("부산", "제주", "강릉", "전주", "경주", "대전", "속초"), city)
    comp = _other(rng, _PEOPLE, p)
    negative = rng.random() < 0.3
    inc = -1 if negative else _side_index(rng, 4)
    h, ch = p.hon, comp.hon
    top, sub = _j(p.name, "topic"), _j(p.name, "subj")
    ctop = _j(comp.name, "topic")

    def render(reg: str):
        e = _PAST_END[reg]
        by = _j(tr, "obj") + " 타고"
        if negative:
            prem = _s(top, t, city + "에", _WENT.say(reg, neg=True, hon=h))
            ent = [_s(top, t, _j(city, "obj"), _VISITED.say(reg, neg=True, hon=h)),
                   _s(sub, t, city + "에 갔다는 말은", _not_true(reg))]
            con = [_s(top, t, by, city + "에", _WENT.say(reg, hon=h)),
                   _s(top, t, city + "에", _WENT.say(reg, hon=h))]
            neu = [_s(top, t, "감기에", _CAUGHT.say(reg, hon=h)),
                   _s(ctop, t, by, city + "에", _WENT.say(reg, hon=ch)),
                   _s(top, t, _j(comp.name, "obj"), _MET.say(reg, neg=True, hon=h))]
            return _result(prem, ent, con, neu)
        lead = {0: _j(comp.name, "with") + " 함께", 1: "출장 때문에"}.get(inc, "")
        prem = _s(top, t, lead, by, city + "에", _WENT.say(reg, hon=h))
        if inc == 2:
            prem += " " + _s("그곳에서 이틀 동안", _STAYED.say(reg, hon=h))
        elif inc == 3:
            prem += " " + _s("가는 동안에는 한숨도", _SLEPT.say(reg, neg=True, hon=h))
        sides = [
            _Side([_s(comp.name + "도", t, city + "에", _WENT.say(reg, hon=ch))],
                  [_s(top, t, "혼자", city + "에", _WENT.say(reg, hon=h))]),
            _Side([_s(sub, city + "에", _WENT.rel(h), "것은 출장", _cop("때문", reg, past=True))],
                  [_s(sub, city + "에", _WENT.rel(h), "것은 일 때문이", "아니었" + e)]),
            _Side([_s(top, city + "에서 하룻밤 이상", _V("지냈", "지내지", "지내셨").say(reg, hon=h))],
                  [_s(top, city + "에 당일치기로",
                      _V("다녀왔", "다녀오지", "다녀오셨").say(reg, hon=h))]),
            _Side([_s(top, city + "에 가는 동안",
                      _V("깨어 있었", "깨어 있지", "깨어 계셨").say(reg, hon=h))],
                  [_s(top, city + "에 가는 동안 푹", _SLEPT.say(reg, hon=h))]),
        ]
        ent = [_s(top, t, city + "에", _WENT.say(reg, hon=h)),
               _s(top, t, _j(city, "dir"), _LEFT.say(reg, hon=h)),
               _s(top, t, city + "까지 걸어서", _WENT.say(reg, neg=True, hon=h)),
               _s(top, t, _j(tr, "obj"), _RODE.say(reg, hon=h)),
               _s(top, t, _j(city, "obj"), _VISITED.say(reg, hon=h))]
        con = [_s(top, t, city + "에", _WENT.say(reg, neg=True, hon=h)),
               _s(top, t_all, "집에", _STAYED.say(reg, hon=h)),
               _s(top, t, _j(city, "subj"), "아니라", other_city + "에", _WENT.say(reg, hon=h)),
               _s(top, t, "집 밖으로 한 발짝도",
                  _V("나갔", "나가지", "나가셨").say(reg, neg=True, hon=h))]
        neu = [_s(top, city + "에서 오랜 친구를", _MET.say(reg, hon=h)),
               _s(ctop, t_all, "집에", _STAYED.say(reg, hon=ch)),
               _s(ctop, t, city + "에", _WENT.say(reg, neg=True, hon=ch))]
        return _result(prem, ent, con, neu, sides, inc)

    return render


# ---------------------------------------------------------------------------
# Family 7: purchases with quantities
# ---------------------------------------------------------------------------

_NATIVE = ("", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉", "열")
# (item, counter, hypernym or None, shops)
_GOODS = (
    ("사과", "개", "과일", ("시장", "마트")),
    ("귤", "개", "과일", ("시장", "마트")),
    ("공책", "권", "학용품", ("문구점", "마트")),
    ("연필", "자루", "학용품", ("문구점",)),
    ("장미", "송이", "꽃", ("꽃집",)),
    ("라면", "봉지", None, ("편의점", "마트")),
    ("양말", "켤레", None, ("시장", "마트")),
    ("우유", "팩", None, ("편의점", "마트")),
)
_PURCHASE_TIMES = ("어제", "오늘 아침에", "지난 주말에", "퇴근길에", "점심시간에")
_PAID = _V("냈", "내지", "내셨")


def _fam_purchase(rng: random.Random) -> _Render:
    p = _pick(rng, _PEOPLE)
    comp = _other(rng, _PEOPLE, p)
    t = _pick(rng, _PURCHASE_TIMES)
    item, counter, hyper, shops = _pick(rng, _GOODS)
    shop = _pick(rng, shops)
    n = rng.randint(2, 10)
    m_less = rng.randint(1, n - 1)
    m_other = _other(rng, range(1, 11), n)
    other_item = _other(rng, [g[0] for g in _GOODS if shop in g[3]] + ["우유", "빵"], item)
    inc = _side_index(rng, 4)
    h = p.hon
    top, sub = _j(p.name, "topic"), _j(p.name, "subj")
    ctop, csub = _j(comp.name, "topic"), _j(comp.name, "subj")
    item_obj = _j(item, "obj")

    def qty(k: int) -> str:
        return f"{_NATIVE[k]} {counter}"

    def render(reg: str):
        b = _BOUGHT
        lead = "선물하려고" if inc == 1 else ""
        prem = _s(top, lead, t, shop + "에서", item_obj, qty(n), b.say(reg, hon=h))
        if inc == 0:
            prem += " " + _s("값은 카드로", _V("계산했", "계산하지", "계산하셨").say(reg, hon=h))
        elif inc == 2:
            prem += " " + _s("영수증은", _V("받았", "받지", "받으셨").say(reg, neg=True, hon=h))
        elif inc == 3:
            prem += " " + _s(other_item + "도 함께", b.say(reg, hon=h))
        sides = [
            _Side([_s(top, item, "값을 현금으로", _PAID.say(reg, neg=True, hon=h))],
                  [_s(top, item, "값을 현금으로", _PAID.say(reg, hon=h))]),
            _Side([_s(sub, _j(item, "obj"), b.rel(h), "것은 선물을 하기", _cop("위해서", reg, past=True))],
                  []),
            _Side([_s(top, t, "영수증을", _V("챙겼", "챙기지", "챙기셨").say(reg, neg=True, hon=h))],
                  [_s(top, t, "영수증을", _V("받았", "받지", "받으셨").say(reg, hon=h))]),
            _Side([_s(top, t, shop + "에서", other_item + "도", b.say(reg, hon=h))],
                  [_s(top, t, shop + "에서", item, "말고는 아무것도", b.say(reg, neg=True, hon=h))]),
        ]
        ent = [_s(top, shop + "에서", item_obj, b.say(reg, hon=h)),
               _s(top, t, shop + "에서 빈손으로",
                  _V("나왔", "나오지", "나오셨").say(reg, neg=True, hon=h)),
               _s(sub, b.rel(h), _j(item, "topic"), qty(m_less) + "보다", _V("많았", "많지").say(reg))]
        if hyper:
            ent.append(_s(top, t, _j(hyper, "obj"), b.say(reg, hon=h)))
        if n >= 3:
            ent.append(_s(top, item_obj, "여러", counter, b.say(reg, hon=h)))
        con = [_s(top, t, item_obj, "하나도", b.say(reg, neg=True, hon=h)),
               _s(sub, t, b.rel(h), _j(item, "topic"), "모두", _cop(qty(m_other), reg, past=True)),
               _s(top, t, item_obj, qty(m_less) + "만", b.say(reg, hon=h)),
               _s(top, t, shop + "에", _WENT.say(reg, neg=True, hon=h))]
        neu = [_s(ctop, t, item_obj, "하나도", b.say(reg, neg=True, hon=comp.hon)),
               _s(csub, t, b.rel(comp.hon), _j(item, "topic"), "모두",
                  _cop(qty(m_other), reg, past=True))]
        return _result(prem, ent, con, neu, sides, inc)

    return render


# ---------------------------------------------------------------------------
# Family 8: schedules (present tense)
# ---------------------------------------------------------------------------

_EVENTS = ("이번 주 동아리 모임", "다음 주 음악회", "이번 달 독서 모임",
           "다음 주 체육 대회", "이번 주 팀 회의", "다음 달 사진 전시회",
           "다음 주 바자회", "이번 주 학부모 설명회")
_DAYS = ("월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일")
_VENUES = ("학교 강당", "시청 앞 광장", "구민회관", "시민 문화 센터")
_STARTS = _P("시작한다", "시작합니다", "시작해요", "시작하지")
_HELD = _P("열린다", "열립니다", "열려요", "열리지")
_LASTS = _P("진행된다", "진행됩니다", "진행돼요", "진행되지")
_SERVED = _P("제공된다", "제공됩니다", "제공돼요", "제공되지")
_ENDS = _P("끝난다", "끝납니다", "끝나요", "끝나지")
_GIVES = _P("준다", "줍니다", "줘요", "주지")


def _fam_schedule(rng: random.Random) -> _Render:
    ev = _pick(rng, _EVENTS)
    other_ev = _other(rng, _EVENTS, ev)
    day = _pick(rng, _DAYS)
    other_day = _other(rng, _DAYS, day)
    half = rng.choice(("오전", "오후"))
    hours = (9, 10, 11) if half == "오전" else (1, 2, 3, 4, 5, 6, 7)
    hr = _pick(rng, hours)
    other_hr = _other(rng, hours, hr)
    venue = _pick(rng, _VENUES)
    other_venue = _other(rng, _VENUES, venue)
    weekend = day in ("토요일", "일요일")
    inc = _side_index(rng, 3)
    top = _j(ev, "topic")

    def clock(k: int) -> str:
        return {9: "아홉", 10: "열", 11: "열한"}.get(k) or _NATIVE[k]

    def render(reg: str):
        other_half = "오후" if half == "오전" else "오전"
        prem = _s(top, day, half, clock(hr), "시에", _STARTS.say(reg))
        side_sents = [
            _s("장소는", _cop(venue, reg)),
            _s("행사는 두 시간 동안", _LASTS.say(reg)),
            _s("간식은", _SERVED.say(reg, neg=True)),
        ]
        sides = [
            _Side([_s(top, venue + "에서", _HELD.say(reg))],
                  [_s(top, other_venue + "에서", _HELD.say(reg))]),
            _Side([_s(top, "한 시간 넘게", _LASTS.say(reg))],
                  [_s(top, "삼십 분 만에", _ENDS.say(reg))]),
            _Side([_s(ev + "에서는 먹을 것을", _GIVES.say(reg, neg=True))],
                  [_s(ev + "에서는 간식이", _SERVED.say(reg))]),
        ]
        if inc >= 0:
            prem += " " + side_sents[inc]
        ent = [_s(top, day + "에", _HELD.say(reg)),
               _s(top, other_half + "에", _STARTS.say(reg, neg=True)),
               _s(top, half + "에", _STARTS.say(reg)),
               _s(top, ("주말" if weekend else "평일") + "에", _HELD.say(reg))]
        con = [_s(top, other_day + "에", _HELD.say(reg)),
               _s(top, day, half, clock(other_hr), "시에", _STARTS.say(reg)),
               _s(top, day + "에", _HELD.say(reg, neg=True)),
               _s(top, ("평일" if weekend else "주말") + "에", _HELD.say(reg))]
        neu = [_s(ev + "에는 많은 사람이 올", _cop("예정", reg)),
               _s(_j(other_ev, "topic"), other_day + "에", _HELD.say(reg)),
               _s(_j(other_ev, "topic"), day + "에", _HELD.say(reg, neg=True))]
        return _result(prem, ent, con, neu, sides, inc)

    return render


# ---------------------------------------------------------------------------
# Family 9: outcomes with complementary antonyms (pass/fail, win/lose, ...)
# ---------------------------------------------------------------------------

_EXAMS = ("운전면허 시험", "자격증 시험", "입학시험", "승진 시험")
_SPORTS = ("축구", "농구", "야구", "배구")
_OUTCOME_TIMES = ("어제", "지난주", "지난 금요일", "오늘 아침")


def _fam_outcome(rng: random.Random) -> _Render:
    p = _pick(rng, _PEOPLE)
    t = _pick(rng, _OUTCOME_TIMES)
    kind = rng.randrange(3)
    side = rng.randrange(2)
    exam = _pick(rng, _EXAMS)
    sport = _pick(rng, _SPORTS)
    if kind == 1:
        p = _Person(_pick(rng, _PLAIN_NAMES))
    comp = _other(rng, [q for q in _PEOPLE if kind != 1 or not q.hon], p)
    h = p.hon and kind != 1

    if kind == 0:
        subj_top, other_top = _j(p.name, "topic"), _j(comp.name, "topic")
        a = [(exam + "에", _V("합격했", "합격하지", "합격하셨")),
             (exam + "에", _V("붙었", "붙지", "붙으셨"))]
        b = [(exam + "에", _V("떨어졌", "떨어지지", "떨어지셨")),
             (exam + "에서", _V("불합격했", "불합격하지", "불합격하셨"))]

        def neutral(reg: str) -> list[str]:
            return [
                _s(subj_top, _j(exam, "obj"), "위해 석 달 동안",
                   _V("공부했", "공부하지", "공부하셨").say(reg, hon=h)),
                _s(subj_top, t, "처음으로", exam + "에",
                   _V("응시했", "응시하지", "응시하셨").say(reg, hon=h)),
                _s(subj_top, "결과를 아직 가족에게",
                   _V("말했", "말하지", "말씀하셨").say(reg, neg=True, hon=h)),
            ]
    elif kind == 1:
        subj_top = _j(f"{p.name}의 팀", "topic")
        other_top = _j(f"{comp.name}의 팀", "topic")
        a = [(sport + " 경기에서", _V("이겼", "이기지")),
             (sport + " 경기에서", _V("승리했", "승리하지"))]
        b = [(sport + " 경기에서", _V("졌", "지지")),
             (sport + " 경기에서", _V("패배했", "패배하지"))]

        def neutral(reg: str) -> list[str]:
            return [
                _s(t, sport, "경기는 연장전까지", _WENT.say(reg)),
                _s(t, sport, "경기장에는 관중이", _V("많았", "많지").say(reg)),
                _s(_j(p.name, "topic"), t, "경기에", _V("나갔", "나가지").say(reg, neg=True)),
            ]
    else:
        subj_top, other_top = _j(p.name, "topic"), _j(comp.name, "topic")
        a = [("약속 장소에 늦게", _V("도착했", "도착하지", "도착하셨")),
             ("약속 시간에", _V("늦었", "늦지", "늦으셨"))]
        b = [("약속 장소에 일찍", _V("도착했", "도착하지", "도착하셨")),
             ("약속 시간보다 먼저", _V("와 있었", "와 있지", "와 계셨", neg_hon="와 계시지"))]

        def neutral(reg: str) -> list[str]:
            return [
                _s(subj_top, t, "버스를", _V("놓쳤", "놓치지", "놓치셨").say(reg, hon=h)),
                _s(subj_top, t, "휴대폰을 집에 두고", _V("나왔", "나오지", "나오셨").say(reg, hon=h)),
                _s(subj_top, t, "우산을", _V("챙겼", "챙기지", "챙기셨").say(reg, neg=True, hon=h)),
            ]

    mine, theirs = (a, b) if side == 0 else (b, a)
    canonical_comp, canonical_v = mine[0]
    ch = comp.hon and kind != 1

    def render(reg: str):
        prem = _s(subj_top, t, canonical_comp, canonical_v.say(reg, hon=h))
        ent = [_s(subj_top, t, c, v.say(reg, hon=h)) for c, v in mine[1:]]
        ent += [_s(subj_top, t, c, v.say(reg, neg=True, hon=h)) for c, v in theirs[:1]]
        ent.append(_s(subj_top, canonical_comp, canonical_v.say(reg, hon=h)))
        con = [_s(subj_top, t, c, v.say(reg, hon=h)) for c, v in theirs]
        con.append(_s(subj_top, t, canonical_comp, canonical_v.say(reg, neg=True, hon=h)))
        neu = neutral(reg) + [
            _s(other_top, t, theirs[0][0], theirs[0][1].say(reg, hon=ch)),
            _s(other_top, t, canonical_comp, canonical_v.say(reg, neg=True, hon=ch)),
        ]
        return _result(prem, ent, con, neu)

    return render


# ---------------------------------------------------------------------------
# Family 10: universally negative premises ("아무것도 ... 않았다", "아무도 없었다")
# ---------------------------------------------------------------------------

_MEAL_TIMES = ("어제 점심에", "오늘 아침에", "어젯밤에", "그날 저녁에")
_FOODS = ("김밥", "라면", "빵", "과일", "떡볶이", "밥", "샌드위치")
_EMPTY_PLACES = ("교실", "회의실", "거실", "사무실", "강의실", "대기실")


def _fam_nothing(rng: random.Random) -> _Render:
    p = _pick(rng, _PEOPLE)
    comp = _other(rng, _PEOPLE, p)
    food = _pick(rng, _FOODS)
    t = _pick(rng, _MEAL_TIMES)
    place = _pick(rng, _EMPTY_PLACES)
    other_place = _other(rng, _EMPTY_PLACES, place)
    st = _pick(rng, _STATE_TIMES)
    kind = rng.randrange(2)
    h = p.hon
    top, sub = _j(p.name, "topic"), _j(p.name, "subj")

    def render(reg: str):
        e = _PAST_END[reg]
        if kind == 0:
            prem = _s(top, t, "아무것도", _ATE.say(reg, neg=True, hon=h))
            ent = [_s(top, t, _j(food, "obj"), _ATE.say(reg, neg=True, hon=h)),
                   _s(top, t, "끼니를", _V("걸렀", "거르지", "거르셨").say(reg, hon=h)),
                   _s(top, t, _V("굶었", "굶지", "굶으셨").say(reg, hon=h))]
            con = [_s(top, t, _j(food, "obj"), _ATE.say(reg, hon=h)),
                   _s(top, t, _j(food, "obj"), "두 그릇이나", _ATE.say(reg, hon=h)),
                   _s(top, t, "배부르게", _ATE.say(reg, hon=h))]
            neu = [_s(top, t, "배가", _V("고팠", "고프지", "고프셨").say(reg, hon=h)),
                   _s(top, t, "무척", _V("바빴", "바쁘지", "바쁘셨").say(reg, hon=h)),
                   _s(top, t, "속이", _GOOD_MOOD.say(reg, neg=True, hon=h)),
                   _s(_j(comp.name, "topic"), t, _j(food, "obj"), _ATE.say(reg, hon=comp.hon))]
        else:
            prem = _s(st, place + "에는 아무도 없었" + e)
            absent = "계시지 않았" + e if h else "없었" + e
            ent = [_s(st, place + "에", _j(p.name, "topic"), absent),
                   _s(st, _j(place, "topic"), "텅 비어 있었" + e),
                   _s(st, place + "에", "사람이 한 명도 없었" + e)]
            con = [_s(st, place + "에는", sub, _WAS.say(reg, hon=h)),
                   _s(st, place + "에는 사람들이", _V("가득했", "가득하지").say(reg)),
                   _s(st, place + "에서", sub, "노래를",
                      _V("불렀", "부르지", "부르셨").say(reg, hon=h))]
            neu = [_s(st, place + "의 불은", _V("꺼져 있었", "꺼져 있지").say(reg)),
                   _s(st, place + "의 문은", _V("잠겨 있었", "잠겨 있지").say(reg, neg=True)),
                   _s(st, other_place + "에는", sub, _WAS.say(reg, hon=h)),
                   _s(st, other_place + "에는 사람들이", _V("가득했", "가득하지").say(reg))]
        return _result(prem, ent, con, neu)

    return render


# ---------------------------------------------------------------------------
# Family 11: comparatives (present tense, converse relations)
# ---------------------------------------------------------------------------

# (subject noun with particle, predicate, antonym predicate)
_ATTRS = (
    ("키가", _P("크다", "큽니다", "커요", "크지", True),
     _P("작다", "작습니다", "작아요", "작지", True)),
    ("나이가", _P("많다", "많습니다", "많아요", "많지", True),
     _P("적다", "적습니다", "적어요", "적지", True)),
    ("달리기가", _P("빠르다", "빠릅니다", "빨라요", "빠르지", True),
     _P("느리다", "느립니다", "느려요", "느리지", True)),
    ("힘이", _P("세다", "셉니다", "세요", "세지", True),
     _P("약하다", "약합니다", "약해요", "약하지", True)),
    ("목소리가", _P("크다", "큽니다", "커요", "크지", True),
     _P("작다", "작습니다", "작아요", "작지", True)),
)
_LIKES = _P("좋아한다", "좋아합니다", "좋아해요", "좋아하지")
_HOBBIES = ("농구를", "그림 그리기를", "등산을", "요리를", "게임을")


def _fam_compare(rng: random.Random) -> _Render:
    a = _pick(rng, _PLAIN_NAMES)
    b = _other(rng, _PLAIN_NAMES, a)
    c = _other(rng, _PLAIN_NAMES, a, b)
    i = rng.randrange(len(_ATTRS))
    noun, pos, ant = _ATTRS[i]
    if rng.random() < 0.5:
        pos, ant = ant, pos
    noun2, pos2, _ = _ATTRS[_other(rng, range(len(_ATTRS)), i)]
    hobby = _pick(rng, _HOBBIES)
    negative = rng.random() < 0.3
    a_top, b_top, c_top = _j(a, "topic"), _j(b, "topic"), _j(c, "topic")

    def render(reg: str):
        neu = [_s(a_top, b + "보다", noun2, pos2.say(reg)),
               _s(a_top, b + "보다", noun2, pos2.say(reg, neg=True)),
               _s(_j(a, "with"), _j(b, "topic"), "같은", _cop("반", reg)),
               _s(a_top, hobby, _LIKES.say(reg)),
               _s(a_top, c + "보다", noun, ant.say(reg)),
               _s(c_top, b + "보다", noun, pos.say(reg))]
        if negative:
            prem = _s(a_top, b + "보다", noun, pos.say(reg, neg=True))
            ent = [_s(b_top, a + "보다", noun, ant.say(reg, neg=True)),
                   _s(_j(a, "subj"), b + "보다", noun, pos.plain + "는 말은", _not_true(reg))]
            con = [_s(a_top, b + "보다", noun, pos.say(reg)),
                   _s(b_top, a + "보다", noun, ant.say(reg))]
        else:
            prem = _s(a_top, b + "보다", noun, pos.say(reg))
            ent = [_s(b_top, a + "보다", noun, ant.say(reg)),
                   _s(b_top, a + "보다", noun, pos.say(reg, neg=True))]
            con = [_s(a_top, b + "보다", noun, ant.say(reg)),
                   _s(b_top, a + "보다", noun, pos.say(reg)),
                   _s(a_top, b + "보다", noun, pos.say(reg, neg=True))]
        return _result(prem, ent, con, neu)

    return render


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

_FAMILIES: tuple[tuple[Callable[[random.Random], _Render], float], ...] = (
    (_fam_activity, 3.0),
    (_fam_weather, 1.5),
    (_fam_price, 1.5),
    (_fam_attendance, 1.2),
    (_fam_state, 1.5),
    (_fam_travel, 1.5),
    (_fam_purchase, 1.5),
    (_fam_schedule, 1.2),
    (_fam_outcome, 1.5),
    (_fam_nothing, 1.2),
    (_fam_compare, 1.2),
)


def _iter_keyed(seed: int) -> Iterator[tuple[str, dict[str, str]]]:
    """Endless stream of (scene key, pair) with unique pairs.

    Labels come in shuffled blocks of three, so every prefix is balanced to
    within one pair per label.  The scene key is the first sentence of the
    premise rendered in the plain register: it is the same for a scene in any
    register, with or without an optional second sentence, and is used to
    keep splits disjoint.
    """
    rng = random.Random(seed)
    funcs = [f for f, _ in _FAMILIES]
    weights = [w for _, w in _FAMILIES]
    seen: set[tuple[str, str]] = set()
    while True:
        block = list(LABELS)
        rng.shuffle(block)
        for label in block:
            for _attempt in range(10_000):
                fam = rng.choices(funcs, weights=weights)[0]
                render = fam(rng)
                key = render("plain")[0].split(". ")[0].rstrip(".")
                premise, hyps = render(_reg(rng))
                groups = [[hy for hy in g if (premise, hy) not in seen and hy != premise]
                          for g in hyps[label]]
                groups = [g for g in groups if g]
                if not groups:
                    continue
                hyp = _pick(rng, _pick(rng, groups))
                seen.add((premise, hyp))
                yield key, {"premise": premise, "hypothesis": hyp, "label": label}
                break
            else:  # pragma: no cover - vocabulary is far larger than needed
                raise RuntimeError("could not generate a new unique pair")


def generate_nli_pairs(n: int, seed: int = 0) -> Iterator[dict]:
    """Yield ``n`` unique, label-balanced Korean NLI pairs built from templates.

    Each item is ``{"premise": str, "hypothesis": str, "label": str}`` with the
    label one of ``"entailment"``, ``"contradiction"``, ``"neutral"``.  Label
    counts differ by at most one; the same ``seed`` always gives the same pairs.

    Example:
        >>> pairs = list(generate_nli_pairs(3, seed=1))
        >>> sorted(p["label"] for p in pairs)
        ['contradiction', 'entailment', 'neutral']
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    stream = _iter_keyed(seed)
    for _ in range(n):
        yield next(stream)[1]


def _split_of(key: str, weights: tuple[int, int, int]) -> int:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    r = int.from_bytes(digest[:8], "big") % sum(weights)
    if r < weights[0]:
        return 0
    if r < weights[0] + weights[1]:
        return 1
    return 2


def write_sample_corpus(out_dir: Path, n_train: int = 900, n_validation: int = 150,
                        n_test: int = 150, seed: int = 0) -> None:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` to ``out_dir``.

    Each split is label-balanced (sizes that are not multiples of three are
    balanced to within one), free of duplicate pairs, and premise-disjoint
    from the other splits: a scene's split is chosen from a hash of its main
    premise sentence, so no premise sentence occurs in two splits (not even in
    another register).  Files are UTF-8 JSON
    Lines written with ``ensure_ascii=False``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_sample_corpus(Path(d), n_train=30, n_validation=6, n_test=6)
        ...     sorted(p.name for p in Path(d).iterdir())
        ['test.jsonl', 'train.jsonl', 'validation.jsonl']
    """
    sizes = (n_train, n_validation, n_test)
    quotas = label_quotas(sizes, LABELS)
    weights = tuple(max(s, 1) for s in sizes)
    splits: list[list[dict]] = [[], [], []]
    key_split: dict[str, int] = {}
    premise_split: dict[str, int] = {}
    remaining = sum(sizes)
    stream = _iter_keyed(seed)
    budget = 200 * (remaining + 10)
    while remaining > 0:
        budget -= 1
        if budget < 0:  # pragma: no cover
            raise RuntimeError("could not fill the requested splits")
        key, pair = next(stream)
        idx = key_split.setdefault(key, _split_of(key, weights))
        if premise_split.setdefault(pair["premise"], idx) != idx:
            continue  # pragma: no cover - premises map to one key
        if quotas[idx][pair["label"]] == 0:
            continue
        quotas[idx][pair["label"]] -= 1
        splits[idx].append(pair)
        remaining -= 1
    write_splits(out_dir, splits, seed)


# ---------------------------------------------------------------------------
# Easy synthetic task
# ---------------------------------------------------------------------------


def _simple_sentence(rng: random.Random) -> tuple[str, Callable[[str, bool], str]]:
    """An activity sentence: (its person, a renderer taking register and negation)."""
    p = _pick(rng, _PEOPLE)
    t, _ = _pick(rng, _TIMES)
    act = _pick(rng, _ACTS)
    place = _pick(rng, act.places)

    def say(reg: str, neg: bool) -> str:
        return _s(_j(p.name, "topic"), t, place + "에서", act.obj,
                  act.verb.say(reg, neg=neg, hon=p.hon))

    return p.name, say


def _unrelated_sentence(rng: random.Random, reg: str, person: str) -> str:
    """An affirmative sentence of another construction (comparison, weather or
    a room's state) that shares no person with an activity sentence."""
    kind = rng.randrange(3)
    if kind == 0:
        a = _other(rng, _PLAIN_NAMES, person)
        b = _other(rng, _PLAIN_NAMES, person, a)
        noun, pos, _ = _pick(rng, _ATTRS)
        return _s(_j(a, "topic"), b + "보다", noun, pos.say(reg))
    if kind == 1:
        pos, _, _, _, adv = _pick(rng, _WEATHER)
        return _s(_pick(rng, _WEATHER_TIMES), _j(_pick(rng, _CITIES), "topic"), adv, pos.say(reg))
    thing, places, pos, pos_adv, _, _, _ = _pick(rng, _STATES)
    place = _pick(rng, places)
    subj = _j(place if thing is None else f"{place} {thing}", "topic")
    return _s(_pick(rng, _STATE_TIMES), subj, pos_adv, pos.say(reg))


def generate_pair_task(n: int, seed: int = 0) -> list[dict]:
    """Return ``n`` pairs of an easy synthetic task with a deterministic label.

    Premises are affirmative activity sentences.  The label is a function of
    the pair: a hypothesis identical to the premise is ``"entailment"``, the
    premise with its verb negated (``-지 않았다`` / ``-지 않으셨다``) is
    ``"contradiction"``, and an unrelated affirmative sentence of another
    construction (a comparison, the weather or a room's state, in the same
    register and about nobody in the premise) is ``"neutral"``.  The task is
    deliberately easy, so that a tiny model trained from scratch learns it in
    a few epochs.  Labels cycle in the order of :data:`LABELS`; the same seed
    always gives the same list.

    Example:
        >>> task = generate_pair_task(3, seed=0)
        >>> task[0]["premise"] == task[0]["hypothesis"], task[0]["label"]
        (True, 'entailment')
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    out: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for i in range(n):
        label = LABELS[i % 3]
        for attempt in range(200):
            reg = _reg(rng)
            person, say = _simple_sentence(rng)
            premise = say(reg, False)
            if label == "entailment":
                hyp = premise
            elif label == "contradiction":
                hyp = say(reg, True)
            else:
                hyp = _unrelated_sentence(rng, reg, person)
            if (premise, hyp) not in seen or attempt == 199:
                break
        seen.add((premise, hyp))
        out.append({"premise": premise, "hypothesis": hyp, "label": label})
    return out
