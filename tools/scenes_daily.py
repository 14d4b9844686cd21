"""Scene families about everyday events: what someone did, the weather, and events held or cancelled.

Phenomena: negation (of the premise and of the hypothesis), hypernyms
(자전거를 탔다 -> 운동을 했다, and the reverse, which is neutral), dates and
places that differ, added details the premise does not state (a companion,
another person, another day: neutral), weather antonyms (비가 온다 / 날씨가
맑다), and events cancelled or held as planned, with their weather causes.
"""

from __future__ import annotations

import random

from tools.korean import Pred, cop, j, not_true, other, pick, s
from tools.scene import C, Cand, E, N, Scene

NAMES = ("민수", "지영", "서준", "하은", "도윤", "수진", "현우", "예린", "준호", "소연")
_RELATIVE_DAYS = ("어제", "그저께", "지난 금요일", "지난 토요일", "지난 일요일")




def day_adv(day: str) -> str:
    """어제 / 지난 토요일에 / 5월 14일에."""
    return day if day in ("어제", "그저께", "오늘") else day + "에"


# ---------------------------------------------------------------------------------------------- activity

_DID = Pred("했", "하지", adn="한")
_ATE = Pred("먹었", "먹지", adn="먹은")
_DRANK = Pred("마셨", "마시지", adn="마신")
_READ = Pred("읽었", "읽지", adn="읽은")
_PLAYED = Pred("쳤", "치지", adn="친")
_WAS = Pred("있었", "있지")
# hypernym: (object, predicate)
_GENERIC = {"운동": ("운동을", _DID), "음식": ("음식을", _ATE), "식사": ("식사를", _DID), "음료": ("음료를", _DRANK),
            "책": ("책을", _READ), "악기": ("악기를", Pred("연주했", "연주하지", adn="연주한"))}
# (object, predicate, hypernym or None, places)
_ACTS = (
    ("자전거를", Pred("탔", "타지", adn="탄"), "운동", ("공원", "강변 산책로", "운동장")),
    ("축구를", _DID, "운동", ("운동장", "공원")),
    ("배드민턴을", _PLAYED, "운동", ("공원", "체육관")),
    ("수영을", _DID, "운동", ("수영장", "바다")),
    ("요가를", _DID, "운동", ("체육관", "공원")),
    ("김밥을", _ATE, "음식", ("공원", "분식집")),
    ("밥을", _ATE, "식사", ("식당", "학교 식당")),
    ("점심을", _ATE, "식사", ("식당", "회사 식당")),
    ("떡볶이를", _ATE, "음식", ("분식집", "시장")),
    ("라면을", _ATE, "음식", ("편의점", "분식집")),
    ("커피를", _DRANK, "음료", ("카페", "사무실")),
    ("녹차를", _DRANK, "음료", ("카페", "찻집")),
    ("주스를", _DRANK, "음료", ("카페", "공원")),
    ("소설책을", _READ, "책", ("도서관", "카페")),
    ("만화책을", _READ, "책", ("도서관", "서점")),
    ("피아노를", _PLAYED, "악기", ("음악실", "연습실")),
    ("기타를", _PLAYED, "악기", ("음악실", "공원")),
    ("사진을", Pred("찍었", "찍지", adn="찍은"), None, ("공원", "바닷가")),
    ("영화를", Pred("봤", "보지", adn="본"), None, ("영화관", "학교 강당")),
    ("노래를", Pred("불렀", "부르지", adn="부른"), None, ("노래방", "음악실")),
)
_ACTIVITY_FRAMES = ("day_place", "place", "day", "with", "generic", "neg")


