"""The data arrays beside ``metrics``, as the exporter writes them: one entry per logged event.

``stateOfMind`` (moods and momentary emotions), ``medications`` (two medicines taken at one
instant, keyed by their names), ``symptoms`` (several logged together), ``cycleTracking`` (a
28-day cycle: flow, mucus, tests, contraception, each name the app knows), ``ecg`` (a recording
with its voltage samples) and ``heartRateNotifications`` (high heart rate, with the samples that
set it off). Who logs what follows the user's kit; names and labels are in the phone's language
(the app does not translate them), except cycle tracking's, which the catalogue matches in English.
Entries are pure functions of (user, array, day), like every value of the generator.

    >>> sorted(entries(profile, 28_000_000, 28_010_000, zone(600), False))   # doctest: +SKIP
    ['ecg', 'heartRateNotifications', 'medications', 'symptoms']
"""

from __future__ import annotations

import math
from datetime import timezone
from typing import Any

from recovery_lib.simulate.dates import fmt
from recovery_lib.simulate.profiles import UserProfile
from recovery_lib.simulate.values import DAY, daily, rand

ECG_SAMPLES = 512  # one second at 512 Hz: an excerpt of the 30-second recording, to keep payloads small
_WORDS = {
    "en": {"labels": ("Happy", "Calm", "Grateful", "Stressed", "Tired", "Content", "Hopeful"),
           "associations": ("Family", "Work", "Fitness", "Health", "Friends", "Weather"),
           "symptoms": ("Headache", "Fatigue", "Nausea", "Dizziness", "Coughing"),
           "medicines": (("Metformin 500 mg Tablet", "Tablet"), ("Lisinopril 10 mg Tablet", "Tablet"),
                         ("Atorvastatin 20 mg Tablet", "Tablet")),
           "rhythm": "Sinus Rhythm"},
    "es": {"labels": ("Feliz", "Tranquilo", "Agradecido", "Estresado", "Cansado", "Contento", "Esperanzado"),
           "associations": ("Familia", "Trabajo", "Ejercicio", "Salud", "Amigos", "Tiempo"),
           "symptoms": ("Dolor de cabeza", "Fatiga", "Náuseas", "Mareo", "Tos"),
           "medicines": (("Metformina 500 mg comprimido", "Comprimido"), ("Lisinopril 10 mg comprimido", "Comprimido"),
                         ("Atorvastatina 20 mg comprimido", "Comprimido")),
           "rhythm": "Ritmo sinusal"},
}
_CLASSES = ("veryUnpleasant", "unpleasant", "slightlyUnpleasant", "neutral", "slightlyPleasant", "pleasant",
            "veryPleasant")
_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def entries(p: UserProfile, start: int, end: int, tz: timezone, clock12: bool) -> dict[str, list[dict[str, Any]]]:
    """The data arrays this user's export holds for [start, end), by array name (empty ones left out)."""
    def date(t: float) -> str:
        return fmt(t, tz, clock12=clock12)  # type: ignore[arg-type]

    found: dict[str, list[dict[str, Any]]] = {}
    for d in daily(start, end, p.offset):
        base = d * DAY - p.offset
        for name, made in _day(p, d, base, date):
            if start <= made[0] < end:
                found.setdefault(name, []).append(made[1])
    for name in found:
        found[name].sort(key=lambda e: e["_t"])
        for entry in found[name]:
            del entry["_t"]
    return found


