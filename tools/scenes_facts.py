"""Scene families about facts: counts and quantities, dates and times.

Phenomena: numbers that agree or differ (사과를 세 개 샀다 / 다섯 개), hypernyms of
bought things (사과 -> 과일), dates, weekdays and hours (5월 3일 -> 5월).
"""

from __future__ import annotations

import random

from tools.korean import NATIVE, Pred, cop, j, other, pick, s
from tools.scene import C, Cand, E, N, Scene
from tools.scenes_daily import CITIES, NAMES

_END = {"plain": "다", "formal": "습니다", "polite": "어요"}


def _now(plain: str, formal: str, polite: str) -> tuple[str, str, str]:
    return (plain, formal, polite)


# ---------------------------------------------------------------------------------------------- quantities

_BOUGHT = Pred("샀", "사지", adn="산")
_CAME = Pred("왔", "오지")
_ATTENDED = Pred("참석했", "참석하지")
# (item, counter, hypernym or None, shops)
_ITEMS = (
    ("사과", "개", "과일", ("시장", "마트")), ("귤", "개", "과일", ("시장", "마트")),
    ("복숭아", "개", "과일", ("시장", "과일 가게")), ("참외", "개", "과일", ("시장", "과일 가게")),
    ("공책", "권", "학용품", ("문구점", "마트")), ("연필", "자루", "학용품", ("문구점", "마트")),
    ("지우개", "개", "학용품", ("문구점",)), ("장미", "송이", "꽃", ("꽃집", "시장")),
    ("튤립", "송이", "꽃", ("꽃집",)), ("생수", "병", "음료", ("편의점", "마트")),
    ("콜라", "캔", "음료", ("편의점", "마트")), ("양말", "켤레", None, ("시장", "마트")),
)
# kinds whose members share a counter, so that 과일을 세 개 샀다 reads well
_COUNTED_KINDS = ("과일", "꽃")
_GATHERINGS = ("회의", "동아리 모임", "독서 모임", "세미나", "동창회", "생일 파티", "송년회", "설명회", "워크숍")
_COUNT_FRAMES = ("obj_num", "num_obj", "generic", "none", "came", "attended")


def count(rng: random.Random) -> Scene:
    frame = pick(rng, _COUNT_FRAMES)
    p = pick(rng, NAMES)
    q = other(rng, NAMES, p)
    if frame in ("came", "attended"):
        return _attendance(rng, frame, p)
    countable = [x for x in _ITEMS if x[2] in _COUNTED_KINDS]
    item, counter, gen, shops = pick(rng, countable if frame == "generic" else _ITEMS)
    item2 = other(rng, [x[0] for x in _ITEMS if x[2] == gen], item) if gen else "사과"
    n = rng.randint(2, 10)
    m = other(rng, range(1, 11), n)
    shop = pick(rng, shops) if rng.random() < 0.6 or frame == "generic" else ""
    shop2 = other(rng, shops + ("마트", "시장", "백화점"), shop)
    top, sub = j(p, "topic"), j(p, "subj")
    how_many, other_many = f"{NATIVE[n]} {counter}", f"{NATIVE[m]} {counter}"
    at = shop + "에서" if shop else ""

    def render(r: str) -> tuple[str, list[Cand]]:
        bought, not_bought = _BOUGHT.say(r), _BOUGHT.say(r, neg=True)
        if frame == "none":
            prem = s(top, at, j(item, "obj"), "하나도", not_bought)
            return prem, [("affirm", C, s(top, j(item, "obj"), how_many, bought)),
                          ("neg_drop", E, s(top, j(item, "obj"), not_bought)),
                          ("other_item", N, s(top, j(item2, "obj"), bought)),
                          ("other_person", N, s(j(q, "topic"), j(item, "obj"), how_many, bought))]
        thing = gen if frame == "generic" else item
        if frame == "num_obj":
            prem = s(top, at, item, j(how_many, "obj"), bought)
        else:
            prem = s(top, at, j(thing, "obj"), how_many, bought)
        cands: list[Cand] = [
            ("count_same", E, s(sub, "산", j(thing, "topic"), cop(how_many, r, past=True))),
            ("count_other", C, s(sub, "산", j(thing, "topic"), cop(other_many, r, past=True))),
            ("bought_other", C, s(top, j(thing, "obj"), other_many, bought)),
            ("drop_number", E, s(top, j(thing, "obj"), bought)),
            ("negation", C, s(top, j(thing, "obj"), not_bought)),
            ("other_person", N, s(j(q, "topic"), j(thing, "obj"), how_many, bought)),
        ]
        if frame == "generic":
            cands.append(("specific", N, s(top, j(item, "obj"), how_many, bought)))
            return prem, cands
        one = f"{NATIVE[1]} {counter}만"
        cands += [("only_one", C, s(top, j(item, "obj"), one, bought)),
                  ("several", E, s(top, j(item, "obj"), "여러", counter, bought)),
                  ("other_item", N, s(top, item2 + "도", bought))]
        if gen:
            cands += [("hypernym", E, s(top, j(gen, "obj"), bought)),
                      ("neg_hypernym", C, s(top, j(gen, "obj"), "하나도", not_bought))]
        if gen in _COUNTED_KINDS:
            cands.append(("hypernym_count", E, s(top, j(gen, "obj"), how_many, bought)))
        if shop:
            cands.append(("where", C, s(sub, j(item, "obj"), "산 곳은", cop(shop2, r, past=True))))
        else:
            cands.append(("where_added", N, s(top, shop2 + "에서", j(item, "obj"), bought)))
        return prem, cands

    return Scene("count", frame, item, render)


