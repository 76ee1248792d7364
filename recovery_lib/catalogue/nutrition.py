"""Catalogue entries: nutrition, every ``dietary_*`` metric and its short name.

The vendor's list uses short names (``protein``, ``caffeine``) for all but ``dietary_energy``,
``dietary_water`` and ``dietary_sugar``; older app versions and ingesters use ``dietary_<name>``.
Both are accepted. Columns and their units follow the Health Export API's ``nutrition_metrics``
(grams, milligrams or micrograms per nutrient); values are converted from the exporter's units.
"""

from __future__ import annotations

from recovery_lib.catalogue.model import MetricSpec
from recovery_lib.catalogue.vitals import qty

NUTRIENT = (0.0, 1e7)  # in the column's unit: generous, a day's sum may be large in mcg
N = "nutrition_metrics"

# (metric name, column, column unit, further aliases)
_MASSES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("biotin", "dietary_biotin", "mcg", ()),
    ("caffeine", "dietary_caffeine", "mg", ()),
    ("calcium", "dietary_calcium", "mg", ()),
    ("carbohydrates", "dietary_carbohydrates", "g", ()),
    ("chloride", "dietary_chloride", "mg", ()),
    ("cholesterol", "dietary_cholesterol", "mg", ()),
    ("chromium", "dietary_chromium", "mcg", ()),
    ("copper", "dietary_copper", "mg", ()),
    ("fiber", "dietary_fiber", "g", ()),
    ("folate", "dietary_folate", "mcg", ()),
    ("iodine", "dietary_iodine", "mcg", ()),
    ("iron", "dietary_iron", "mg", ()),
    ("magnesium", "dietary_magnesium", "mg", ()),
    ("manganese", "dietary_manganese", "mg", ()),
    ("molybdenum", "dietary_molybdenum", "mcg", ()),
    ("monounsaturated_fat", "dietary_fat_monounsaturated", "g", ("monosaturated_fat", "dietary_fat_monounsaturated")),
    ("niacin", "dietary_vitamin_b3_niacin", "mg", ()),
    ("pantothenic_acid", "dietary_pantothenic_acid", "mg", ()),
    ("phosphorus", "dietary_phosphorus", "mg", ()),
    ("polyunsaturated_fat", "dietary_fat_polyunsaturated", "g", ("dietary_fat_polyunsaturated",)),
    ("potassium", "dietary_potassium", "mg", ()),
    ("protein", "dietary_protein", "g", ()),
    ("riboflavin", "dietary_vitamin_b2_riboflavin", "mg", ()),
    ("saturated_fat", "dietary_fat_saturated", "g", ("dietary_fat_saturated",)),
    ("selenium", "dietary_selenium", "mcg", ()),
    ("sodium", "dietary_sodium", "mg", ()),
    ("thiamin", "dietary_vitamin_b1_thiamine", "mg", ("thiamine",)),
    ("total_fat", "dietary_fat_total", "g", ("dietary_fat_total", "fat")),
    ("vitamin_a", "dietary_vitamin_a", "mcg", ()),
    ("vitamin_b6", "dietary_vitamin_b6_pyridoxine", "mg", ()),
    ("vitamin_b12", "dietary_vitamin_b12_cobalamin", "mcg", ()),
    ("vitamin_c", "dietary_vitamin_c", "mg", ()),
    ("vitamin_e", "dietary_vitamin_e", "mg", ()),
    ("vitamin_k", "dietary_vitamin_k", "mcg", ()),
    ("zinc", "dietary_zinc", "mg", ()),
)


def _aliases(name: str, more: tuple[str, ...]) -> tuple[str, ...]:
    found = (f"dietary_{name}", *more)
    return tuple(dict.fromkeys(a for a in found if a != name))


NUTRITION: tuple[MetricSpec, ...] = (
    qty("dietary_energy", N, "dietary_energy_consumed", NUTRIENT, kind="energy", unit="kcal",
        aliases=("dietary_energy_consumed", "energy_consumed")),
    qty("dietary_water", N, "dietary_water", NUTRIENT, kind="volume", unit="L", aliases=("water",)),
    qty("dietary_sugar", N, "dietary_sugar", NUTRIENT, kind="mass", unit="g", aliases=("sugar",)),
    qty("vitamin_d", N, "dietary_vitamin_d", NUTRIENT, kind="vitamin_d", unit="IU", aliases=("dietary_vitamin_d",)),
    *(qty(name, N, column, NUTRIENT, kind="mass", unit=unit, aliases=_aliases(name, more))
      for name, column, unit, more in _MASSES),
)