def _day(p: UserProfile, d: int, base: int, date: Any) -> list[tuple[str, tuple[int, dict[str, Any]]]]:
    """Every entry of local day ``d`` (with its instant), whatever the payload."""
    words = _WORDS[p.language]
    made: list[tuple[str, tuple[int, dict[str, Any]]]] = []

    def add(name: str, t: int, entry: dict[str, Any]) -> None:
        made.append((name, (t, {**entry, "_t": t})))

    r = rand(p.user_id, "entries", d)
    if p.kit == "wellness":
        for k, (t, kind) in enumerate(((base + 21 * 60 + 5 * int(12 * r[0]), "dailyMood"),
                                       (base + 9 * 60 + 5 * int(130 * r[1]), "momentaryEmotion"))):
            m = rand(p.user_id, "stateOfMind", t)
            if m[0] < (0.8 if k == 0 else 0.5):
                valence = round(2 * m[1] - 1, 3)
                labels = sorted({words["labels"][int(7 * x)] for x in m[2:4]})
                add("stateOfMind", t, {"id": f"som-{p.index}-{t}", "start": date(t), "end": date(t + 1),
                                       "kind": kind, "valence": valence,
                                       "valenceClassification": _CLASSES[min(6, int(3.5 * (valence + 1)))],
                                       "labels": labels, "associations": [words["associations"][int(6 * m[3])]]})
        for t, name, value in _cycle(p, d, base):
            entry: dict[str, Any] = {"start": date(t), "end": date(t + (DAY if t == base else 1)), "name": name,
                                     "value": value}
            if name == "Menstrual Flow":
                entry["isCycleStart"] = value == "Heavy"
            add("cycleTracking", t, entry)
    if p.kit == "clinic":
        for scheduled, medicines in ((base + 8 * 60, (0, 1)), (base + 20 * 60, (0, 2))):
            m = rand(p.user_id, "medications", scheduled)
            taken = scheduled + 5 * int(8 * m[0])  # both medicines of a dose at one instant
            for number in medicines:
                text, form = words["medicines"][number]
                entry = {"displayText": text, "start": date(taken), "end": date(taken),
                         "scheduledDate": date(scheduled), "form": form, "isArchived": False,
                         "status": "Taken" if m[1 + number] < 0.92 else "Skipped", "scheduledDosage": 1,
                         "units": "tablet", "codings": [{"system": _RXNORM, "code": f"86{1000 + 7 * number}"}]}
                if entry["status"] == "Taken":
                    entry["dosage"] = 1
                if number == 0:
                    entry["nickname"] = "Diabetes" if p.language == "en" else "Diabetes (mañana y noche)"
                add("medications", taken, entry)
        if r[2] < 0.3:
            t = base + 10 * 60 + 5 * int(60 * r[3])
            s = rand(p.user_id, "symptoms", t)
            for name in sorted({words["symptoms"][int(5 * x)] for x in s[:3]}):
                add("symptoms", t, {"start": date(t), "end": date(t + 30 + int(200 * s[3])), "name": name,
                                    "severity": ("Mild", "Moderate", "Severe", "Present")[int(4 * s[1])],
                                    "userEntered": True})
        if (d + p.index) % 3 == 0:
            t = base + 9 * 60 + 5 * int(100 * r[1])
            add("ecg", t, _ecg(p, t, date, words["rhythm"]))
        if r[3] < 0.25:
            t = base + 13 * 60 + 5 * int(90 * r[0])
            h = rand(p.user_id, "heartRateNotifications", t)
            spelling = ("type", "notificationType")[(p.index // 3) % 2]
            add("heartRateNotifications", t, {
                "start": date(t), "end": date(t + 10), spelling: "High Heart Rate", "threshold": 120,
                "heartRate": [{"date": date(t + k), "qty": round(122 + 25 * h[k % 4]), "units": "count/min"}
                              for k in range(5)],
                "heartRateVariation": [{"date": date(t + k), "qty": round(20 + 30 * h[(k + 1) % 4], 1),
                                        "units": "ms"} for k in range(0, 5, 2)],
            })
    return made


def _cycle(p: UserProfile, d: int, base: int) -> list[tuple[int, str, str]]:
    """(instant, name, value) of the cycle-tracking entries of day ``d`` (a 28-day cycle per user)."""
    c = (d + 7 * p.index) % 28
    r = rand(p.user_id, "cycle", d)
    found = []
    if c <= 4:
        found.append((base, "Menstrual Flow", ("Heavy", "Medium", "Medium", "Light", "Light")[c]))
    if c == 17 and r[0] < 0.3:
        found.append((base, "Intermenstrual Bleeding", "Present"))
    if c == 20 and r[0] < 0.5:
        found.append((base, "Spotting", "Present"))
    if 10 <= c <= 15:
        found.append((base + 7 * 60 + 30, "Cervical Mucus Quality", ("Creamy", "Watery", "EggWhite")[c % 3]))
    if 11 <= c <= 14:
        found.append((base + 8 * 60, "Ovulation Test Result", "Positive" if c == 13 else "Negative"))
    if c == 21:
        found.append((base + 7 * 60 + 15, "Progesterone Test Result", "Positive"))
    if c == 27 and r[1] < 0.4:
        found.append((base + 7 * 60, "Pregnancy Test Result", "Negative"))
    if r[2] < 0.12:
        found.append((base + 23 * 60 + 30, "Sexual Activity", "Protection Used"))
    if (p.index // 3) % 2 == 0:
        found.append((base + 21 * 60, "Contraceptive", "Oral"))
    elif r[3] < 0.5:
        found.append((base + 5 * 60 + 30, "Lactation", "Present"))
    return found


def _ecg(p: UserProfile, t: int, date: Any, rhythm: str) -> dict[str, Any]:
    r = rand(p.user_id, "ecg", t)
    rate = round(58 + 24 * r[0])
    beat = 60 / rate
    samples = []
    for k in range(ECG_SAMPLES):
        second = k / ECG_SAMPLES
        phase = (second % beat) / beat
        spike = 900 * math.exp(-((phase - 0.3) ** 2) / 0.0008)
        samples.append({"date": round(t * 60 + second, 4), "voltage": round(spike + 60 * math.sin(7 * second), 1),
                        "units": "µV"})
    return {"start": date(t), "end": date(t + 0.5), "classification": rhythm, "severity": "None",
            "averageHeartRate": rate, "samplingFrequency": 512, "numberOfVoltageMeasurements": ECG_SAMPLES,
            "voltageMeasurements": samples, "source": p.watch}