def _attendance(rng: random.Random, frame: str, p: str) -> Scene:
    g = pick(rng, _GATHERINGS)
    g2 = other(rng, _GATHERINGS, g)
    n = rng.randint(3, 30)
    m = other(rng, range(2, 31), n)
    day = pick(rng, ("", "어제", "오늘", "지난주"))

    def render(r: str) -> tuple[str, list[Cand]]:
        e = _END[r]
        where = f"{day} {g}".strip()
        if frame == "came":
            prem = s(where + "에는", f"{n}명이", _CAME.say(r))
        else:
            prem = s(f"{n}명이", where + "에", _ATTENDED.say(r))
        return prem, [
            ("same", E, s(g + "에 온 사람은", cop(f"{n}명", r, past=True))),
            ("other", C, s(g + "에 온 사람은", cop(f"{m}명", r, past=True))),
            ("other_attended", C, s(g + "에는", f"{m}명이", _ATTENDED.say(r))),
            ("nobody", C, s(g + "에는 아무도", _CAME.say(r, neg=True))),
            ("several", E, s(g + "에는 여러 사람이", _CAME.say(r))),
            ("other_gathering", N, s(g2 + "에는", f"{n}명이", _CAME.say(r))),
            ("member", N, s(j(p, "topic"), g + "에", _ATTENDED.say(r))),
            ("late", N, s(j(g, "topic"), "예정보다 늦게 시작되었" + e)),
        ]

    return Scene("count", frame, g, render)


# ---------------------------------------------------------------------------------------------- dates

# (verb, its adnominal, how the destination is marked, "the place" noun phrase)
_TRIPS = (
    (Pred("떠났", "떠나지", adn="떠난"), "dir", "간"),
    (Pred("갔", "가지", adn="간"), "에", "간"),
    (Pred("도착했", "도착하지", adn="도착한"), "에", "도착한"),
    (Pred("이사했", "이사하지", adn="이사한"), "dir", "이사한"),
)
_SCHEDULED = ("회의", "수업", "면접", "발표회", "동아리 모임", "세미나")
_WEEKDAYS = ("월", "화", "수", "목", "금", "토", "일")
_STARTS = Pred("시작했", "시작하지", _now("시작한다", "시작합니다", "시작해요"))
_IS = {"plain": "있다", "formal": "있습니다", "polite": "있어요"}
_IS_NOT = {"plain": "없다", "formal": "없습니다", "polite": "없어요"}
_GOES_ON = Pred("진행되었", "진행되지", _now("진행된다", "진행됩니다", "진행돼요"))
_DATE_FRAMES = ("date", "date_time", "schedule", "schedule_in")