def activity(rng: random.Random) -> Scene:
    p = pick(rng, NAMES)
    comp = other(rng, NAMES, p)
    third = other(rng, NAMES, p, comp)
    obj, verb, gen, places = pick(rng, _ACTS)
    place = pick(rng, places)
    place2 = other(rng, ("공원", "도서관", "카페", "운동장", "시장", "체육관", "바닷가"), place)
    day = pick(rng, _RELATIVE_DAYS)
    day2 = other(rng, _RELATIVE_DAYS, day)
    frames = _ACTIVITY_FRAMES if gen else tuple(f for f in _ACTIVITY_FRAMES if f != "generic")
    frame = pick(rng, frames)
    gobj, gverb = _GENERIC[gen] if gen else ("", None)
    top, sub, ctop, ttop = j(p, "topic"), j(p, "subj"), j(comp, "topic"), j(third, "topic")
    has_day = frame != "place"
    has_place = frame in ("day_place", "place", "with", "generic")
    d = day_adv(day) if has_day else ""

    def render(r: str) -> tuple[str, list[Cand]]:
        did, didnt = verb.say(r), verb.say(r, neg=True)
        cands: list[Cand] = []
        if frame == "neg":
            prem = s(top, d, obj, didnt)
            cands += [("affirm", C, s(top, d, obj, did)),
                      ("affirm_place", C, s(top, d, place + "에서", obj, did)),
                      ("neg_place", E, s(top, d, place + "에서", obj, didnt)),
                      ("not_true", E, s(sub, d, obj, verb.say("plain") + "는 말은", not_true(r))),
                      ("other_day", N, s(top, day_adv(day2), obj, did)),
                      ("other_person", N, s(ttop, d, obj, did))]
            return prem, cands
        if frame == "generic":
            prem = s(top, d, place + "에서", gobj, gverb.say(r))
            cands += [("specific", N, s(top, d, obj, did)),
                      ("drop", E, s(top, gobj, gverb.say(r))),
                      ("where_same", E, s(sub, d, gobj, gverb.adn, "곳은", cop(place, r, past=True))),
                      ("negation", C, s(top, d, gobj, gverb.say(r, neg=True))),
                      ("home", C, s(top, day, "하루 종일 집에만", _WAS.say(r))),
                      ("other_person", N, s(ttop, d, gobj, gverb.say(r)))]
            return prem, cands
        with_ = j(comp, "with") + " 함께"
        prem = s(top, d, with_ if frame == "with" else "", place + "에서" if has_place else "", obj, did)
        cands += [("drop", E, s(top, obj, did)),
                  ("negation", C, s(top, d, obj, didnt)),
                  ("companion", E if frame == "with" else N, s(top, d, with_, obj, did)),
                  ("alone", C if frame == "with" else N, s(top, d, "혼자", obj, did)),
                  ("first_time", N, s(top, "처음으로", obj, did)),
                  ("other_person", N, s(ttop, d, place + "에서" if has_place else "", obj, did)),
                  ("other_person_neg", N, s(ttop, d, obj, didnt))]
        if frame == "with":
            cands.append(("companion_did", E, s(ctop, d, obj, did)))
        if gen:
            cands += [("hypernym", E, s(top, d, gobj, gverb.say(r))),
                      ("neg_hypernym", C, s(top, d, gobj, gverb.say(r, neg=True)))]
        if has_day and has_place:
            cands += [("drop_day", E, s(top, place + "에서", obj, did)),
                      ("drop_place", E, s(top, d, obj, did))]
        if has_day:
            cands += [("home", C, s(top, day, "하루 종일 집에만", _WAS.say(r))),
                      ("when", C, s(sub, obj, verb.adn, "날은", cop(day2, r, past=True))),
                      ("when_same", E, s(sub, obj, verb.adn, "날은", cop(day, r, past=True)))]
        if has_place:
            cands += [("where", C, s(sub, d, obj, verb.adn, "곳은", cop(place2, r, past=True))),
                      ("where_same", E, s(sub, d, obj, verb.adn, "곳은", cop(place, r, past=True)))]
        return prem, cands

    return Scene("activity", frame, obj, render)


# ---------------------------------------------------------------------------------------------- weather


def _now(plain: str, formal: str, polite: str) -> tuple[str, str, str]:
    return (plain, formal, polite)


