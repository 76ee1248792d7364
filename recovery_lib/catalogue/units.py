"""Units: every unit the exporter writes, by kind, and how to convert it to a column's unit.

Health Auto Export follows the phone's unit preferences (``km`` or ``mi``, ``kcal`` or ``kJ``,
``degC`` or ``degF``, ``mg/dL`` or ``mmol/L``), and HealthKit spells some units its own way
(``mmol<180.1558800000541>/L``, ``count/min``, ``kcal/hr·kg``). Each kind has a base unit; a
unit is ``(scale, offset)`` to that base (an offset only for temperatures). A unit the table
does not know is refused (``invalid_point``, field ``units``): a value stored at a guessed scale
would be silently wrong.

    >>> conversion("length", "mi", "m")
    (1609.344, 0.0)
    >>> convert(98.6, "temperature", "degF", "degC")
    37.0
"""

from __future__ import annotations

Conversion = tuple[float, float]  # value_in_target = value * scale + offset

# kind -> unit (lower case, as matched) -> (scale, offset) to the kind's base unit (listed first).
UNITS: dict[str, dict[str, Conversion]] = {
    "count": {"count": (1.0, 0.0), "": (1.0, 0.0), "steps": (1.0, 0.0), "times": (1.0, 0.0)},
    "rate": {"count/min": (1.0, 0.0), "bpm": (1.0, 0.0), "/min": (1.0, 0.0), "breaths/min": (1.0, 0.0),
             "spm": (1.0, 0.0), "rpm": (1.0, 0.0)},
    "length": {"m": (1.0, 0.0), "km": (1000.0, 0.0), "mi": (1609.344, 0.0), "ft": (0.3048, 0.0),
               "in": (0.0254, 0.0), "cm": (0.01, 0.0), "mm": (0.001, 0.0), "yd": (0.9144, 0.0)},
    # No "cal": matched case-insensitively it would read a food label's "Cal" (kcal) a thousandth too small.
    "energy": {"kcal": (1.0, 0.0), "kj": (1 / 4.184, 0.0), "kilocalorie": (1.0, 0.0)},
    "time": {"min": (1.0, 0.0), "hr": (60.0, 0.0), "h": (60.0, 0.0), "s": (1 / 60, 0.0), "sec": (1 / 60, 0.0),
             "ms": (1 / 60000, 0.0), "day": (1440.0, 0.0)},
    "duration_ms": {"ms": (1.0, 0.0), "s": (1000.0, 0.0)},
    "speed": {"m/s": (1.0, 0.0), "km/hr": (1 / 3.6, 0.0), "km/h": (1 / 3.6, 0.0), "kmph": (1 / 3.6, 0.0),
              "mi/hr": (0.44704, 0.0), "mph": (0.44704, 0.0), "ft/s": (0.3048, 0.0), "m/hr": (1 / 3600, 0.0),
              "m/min": (1 / 60, 0.0)},
    "temperature": {"degc": (1.0, 0.0), "°c": (1.0, 0.0), "c": (1.0, 0.0),
                    "degf": (5 / 9, -32 * 5 / 9), "°f": (5 / 9, -32 * 5 / 9), "f": (5 / 9, -32 * 5 / 9),
                    "k": (1.0, -273.15)},
    "mass": {"kg": (1.0, 0.0), "g": (0.001, 0.0), "mg": (1e-6, 0.0), "mcg": (1e-9, 0.0), "µg": (1e-9, 0.0),
             "ug": (1e-9, 0.0), "lb": (0.45359237, 0.0), "lbs": (0.45359237, 0.0), "oz": (0.028349523125, 0.0),
             "st": (6.35029318, 0.0)},
    "volume": {"l": (1.0, 0.0), "ml": (0.001, 0.0), "dl": (0.1, 0.0), "fl_oz_us": (0.0295735295625, 0.0),
               "fl oz": (0.0295735295625, 0.0), "cup_us": (0.2365882365, 0.0)},
    "flow": {"l/min": (1.0, 0.0), "ml/min": (0.001, 0.0)},
    "glucose": {"mg/dl": (1.0, 0.0), "mmol/l": (18.0182, 0.0), "mmol<180.1558800000541>/l": (18.0182, 0.0)},
    "pressure": {"mmhg": (1.0, 0.0)},
    "percent": {"%": (1.0, 0.0), "percent": (1.0, 0.0)},
    "sound": {"dbaspl": (1.0, 0.0), "db": (1.0, 0.0), "dba": (1.0, 0.0)},
    "vo2": {"ml/(kg·min)": (1.0, 0.0), "ml/kg/min": (1.0, 0.0), "ml/kg·min": (1.0, 0.0), "ml/min·kg": (1.0, 0.0),
            "ml/(kg*min)": (1.0, 0.0)},
    "effort": {"kcal/hr·kg": (1.0, 0.0), "kcal/hr*kg": (1.0, 0.0), "kcal/(kg·hr)": (1.0, 0.0), "met": (1.0, 0.0)},
    "power": {"w": (1.0, 0.0), "kw": (1000.0, 0.0)},
    "insulin": {"iu": (1.0, 0.0), "u": (1.0, 0.0)},
    "uv": {"": (1.0, 0.0), "count": (1.0, 0.0), "uv index": (1.0, 0.0)},
    "bac": {"%": (1.0, 0.0)},
    "frequency": {"hz": (1.0, 0.0)},
    "angle": {"°": (1.0, 0.0), "deg": (1.0, 0.0), "degree": (1.0, 0.0)},
    "ratio": {"": (1.0, 0.0), "count": (1.0, 0.0), "%": (1.0, 0.0)},
    "vitamin_d": {"iu": (1.0, 0.0), "mcg": (40.0, 0.0), "µg": (40.0, 0.0), "ug": (40.0, 0.0)},
}
KINDS = frozenset(UNITS)


def _normalise(unit: str) -> str:
    return unit.strip().lower()


def conversion(kind: str, unit: object, target: str) -> Conversion | None:
    """``(scale, offset)`` from ``unit`` to ``target`` within ``kind``; None for an unknown unit.

    ``unit`` that is not a string is unknown (the caller chooses a default for an absent one).
    """
    table = UNITS[kind]
    if not isinstance(unit, str):
        return None
    source = table.get(_normalise(unit))
    to = table[_normalise(target)]
    if source is None:
        return None
    scale = source[0] / to[0]
    offset = (source[1] - to[1]) / to[0]
    return scale, offset


def apply(value: float, found: Conversion) -> float:
    """``value * scale + offset``, exactly as the SQL fast path computes it (no offset: no addition)."""
    scale, offset = found
    return value * scale + offset if offset else value * scale


def convert(value: float, kind: str, unit: object, target: str) -> float | None:
    """``value`` in ``unit`` expressed in ``target``; None for an unknown unit."""
    found = conversion(kind, unit, target)
    return None if found is None else apply(value, found)