def dates(rng: random.Random) -> Scene:
    frame = pick(rng, _DATE_FRAMES)
    if frame.startswith("schedule"):
        return _schedule(rng, frame)
    p = pick(rng, NAMES)
    q = other(rng, NAMES, p)
    verb, mark, where_adn = pick(rng, _TRIPS)
    city = pick(rng, CITIES)
    city2 = other(rng, CITIES, city)
    month, day = rng.randint(1, 12), rng.randint(1, 25)
    month2, day2 = other(rng, range(1, 13), month), other(rng, range(1, 29), day)
    later = rng.randint(day + 1, 28)
    hour = rng.randint(6, 11)
    hour2 = other(rng, range(6, 12), hour)
    date = f"{month}월 {day}일"
    when = f"{date} 오전 {hour}시에" if frame == "date_time" else f"{date}에"
    top, sub = j(p, "topic"), j(p, "subj")
    dest = j(city, "dir") if mark == "dir" else city + "에"

    def render(r: str) -> tuple[str, list[Cand]]:
        went = verb.say(r)
        prem = s(top, when, dest, went)
        cands: list[Cand] = [
            ("month", E, s(top, f"{month}월에", dest, went)),
            ("other_month", C, s(sub, dest, verb.adn, "것은", cop(f"{month2}월", r, past=True))),
            ("same_date", E, s(sub, dest, verb.adn, "날은", cop(date, r, past=True))),
            ("other_date", C, s(sub, dest, verb.adn, "날은", cop(f"{month}월 {day2}일", r, past=True))),
            ("other_city", C, s(sub, f"{date}에", where_adn, "곳은", cop(city2, r, past=True))),
            ("negation", C, s(top, f"{date}에", dest, verb.say(r, neg=True))),
            ("companion", N, s(top, j(q, "with"), "함께", dest, went)),
            ("other_person", N, s(j(q, "topic"), f"{date}에", dest, went)),
        ]
        if verb.adn in ("떠난", "간"):
            cands.append(("return", N, s(top, f"{month}월 {later}일에 집으로 돌아왔" + _END[r])))
        if frame == "date_time":
            cands += [("hour", E, s(top, f"오전 {hour}시에", dest, went)),
                      ("other_hour", C, s(sub, dest, verb.adn, "시각은", cop(f"오전 {hour2}시", r, past=True)))]
        return prem, cands

    return Scene("dates", frame, verb.adn, render)


def _schedule(rng: random.Random, frame: str) -> Scene:
    ev = pick(rng, _SCHEDULED)
    ev2 = other(rng, _SCHEDULED, ev)
    wd = pick(rng, _WEEKDAYS) + "요일"
    wd2 = other(rng, _WEEKDAYS, wd[0]) + "요일"
    hour = rng.randint(1, 6)
    hour2 = other(rng, range(1, 7), hour)
    room = pick(rng, ("3층 회의실", "2층 강의실", "본관 세미나실", "별관 대회의실"))
    top = j(ev, "topic")

    def render(r: str) -> tuple[str, list[Cand]]:
        starts = _STARTS.say(r, past=False)
        if frame == "schedule":
            prem = s(top, f"{wd} 오후 {hour}시에", starts)
        else:
            prem = s(f"{wd} 오후 {hour}시에는", j(ev, "subj"), _IS[r])
        return prem, [
            ("weekday", E, s(top, f"{wd}에", _IS[r])),
            ("same_day", E, s(j(ev, "subj"), "있는 날은", cop(wd, r))),
            ("other_weekday", C, s(j(ev, "subj"), "있는 날은", cop(wd2, r))),
            ("same_hour", E, s(top, f"오후 {hour}시에", starts)),
            ("other_hour", C, s(top, f"오후 {hour2}시에", starts)),
            ("negation", C, s(top, f"{wd}에는", _IS_NOT[r])),
            ("duration", N, s(top, "두 시간 동안", _GOES_ON.say(r, past=False))),
            ("room", N, s(top, room + "에서", _GOES_ON.say(r, past=False))),
            ("other_event", N, s(j(ev2, "topic"), f"{wd2} 오후 {hour2}시에", starts)),
        ]

    return Scene("dates", frame, ev, render)
