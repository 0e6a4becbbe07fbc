"""The variety registry: MSA, the 25 MADAR city dialects, and the coarse groups.

MADAR's 3-letter city codes are the project's identifiers everywhere (run configs, corpus
pairs, charts). Coarser corpora (Dial2MSA's EGY/GLF/LEV/MGR, for example) label pairs with
a group code; `members` maps a group onto the cities it covers so that both kinds of data
live in one registry. English (`ENG`) is registered as a source-only language because the
MADAR corpus pivots through English.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.errors import UnknownVarietyError

REGIONS = ("Standard", "Nile Valley", "Levant", "Gulf", "Iraq", "Yemen", "Maghreb")


@dataclass(frozen=True)
class Variety:
    code: str
    name: str
    arabic: str
    country: str
    region: str
    kind: str  # "msa", "city", "group" or "source"
    members: tuple[str, ...] = field(default=())
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_dialect(self) -> bool:
        return self.kind in ("city", "group")

    @property
    def label(self) -> str:
        """How the app shows a variety: English name, Arabic name, code."""
        return f"{self.name} · {self.arabic} ({self.code})"


_CITIES = [
    # code, English, Arabic, country, region, aliases
    ("ALE", "Aleppo", "حلب", "Syria", "Levant", ()),
    ("ALX", "Alexandria", "الإسكندرية", "Egypt", "Nile Valley", ()),
    ("ALG", "Algiers", "الجزائر", "Algeria", "Maghreb", ()),
    ("AMM", "Amman", "عمّان", "Jordan", "Levant", ()),
    ("ASW", "Aswan", "أسوان", "Egypt", "Nile Valley", ()),
    ("BAG", "Baghdad", "بغداد", "Iraq", "Iraq", ()),
    ("BAS", "Basra", "البصرة", "Iraq", "Iraq", ()),
    ("BEI", "Beirut", "بيروت", "Lebanon", "Levant", ()),
    ("BEN", "Benghazi", "بنغازي", "Libya", "Maghreb", ()),
    ("CAI", "Cairo", "القاهرة", "Egypt", "Nile Valley", ()),
    ("DAM", "Damascus", "دمشق", "Syria", "Levant", ()),
    ("DOH", "Doha", "الدوحة", "Qatar", "Gulf", ()),
    ("FES", "Fes", "فاس", "Morocco", "Maghreb", ("Fez",)),
    ("JED", "Jeddah", "جدة", "Saudi Arabia", "Gulf", ("Jedda",)),
    ("JER", "Jerusalem", "القدس", "Palestine", "Levant", ()),
    ("KHA", "Khartoum", "الخرطوم", "Sudan", "Nile Valley", ()),
    ("MOS", "Mosul", "الموصل", "Iraq", "Iraq", ()),
    ("MUS", "Muscat", "مسقط", "Oman", "Gulf", ()),
    ("RAB", "Rabat", "الرباط", "Morocco", "Maghreb", ()),
    ("RIY", "Riyadh", "الرياض", "Saudi Arabia", "Gulf", ()),
    ("SAL", "Salt", "السلط", "Jordan", "Levant", ()),
    ("SAN", "Sanaa", "صنعاء", "Yemen", "Yemen", ("Sana'a", "Sana")),
    ("SFX", "Sfax", "صفاقس", "Tunisia", "Maghreb", ()),
    ("TRI", "Tripoli", "طرابلس", "Libya", "Maghreb", ()),
    ("TUN", "Tunis", "تونس", "Tunisia", "Maghreb", ()),
]

_GROUPS = [
    # code, English, Arabic, region, members, aliases
    ("EGY", "Egyptian", "المصرية", "Nile Valley", ("CAI", "ALX", "ASW"), ("Egypt",)),
    ("SDN", "Sudanese", "السودانية", "Nile Valley", ("KHA",), ("Sudan",)),
    ("LEV", "Levantine", "الشامية", "Levant", ("ALE", "DAM", "BEI", "AMM", "SAL", "JER"), ("Levant",)),
    ("GLF", "Gulf", "الخليجية", "Gulf", ("DOH", "JED", "MUS", "RIY"), ("Gulf Arabic", "Khaleeji")),
    ("IRQ", "Iraqi", "العراقية", "Iraq", ("BAG", "BAS", "MOS"), ()),
    ("YEM", "Yemeni", "اليمنية", "Yemen", ("SAN",), ()),
    ("MGR", "Maghrebi", "المغاربية", "Maghreb", ("ALG", "BEN", "FES", "RAB", "SFX", "TRI", "TUN"), ("Maghreb",)),
]

MSA = Variety("MSA", "Modern Standard Arabic", "العربية الفصحى", "—", "Standard", "msa",
              aliases=("Standard Arabic", "Fusha", "Fusha Arabic"))
ENGLISH = Variety("ENG", "English", "الإنجليزية", "—", "—", "source", aliases=("EN",))

CITIES: tuple[Variety, ...] = tuple(
    Variety(code, name, ar, country, region, "city", aliases=aliases)
    for code, name, ar, country, region, aliases in _CITIES
)
GROUPS: tuple[Variety, ...] = tuple(
    Variety(code, name, ar, "—", region, "group", members=members, aliases=aliases)
    for code, name, ar, region, members, aliases in _GROUPS
)
ALL: tuple[Variety, ...] = (MSA, *CITIES, *GROUPS, ENGLISH)

_BY_KEY: dict[str, Variety] = {}
for _v in ALL:
    for _key in (_v.code, _v.name, _v.arabic, *_v.aliases):
        _BY_KEY[_key.casefold()] = _v

CITY_CODES: tuple[str, ...] = tuple(v.code for v in CITIES)
TARGET_CODES: tuple[str, ...] = ("MSA", *CITY_CODES)


def get(name_or_code: str) -> Variety:
    """Look a variety up by code, English or Arabic name, or alias, ignoring case."""
    key = str(name_or_code).strip().casefold()
    if key in _BY_KEY:
        return _BY_KEY[key]
    valid = ", ".join(v.code for v in ALL)
    raise UnknownVarietyError(f"unknown variety {name_or_code!r}; valid codes: {valid}")


def code(name_or_code: str) -> str:
    return get(name_or_code).code


def parse_list(text: str | list[str]) -> list[str]:
    """`'cai, Beirut,RIY'` -> `['CAI', 'BEI', 'RIY']`, in order, without repeats."""
    items = text.split(",") if isinstance(text, str) else list(text)
    codes: list[str] = []
    for item in items:
        if str(item).strip():
            c = code(item)
            if c not in codes:
                codes.append(c)
    return codes


def group_of(city_code: str) -> Variety | None:
    """The coarse group a city belongs to (CAI -> EGY), if any."""
    c = code(city_code)
    return next((g for g in GROUPS if c in g.members), None)


def by_region(varieties: tuple[Variety, ...] = (MSA, *CITIES)) -> dict[str, list[Variety]]:
    out: dict[str, list[Variety]] = {r: [] for r in REGIONS}
    for v in varieties:
        out.setdefault(v.region, []).append(v)
    return {r: vs for r, vs in out.items() if vs}


# Presets offered by the Train page and the CLI.
PRESETS: dict[str, tuple[str, ...]] = {
    "the 25 MADAR cities": CITY_CODES,
    "one per region": ("CAI", "BEI", "RIY", "BAG", "SAN", "RAB"),
    "Dial2MSA groups": ("EGY", "GLF", "LEV", "MGR"),
}