_COMES = Pred("왔", "오지", _now("온다", "옵니다", "와요"))
_FALLS = Pred("내렸", "내리지", _now("내린다", "내립니다", "내려요"))
_CLEAR = Pred("맑았", "맑지", _now("맑다", "맑습니다", "맑아요"), adj=True)
_CLOUDY = Pred("흐렸", "흐리지", _now("흐리다", "흐립니다", "흐려요"), adj=True)
_HOT = Pred("더웠", "덥지", _now("덥다", "덥습니다", "더워요"), adj=True)
_COLD = Pred("추웠", "춥지", _now("춥다", "춥습니다", "추워요"), adj=True)
_BLOWS = Pred("불었", "불지", _now("분다", "붑니다", "불어요"))
_HIGH = Pred("높았", "높지", _now("높다", "높습니다", "높아요"), adj=True)
_LOW = Pred("낮았", "낮지", _now("낮다", "낮습니다", "낮아요"), adj=True)
# condition -> (plain surfaces, which also serve as hypotheses; intensified ones, for premises only)
_SKY = {
    "rain": ((("비가", _COMES), ("비가", _FALLS)), (("비가 많이", _COMES), ("하루 종일 비가", _FALLS))),
    "snow": ((("눈이", _COMES), ("눈이", _FALLS)), (("눈이 많이", _COMES),)),
    "clear": ((("날씨가", _CLEAR), ("하늘이", _CLEAR)), (("하늘이 아주", _CLEAR),)),
    "cloudy": ((("날씨가", _CLOUDY), ("하늘이", _CLOUDY)), (("하늘이 잔뜩", _CLOUDY),)),
    "hot": ((("날씨가", _HOT), ("기온이", _HIGH)), (("날씨가 무척", _HOT),)),
    "cold": ((("날씨가", _COLD), ("기온이", _LOW)), (("날씨가 몹시", _COLD),)),
    "windy": ((("바람이", _BLOWS),), (("바람이 세게", _BLOWS),)),
}
# how the second condition stands given the first; pairs left out are unclear (rain and snow, snow and heat)
_SKY_REL = {
    ("rain", "clear"): C, ("rain", "cloudy"): E, ("rain", "hot"): N, ("rain", "cold"): N, ("rain", "windy"): N,
    ("snow", "clear"): C, ("snow", "cloudy"): E, ("snow", "windy"): N,
    ("clear", "rain"): C, ("clear", "snow"): C, ("clear", "cloudy"): C, ("clear", "hot"): N,
    ("clear", "cold"): N, ("clear", "windy"): N,
    ("cloudy", "clear"): C, ("cloudy", "rain"): N, ("cloudy", "snow"): N, ("cloudy", "hot"): N,
    ("cloudy", "cold"): N, ("cloudy", "windy"): N,
    ("hot", "cold"): C, ("hot", "rain"): N, ("hot", "clear"): N, ("hot", "cloudy"): N, ("hot", "windy"): N,
    ("cold", "hot"): C, ("cold", "rain"): N, ("cold", "snow"): N, ("cold", "clear"): N, ("cold", "cloudy"): N,
    ("cold", "windy"): N,
    ("windy", "rain"): N, ("windy", "clear"): N, ("windy", "cloudy"): N, ("windy", "hot"): N, ("windy", "cold"): N,
}
_NOW_TIMES = ("오늘은", "지금은", "아침부터")
_PAST_TIMES = ("어제는", "그저께는", "지난 주말에는", "어젯밤에는")
CITIES = ("서울", "부산", "대구", "인천", "광주", "대전", "제주", "강릉", "춘천", "전주", "여수", "경주")
_WEATHER_FRAMES = ("bare", "time_now", "time_past", "city_now", "city_past", "neg")


def _sky(subject: str, pred: Pred, r: str, past: bool, neg: bool, city: str = "") -> str:
    """A weather clause; a city is 부산에는 before rain or wind, 부산은 before 날씨/하늘."""
    where = ""
    if city:
        where = j(city, "topic") if subject.startswith(("날씨", "하늘")) else city + "에는"
    return " ".join(x for x in (where, subject, pred.say(r, past=past, neg=neg)) if x)


