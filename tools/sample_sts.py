"""Deterministic generator of a small Korean sentence-similarity task (STS-style, scores 0-5).

Every sentence is built here from templates and slot fillers written for
korpair; nothing is copied or paraphrased from KorSTS, KLUE-STS or any other
data set.

A pair tells one event (who, when, where, what: an action) twice: one
sentence states all of it, the other the action and some of the rest, as the
STS guidelines grade it (all the same: 5; details missing: less). The gold
score is a function of the pair::

    score = 5 * weight(slots both state alike) / weight(slots either states)   # action 2, the others 1

times 0.4 when one sentence is negated and the other not; in a few pairs one
or two slots take another concept (민수 / 지영), and some pairs are about
another topic altogether (the weather: 0). The two sentences are worded
independently: a slot they share may take its other wording (카페 / 커피숍,
책을 읽었다 / 독서를 했다, 민수 / 김민수), another word order or a cleft
("... 사람은 민수였다"), another particle (은/는 or 이/가) and another speech
register (-다 / -어요 / -습니다); either sentence may come first. So a
paraphrase (5) can share few words and a negated pair most of them: surface
overlap is not the score (a character-overlap baseline reaches Spearman ~0.7,
``tests/tools/test_sample_sts.py``).

Example::

    rows = generate_sts_pairs(2000, seed=0)
    rows[0]  # {"sentence1": "지난주 월요일에 커피를 마셨다.", "sentence2": "...", "score": 3.33}
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SLOT_WEIGHTS", "generate_sts_pairs", "write_sts_files"]

# Each concept is a tuple of surface forms that mean the same thing here.
PEOPLE = (("민수", "김민수"), ("지영", "이지영"), ("서준", "박서준"), ("하은", "최하은"), ("도윤", "정도윤"),
          ("수아", "한수아"), ("옆집 아저씨", "이웃집 아저씨"), ("우리 반 반장", "반장"),
          ("사촌 형", "사촌 형"), ("내 친구 영호", "친구 영호"))
TIMES = (("어제", "하루 전에"), ("그저께", "이틀 전에"), ("지난 주말에", "저번 주말에"),
         ("오늘 아침에", "오늘 오전에"), ("작년 여름에", "지난해 여름에"), ("점심시간에", "점심때"),
         ("지난 월요일에", "지난주 월요일에"), ("밤늦게", "늦은 밤에"), ("저녁에", "저녁때"))
PLACES = (("카페", "커피숍"), ("식당", "음식점"), ("영화관", "극장"), ("서점", "책방"), ("시장", "재래시장"),
          ("동네 공원", "집 근처 공원"), ("도서관", "시립 도서관"), ("기차역", "역"), ("학교 앞", "학교 근처"),
          ("바닷가", "해변"))


class _Act:
    """An action in a few wordings: each (past stem ending in ㅆ, past adnominal, long-negation base)."""

    def __init__(self, *forms: tuple[str, str, str]) -> None:
        self.forms = forms


ACTIONS = (
    _Act(("책을 읽었", "책을 읽은", "책을 읽지"), ("독서를 했", "독서를 한", "독서를 하지")),
    _Act(("밥을 먹었", "밥을 먹은", "밥을 먹지"), ("식사를 했", "식사를 한", "식사를 하지")),
    _Act(("사진을 찍었", "사진을 찍은", "사진을 찍지"), ("사진 촬영을 했", "사진 촬영을 한", "사진 촬영을 하지")),
    _Act(("친구를 만났", "친구를 만난", "친구를 만나지"), ("친구와 만났", "친구와 만난", "친구와 만나지")),
    _Act(("커피를 마셨", "커피를 마신", "커피를 마시지"),
         ("커피 한 잔을 마셨", "커피 한 잔을 마신", "커피 한 잔을 마시지")),
    _Act(("숙제를 했", "숙제를 한", "숙제를 하지"), ("과제를 했", "과제를 한", "과제를 하지")),
    _Act(("전화를 했", "전화를 한", "전화를 하지"), ("통화를 했", "통화를 한", "통화를 하지")),
    _Act(("음악을 들었", "음악을 들은", "음악을 듣지"), ("노래를 들었", "노래를 들은", "노래를 듣지")),
    _Act(("편지를 썼", "편지를 쓴", "편지를 쓰지"), ("편지를 작성했", "편지를 작성한", "편지를 작성하지")),
    _Act(("쉬었", "쉰", "쉬지"), ("휴식을 취했", "휴식을 취한", "휴식을 취하지")),
    _Act(("돈을 잃어버렸", "돈을 잃어버린", "돈을 잃어버리지"), ("돈을 분실했", "돈을 분실한", "돈을 분실하지")),
    _Act(("길을 잃었", "길을 잃은", "길을 잃지"), ("길을 헤맸", "길을 헤맨", "길을 헤매지")),
)
# Sentences on another topic (the weather of a city): nothing in common with an event.
CITIES = ("서울", "부산", "대구", "인천", "광주", "대전", "제주", "강릉")
WEATHER = (("하루 종일 비가 왔", "종일 비가 내렸"), ("눈이 많이 왔", "폭설이 내렸"), ("하늘이 맑았", "날씨가 화창했"),
           ("바람이 세게 불었", "강풍이 불었"), ("무척 더웠", "폭염이 이어졌"))

SLOTS = ("who", "when", "where", "what")
SLOT_WEIGHTS = {"who": 1, "when": 1, "where": 1, "what": 2}  # a sentence stating all four weighs 5
_FILLERS = {"who": PEOPLE, "when": TIMES, "where": PLACES, "what": tuple(a.forms for a in ACTIONS)}
_REGISTERS = ("plain", "polite", "formal")
_PAST_END = {"plain": "다", "polite": "어요", "formal": "습니다"}
NEGATED_SHARE = 0.4  # a pair that states the same content with opposite polarity keeps this share of its score


def _batchim(word: str) -> bool:
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def _topic(word: str) -> str:
    return word + ("은" if _batchim(word) else "는")


def _subject(word: str) -> str:
    return word + ("이" if _batchim(word) else "가")


def _copula(word: str, register: str) -> str:
    return word + ("이었" if _batchim(word) else "였") + _PAST_END[register]


@dataclass(frozen=True)
class _Sentence:
    """What a sentence states: a concept and its wording per stated slot, and its polarity."""

    concepts: dict[str, int]
    forms: dict[str, int]
    negated: bool = False

    def render(self, rng: random.Random) -> str:
        """The sentence in a random word order or construction and speech register."""
        register = rng.choice(_REGISTERS)
        word = {s: _FILLERS[s][c][self.forms[s]] for s, c in self.concepts.items()}
        past, adnominal, negation = word["what"]
        end = _PAST_END[register]
        verb = f"{negation} 않았{end}" if self.negated else past + end
        when, who = word.get("when"), word.get("who")
        where = word["where"] + "에서" if "where" in word else None
        template = rng.randrange(5 if who else 4)
        if template == 0:
            words = [who and _topic(who), when, where, verb]
        elif template == 1:
            words = [when, who and _topic(who), where, verb]
        elif template == 2:
            words = [where, when, who and _subject(who), verb]
        elif template == 3:
            words = [who and _topic(who), where, when, verb]
        else:  # a cleft: "어제 카페에서 책을 읽은 사람은 민수였다"
            words = [when, where, f"{negation} 않은" if self.negated else adnominal, "사람은", _copula(who, register)]
        return " ".join(w for w in words if w) + "."


def _weather(rng: random.Random) -> str:
    register = rng.choice(_REGISTERS)
    city, when = rng.choice(CITIES), rng.choice(rng.choice(TIMES))
    return f"{_topic(city)} {when} {rng.choice(rng.choice(WEATHER))}{_PAST_END[register]}."


def similarity(a: _Sentence, b: _Sentence) -> float:
    """The gold score: the weight of what both state alike over the weight of what either states, times 5."""
    stated = set(a.concepts) | set(b.concepts)
    alike = [s for s in stated if s in a.concepts and s in b.concepts and a.concepts[s] == b.concepts[s]]
    score = 5 * sum(SLOT_WEIGHTS[s] for s in alike) / sum(SLOT_WEIGHTS[s] for s in stated)
    return round(score * (NEGATED_SHARE if a.negated != b.negated else 1.0), 2)


def _state(concepts: dict[str, int], rng: random.Random, keep: float) -> dict[str, int]:
    """The slots a sentence states: always the action, each other slot with probability ``keep``."""
    return {s: c for s, c in concepts.items() if s == "what" or rng.random() < keep}


def generate_sts_pairs(n: int, seed: int = 0, *, changed: float = 0.1, negated: float = 0.1,
                       other_topic: float = 0.12, keep: float = 0.7, reword: float = 0.5) -> list[dict]:
    """``n`` rows ``{"sentence1", "sentence2", "score"}``, the score (0-5) a function of the pair.

    One sentence states the whole event, the other the action and each of
    who, when and where with probability ``keep``; a slot both state alike is
    worded alike or, with probability ``reword``, in its other wording. In a
    share ``changed`` of the pairs one or two of the event's slots take
    another concept in the second sentence, in a share ``negated`` one
    sentence is negated, and in a share ``other_topic`` the second sentence is
    about the weather (score 0). The same arguments give the same rows.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        event = {s: rng.randrange(len(_FILLERS[s])) for s in SLOTS}
        a = _Sentence(event, {s: rng.randrange(len(_FILLERS[s][c])) for s, c in event.items()})
        kind = rng.random()
        if kind < other_topic:
            first, second, score = a.render(rng), _weather(rng), 0.0
        else:
            other = dict(event)
            if kind < other_topic + changed:
                for s in rng.sample(SLOTS, rng.choice((1, 2))):
                    other[s] = (event[s] + rng.randrange(1, len(_FILLERS[s]))) % len(_FILLERS[s])
            forms = {s: (a.forms[s] + 1) % len(_FILLERS[s][c]) if other[s] == event[s] and rng.random() < reword
                     else (a.forms[s] if other[s] == event[s] else rng.randrange(len(_FILLERS[s][c])))
                     for s, c in other.items()}
            is_negated = other_topic + changed <= kind < other_topic + changed + negated
            b = _Sentence(_state(other, rng, keep), forms, negated=is_negated)
            first, second, score = a.render(rng), b.render(rng), similarity(a, b)
        if rng.random() < 0.5:  # the score is symmetric: either sentence may be the fuller, or the negated one
            first, second = second, first
        rows.append({"sentence1": first, "sentence2": second, "score": score})
    return rows


def write_sts_files(folder: Path, n: int, n_train: int, seed: int = 0, **options) -> dict[str, Path]:
    """Write ``n`` generated rows as ``train.jsonl`` (the first ``n_train``) and ``validation.jsonl``."""
    rows = generate_sts_pairs(n, seed, **options)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in (("train", rows[:n_train]), ("validation", rows[n_train:])):
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return paths