def weather(rng: random.Random) -> Scene:
    frame = pick(rng, _WEATHER_FRAMES)
    cond = pick(rng, ("rain", "snow", "clear", "hot", "cold") if frame == "neg" else tuple(_SKY))
    plain, strong = _SKY[cond]
    surface = pick(rng, plain if frame == "neg" else plain + strong)
    past = frame in ("time_past", "city_past") or (frame == "neg" and rng.random() < 0.4)
    time = pick(rng, _PAST_TIMES if past else _NOW_TIMES) if frame != "bare" and rng.random() < 0.8 else ""
    if frame in ("city_now", "city_past"):
        time = "어제" if past else pick(rng, ("지금", "오늘", ""))
    city = pick(rng, CITIES) if frame.startswith("city") else ""
    city2 = other(rng, CITIES, city)
    time2 = pick(rng, _PAST_TIMES if not past else ("지금은", "오늘은"))
    with_time = rng.random() < 0.5  # hypotheses repeat the premise's time, or leave it implied
    ys = {lab: [y for (x, y), rel in _SKY_REL.items() if x == cond and rel == lab] for lab in (E, C, N)}
    y_for = {lab: pick(rng, found) if found else None for lab, found in ys.items()}
    hyp_surface = {y: pick(rng, _SKY[y][0]) for y in _SKY}
    # a plain paraphrase of the premise's condition, if there is one that differs from it
    same = [x for x in plain if x != surface]
    same = pick(rng, same) if same else None

    def render(r: str) -> tuple[str, list[Cand]]:
        prem = s(time, _sky(*surface, r, past, frame == "neg", city))
        t = time if with_time else ""

        def hyp(surf: tuple[str, Pred], neg: bool, when: str = t, where: str = city, tense: bool = past) -> str:
            return s(when, _sky(*surf, r, tense, neg, where))

        cands: list[Cand] = []
        yc, ye, yn = (y_for[lab] for lab in (C, E, N))
        if frame == "neg":
            cands.append(("affirm", C, hyp(pick_surface(plain), False)))
            if same:
                cands.append(("neg_same", E, hyp(same, True)))
            if yn:
                cands.append(("unrelated", N, hyp(hyp_surface[yn], False)))
            return prem, cands
        cands.append(("negation", C, hyp(pick_surface(plain), True)))
        if same:
            cands.append(("same", E, hyp(same, False)))
        if yc:
            cands.append(("opposite", C, hyp(hyp_surface[yc], False)))
        if ye:
            cands.append(("implied", E, hyp(hyp_surface[ye], False)))
        if yn:
            cands.append(("unrelated", N, hyp(hyp_surface[yn], False)))
        if city:
            cands.append(("other_city", N, hyp(hyp_surface[yc or yn], False, where=city2)))
        elif time:
            cands.append(("other_time", N, hyp(hyp_surface[yc or yn], False, when=time2, tense=not past)))
        return prem, cands

    def pick_surface(options):
        return options[0] if surface not in options else surface

    return Scene("weather", frame, cond, render)


# ---------------------------------------------------------------------------------------------- events

EVENTS = ("경기", "축구 경기", "야구 경기", "운동회", "체육 대회", "음악회", "야외 공연", "불꽃 축제",
          "마라톤 대회", "소풍", "벼룩시장", "농구 경기")
_EVENT_TIMES = ("", "오늘은", "어제는", "지난 토요일에는", "지난 주말에는")
_BAD = {"rain": ("비가 많이 와서", "비 때문에"), "snow": ("눈이 많이 와서", "눈 때문에"),
        "wind": ("바람이 너무 세게 불어서", "강풍 때문에"), "typhoon": ("태풍이 와서", "태풍 때문에")}
_GOOD = {"clear": "날씨가 맑아서", "good": "날씨가 좋아서"}
# the weather a cause states, and its opposite
_CAUSE_FACT = {
    "rain": ("비가 많이 왔", "날씨가 맑았"), "snow": ("눈이 많이 왔", "날씨가 맑았"),
    "wind": ("바람이 세게 불었", "바람이 전혀 불지 않았"), "typhoon": ("태풍이 왔", "날씨가 맑았"),
    "clear": ("날씨가 맑았", "비가 많이 왔"), "good": ("날씨가 좋았", "비가 많이 왔"),
    "despite": ("비가 왔", "비가 한 방울도 오지 않았"),
}
_EVENT_FRAMES = ("cause_cancel", "cancel_because", "cancel", "cause_held", "despite_held", "held")
_END = {"plain": "다", "formal": "습니다", "polite": "어요"}


def events(rng: random.Random) -> Scene:
    ev = pick(rng, EVENTS)
    ev2 = other(rng, EVENTS, ev)
    frame = pick(rng, _EVENT_FRAMES)
    cancelled = frame.startswith("cancel") or frame == "cause_cancel"
    cause = pick(rng, tuple(_BAD) if cancelled else tuple(_GOOD))
    if frame == "despite_held":
        cause = "despite"
    time = pick(rng, _EVENT_TIMES)
    hour = rng.randint(1, 7)
    # a hypothesis that repeats the time says 어제 경기는, not 어제는 경기는
    hyp_when = {"오늘은": "오늘", "어제는": "어제", "지난 토요일에는": "지난 토요일에",
                "지난 주말에는": "지난 주말에", "": ""}[time] if rng.random() < 0.3 else ""
    unrelated = pick(rng, ("날씨가 추웠", "날씨가 더웠", "하늘이 흐렸")) if cause in ("clear", "good") else \
        pick(rng, ("날씨가 추웠", "날씨가 더웠"))

    def render(r: str) -> tuple[str, list[Cand]]:
        e = _END[r]
        top, sub = j(ev, "topic"), j(ev, "subj")
        if frame == "cause_cancel":
            prem = s(time, _BAD[cause][0], sub, "취소되었" + e)
        elif frame == "cancel_because":
            prem = s(time, top, _BAD[cause][1], "취소되었" + e)
        elif frame == "cancel":
            prem = s(time, sub, "취소되었" + e)
        elif frame == "cause_held":
            prem = s(time, _GOOD[cause], top, "예정대로 열렸" + e)
        elif frame == "despite_held":
            prem = s(time, "비가 조금 왔지만", top, "예정대로 열렸" + e)
        else:
            prem = s(time, top, "예정대로 열렸" + e)
        t = hyp_when
        yes, no = (E, C) if not cancelled else (C, E)
        cands: list[Cand] = [
            ("as_planned", yes, s(t, top, "예정대로 열렸" + e)),
            ("safely_held", yes, s(t, top, "무사히 열렸" + e)),
            ("not_cancelled", yes, s(t, top, "취소되지 않았" + e)),
            ("cancelled", no, s(t, sub, "취소되었" + e)),
            ("not_held", no, s(t, top, "열리지 않았" + e)),
            ("planned_time", N, s(top, f"원래 오후 {hour}시에 시작할", cop("예정", r, past=True))),
            ("other_event", N, s(t, j(ev2, "subj"), "취소되었" + e) if not cancelled
             else s(t, j(ev2, "topic"), "예정대로 열렸" + e)),
        ]
        if cancelled:
            cands += [("reschedule", N, s(top, "다음 주에 다시", {"plain": "열린다", "formal": "열립니다",
                                                                "polite": "열려요"}[r])),
                      ("feeling", N, s("사람들은 무척 아쉬워했" + e))]
        else:
            cands += [("crowd", N, s(ev + "에는 사람이 많이 모였" + e)),
                      ("feeling", N, s("사람들은 무척 즐거워했" + e))]
        if frame != "cancel" and frame != "held":
            fact, opposite = _CAUSE_FACT[cause]
            when = time if hyp_when else ""
            cands += [("cause_weather", E, s(when, fact + e)), ("opposite_weather", C, s(when, opposite + e)),
                      ("unrelated_weather", N, s(when, unrelated + e))]
        return prem, cands

    return Scene("events", frame, ev, render)
