"""Write a coherent, deterministic sample export bundle of fictitious French hospital data.

The same (scale, seed, encoding, start) gives byte-identical files: one random.Random(seed)
drives every choice and no clock is read when ``start`` is given.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import random
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from . import _names as words
from ._bundle import FILES, FORMAT, MANIFEST, _gs1_check_digit

SCALES = ("small", "hospital")
SITE = "CH Jolival - Stérilisation centrale"
_TZ = ZoneInfo("Europe/Paris")


class _Scale(NamedTuple):
    departments: int
    set_types: int
    instances: int
    instruments: int
    endoscopes: int
    profiles: int
    rooms: int
    days: int
    endo_rooms: int
    models: int
    surgeons: int


_SCALES = {
    "small": _Scale(3, 12, 40, 400, 4, 10, 3, 3, 1, 40, 3),
    "hospital": _Scale(12, 400, 2500, 60_000, 40, 300, 15, 14, 3, 200, 6),
}
_ID_PARTS = {"small": "SMALL", "hospital": "HOSP"}
_FRAGILE = ("COELIO", "MICRO", "ARTHROSCOPIE", "HYSTEROSCOPIE", "CYSTOSCOPIE", "URETEROSCOPIE")
_SECOND = " N°2"
_ENDO_WEIGHTS = (12, 12, 4, 5, 3, 2, 2)


def write_sample(
    out: Path,
    *,
    scale: str = "small",
    seed: int = 1,
    encoding: str = "utf-8",
    start: date | None = None,
) -> Path:
    """Write a sample bundle folder at `out` (new or empty) that read_bundle accepts; return it."""
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        codec = ""
    if codec not in ("utf-8", "cp1252"):
        raise ValueError(f"unsupported encoding {encoding!r}: choose utf-8 or cp1252")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder")
    first_day = start if start is not None else date.today()
    rng = random.Random(seed)  # noqa: S311 - fictitious data, no secret
    tables = _Generator(_SCALES[scale], rng, first_day, codec).tables()
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for name, columns in FILES.items():
        data = _csv(columns, tables[name], codec)
        (out / name).write_bytes(data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": len(tables[name])}
    exported = datetime.combine(first_day - timedelta(days=1), time(22, 0), tzinfo=_TZ)
    manifest = {
        "format": FORMAT,
        "export_id": f"SAMPLE-{_ID_PARTS[scale]}-{first_day:%Y%m%d}-s{seed}",
        "exported_at": exported.isoformat(),
        "site": SITE,
        "files": files,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (out / MANIFEST).write_bytes(text.encode("utf-8"))
    return out


def _csv(columns: tuple[str, ...], rows: list[list[Any]], codec: str) -> bytes:
    """The CSV bytes: `;`, UTF-8 with BOM and LF, or Windows-1252 and CRLF."""
    buffer = io.StringIO()
    terminator = "\n" if codec == "utf-8" else "\r\n"
    writer = csv.writer(buffer, delimiter=";", lineterminator=terminator)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8-sig" if codec == "utf-8" else "cp1252")


class _Model(NamedTuple):
    description: str
    ref: str
    gtin: str


class _SetType(NamedTuple):
    code: str
    dept: words.Department
    fragile: bool
    wash: str
    steri: str
    lines: list[tuple[str, int, _Model | None, str]]  # item_type, qty, model, description


class _Profile(NamedTuple):
    code: str
    dept: words.Department
    procedure: str
    surgeon: str


class _Generator:
    """Builds the nine tables in order; every random draw comes from one Random."""

    def __init__(self, scale: _Scale, rng: random.Random, start: date, codec: str) -> None:
        self.scale = scale
        self.rng = rng
        self.start = start
        self.iso_dates = codec == "utf-8"
        self.exported = datetime.combine(start - timedelta(days=1), time(22, 0), tzinfo=_TZ)
        self.depts = words.DEPARTMENTS[: scale.departments]
        self.t: dict[str, list[list[Any]]] = {name: [] for name in FILES}

    def tables(self) -> dict[str, list[list[Any]]]:
        """All tables, keyed by file name, rows in FILES column order."""
        models = self._models()
        singles = self.rng.sample(models, max(4, len(models) // 5))
        types = self._set_types(models)
        instances = self._instances(types)
        self._instruments(types, instances, singles)
        endo_types = self._endoscopes()
        self._procedures(types)
        surgeons = self._surgeons()
        profiles = self._profiles(types, singles, surgeons)
        self._or_planning(profiles, surgeons)
        self._endo_planning(endo_types)
        return self.t

    # -- inventory -------------------------------------------------------------------

    def _models(self) -> list[_Model]:
        rng = self.rng
        descriptions = [t.format(s=s) for t, sizes in words.INSTRUMENT_MODELS for s in sizes]
        prefixes = ("3760123", "3770456", "3612345")
        models: list[_Model] = []
        refs: set[str] = set()
        for i in range(self.scale.models):
            supplier = i // len(descriptions) % len(prefixes)
            ref = ""
            while not ref or ref in refs:
                if supplier == 0:
                    letters = "".join(rng.choices("ABCDEFGHJKLMNOPRSTUVW", k=2))
                    ref = f"{letters}{rng.randrange(1000):03d}R"
                elif supplier == 1:
                    ref = (
                        f"{rng.randrange(10, 99)}-{rng.randrange(1000):03d}-{rng.randrange(10, 30)}"
                    )
                else:
                    ref = f"MS-{rng.randrange(10000):04d}"
            refs.add(ref)
            description = descriptions[i % len(descriptions)]
            if supplier == 0 and rng.random() < 0.5:
                description += f" ({ref})"
            body = f"0{prefixes[supplier]}{i:05d}"
            models.append(_Model(description, ref, body + _gs1_check_digit(body)))
        return models

    def _set_types(self, models: list[_Model]) -> list[_SetType]:
        rng, scale = self.rng, self.scale
        per_set = scale.instruments / scale.instances
        types: list[_SetType] = []
        codes: set[str] = set()
        for index, dept in enumerate(self.depts):
            count = scale.set_types // len(self.depts) + (index < scale.set_types % len(self.depts))
            for label in self._set_labels(dept, count):
                alpha = [part for part in label.split() if part.isalpha()]
                abbrev = alpha[0][:2] + alpha[1][:2] if len(alpha) > 1 else alpha[0][:4]
                digits = "".join(ch for ch in label if ch.isdigit())
                code = base = f"J{dept.code}{abbrev}{digits}"
                for n in itertools.count(2):
                    if code not in codes:
                        break
                    code = f"{base}{n}"
                codes.add(code)
                fragile = any(word in label for word in _FRAGILE)
                packaging, shelf_life = rng.choices(words.PACKAGINGS, (4, 2, 3, 2, 1, 1))[0]
                if fragile:
                    wash = rng.choice(words.WASH_PROGRAMS[2:])
                else:
                    wash = rng.choices(words.WASH_PROGRAMS[:2], (5, 1))[0]
                steri = words.STERI_PRION if dept.prion else words.STERI_NORMAL
                lines = self._contents(models, round(per_set * rng.uniform(0.5, 1.5)))
                types.append(_SetType(code, dept, fragile, wash, steri, lines))
                name = f"JOL-{label.removesuffix(_SECOND)} {dept.word}"
                name += _SECOND if label.endswith(_SECOND) else ""
                row = [code, name, dept.name, packaging, wash, steri, shelf_life]
                self.t["set_types.csv"].append(row)
        for st in types:
            for number, (item_type, qty, model, description) in enumerate(st.lines, 1):
                ref = model.ref if model else ""
                self.t["set_contents.csv"].append(
                    [st.code, number, item_type, qty, description, ref]
                )
        return types

    def _set_labels(self, dept: words.Department, count: int) -> list[str]:
        """Set names (without site and department), the plain ones first."""
        plain = [f"{size} BASE" for size in words.BASE_SIZES]
        plain += [*dept.sets, *words.GENERIC_SETS]
        more = [f"COMPLEMENT {s}" for s in dept.sets] + [f"{s} ENFANT" for s in dept.sets]
        more += [f"{s}{_SECOND}" for s in (*dept.sets, *words.GENERIC_SETS)]
        self.rng.shuffle(plain)
        self.rng.shuffle(more)
        return (plain + more)[:count]

    def _contents(
        self, models: list[_Model], target: int
    ) -> list[tuple[str, int, _Model | None, str]]:
        rng = self.rng
        lines: list[tuple[str, int, _Model | None, str]] = []
        if rng.random() < 0.4:
            lines.append(("A", 1, None, rng.choice(words.ACCESSORIES)))
        remaining = max(2, target)
        for model in rng.sample(models, min(len(models), remaining)):
            if remaining <= 0:
                break
            qty = min(remaining, rng.choice((1, 1, 1, 2, 2, 3, 4)))
            lines.append(("I", qty, model, model.description))
            remaining -= qty
        return lines

    def _instances(self, types: list[_SetType]) -> list[tuple[str, _SetType]]:
        rng = self.rng
        counts = [1] * len(types)
        for _ in range(self.scale.instances - len(types)):
            counts[rng.randrange(len(types))] += 1
        instances: list[tuple[str, _SetType]] = []
        for st, count in zip(types, counts, strict=True):
            location = f"Jol-{st.dept.store} Armoire {rng.choice('ABCDEFGHJKLMNPRSTU')}"
            if count <= 9 and not st.code[-1].isdigit() and rng.random() < 0.15:
                names = [f"{st.code}{k:02d}" for k in range(1, count + 1)]
            else:
                first = rng.randrange(100, 900, 10)
                names = [f"{st.code}#{first + k}" for k in range(1, count + 1)]
            for name in names:
                instances.append((name, st))
                self.t["set_instances.csv"].append([name, st.code, location])
        return instances

    def _instruments(
        self, types: list[_SetType], instances: list[tuple[str, _SetType]], singles: list[_Model]
    ) -> None:
        rng = self.rng
        serial = rng.randrange(10_000_000, 20_000_000)
        rows = self.t["instruments.csv"]

        def add(model: _Model, instance: str) -> None:
            nonlocal serial
            serial += 1
            udi = f"01{model.gtin}21{serial}"
            rows.append([udi, model.gtin, serial, model.ref, model.description, instance])

        for name, st in instances:
            for item_type, qty, model, _ in st.lines:
                if item_type == "I" and model is not None:
                    for _ in range(qty):
                        add(model, name)
        for model in singles:
            for _ in range(rng.randint(1, 3)):
                add(model, "")

    def _endoscopes(self) -> list[str]:
        rng = self.rng
        kinds = list(words.ENDOSCOPE_TYPES[: self.scale.endoscopes])
        while len(kinds) < self.scale.endoscopes:
            kinds.append(rng.choices(words.ENDOSCOPE_TYPES, _ENDO_WEIGHTS)[0])
        serials: set[int] = set()
        for kind, model, _ in kinds:
            serial = 0
            while not serial or serial in serials:
                serial = rng.randrange(2_000_000, 2_999_999)
            serials.add(serial)
            state = self._weighted(words.ENDOSCOPE_STATES)
            reprocessed = self.exported - timedelta(minutes=rng.randrange(30, 72 * 60))
            if state == "En réparation":
                storage, when = "Atelier biomédical", ""
            elif state == "À retraiter":
                storage, when = "Salle de retraitement endoscopes", self._stamp(reprocessed)
            else:
                storage = f"Armoire de séchage ASE {rng.randint(1, 3)}"
                when = self._stamp(reprocessed)
            self.t["endoscopes.csv"].append([serial, model, kind, state, storage, when])
        return [kind for kind, _, _ in kinds]

    def _procedures(self, types: list[_SetType]) -> None:
        rows = self.t["procedures.csv"]
        for st in types:
            if st.fragile:
                rows.append([st.code, "Sale", "PT", "PRE-TRAITEMENT PAR TREMPAGE", "", ""])
            rows.append([st.code, "Sale", "L", "LAVAGE EN MACHINE", st.wash, ""])
            rows.append([st.code, "Propre", "P", "PROPRETE, FONCTIONNALITE, INTEGRITE", "", ""])
            rows.append([st.code, "Stérile", "S", "LIBERATION DE LA CHARGE", "", st.steri])

    # -- people and planning ---------------------------------------------------------

    def _surgeons(self) -> dict[str, list[str]]:
        names = self.rng.sample(words.SURNAMES, len(self.depts) * self.scale.surgeons)
        size = self.scale.surgeons
        return {
            dept.code: [f"Dr {name}" for name in names[i * size : (i + 1) * size]]
            for i, dept in enumerate(self.depts)
        }

    def _profiles(
        self, types: list[_SetType], singles: list[_Model], surgeons: dict[str, list[str]]
    ) -> dict[str, list[_Profile]]:
        rng = self.rng
        by_dept = {dept.code: [st for st in types if st.dept is dept] for dept in self.depts}
        per_dept = [[(dept, p, "") for p in dept.procedures] for dept in self.depts]
        standard = [x for group in itertools.zip_longest(*per_dept) for x in group if x is not None]
        specific = [
            (dept, procedure, surgeon)
            for dept in self.depts
            for procedure in dept.procedures
            for surgeon in surgeons[dept.code]
        ]
        rng.shuffle(specific)
        profiles: dict[str, list[_Profile]] = {dept.code: [] for dept in self.depts}
        rows = self.t["profiles.csv"]
        for dept, procedure, surgeon in (standard + specific)[: self.scale.profiles]:
            code = f"P{dept.code}{len(profiles[dept.code]) + 1:03d}"
            profiles[dept.code].append(_Profile(code, dept, procedure, surgeon))
            sets = by_dept[dept.code]
            for st in rng.sample(sets, rng.randint(1, min(4, len(sets)))):
                rows.append(
                    [code, procedure, surgeon, "set", st.code, 2 if rng.random() < 0.1 else 1]
                )
            for model in rng.sample(singles, rng.choice((0, 0, 1, 2))):
                rows.append([code, procedure, surgeon, "instrument", model.ref, rng.randint(1, 2)])
        return profiles

    def _or_planning(
        self, profiles: dict[str, list[_Profile]], surgeons: dict[str, list[str]]
    ) -> None:
        rng = self.rng
        rows = self.t["or_planning.csv"]
        for day in self._weekdays():
            for room in range(1, self.scale.rooms + 1):
                dept = self.depts[(room - 1) % len(self.depts)]
                minute = 7 * 60 + 30
                while minute <= 17 * 60:
                    profile = rng.choice(profiles[dept.code])
                    surgeon = profile.surgeon or rng.choice(surgeons[dept.code])
                    code = profile.code if rng.random() > 0.03 else ""
                    surname = rng.choice(words.SURNAMES).upper()
                    given, sex = rng.choice(words.GIVEN_NAMES)
                    born = date(1930, 1, 1) + timedelta(days=rng.randrange(85 * 365))
                    rows.append(
                        [
                            self._date(day),
                            f"J Salle {room}",
                            f"{minute // 60:02d}:{minute % 60:02d}",
                            self._patient_code(),
                            f"{surname} {given}",
                            self._date(born),
                            sex,
                            self._weighted(words.ADMISSIONS),
                            self._weighted(words.ANESTHESIAS),
                            surgeon,
                            profile.procedure,
                            code,
                            self._weighted(words.NOTES),
                        ]
                    )
                    minute += rng.randrange(45, 241, 15) + 15

    def _endo_planning(self, endo_types: list[str]) -> None:
        rng = self.rng
        procedures = {kind: procedure for kind, _, procedure in words.ENDOSCOPE_TYPES}
        rows = self.t["endo_planning.csv"]
        for day in self._weekdays():
            for room in range(1, self.scale.endo_rooms + 1):
                minute = 8 * 60
                while minute <= 15 * 60 + 30:
                    kind = rng.choice(endo_types)
                    rows.append(
                        [
                            self._date(day),
                            f"J Endoscopie {room}",
                            f"{minute // 60:02d}:{minute % 60:02d}",
                            self._patient_code(),
                            procedures[kind],
                            kind,
                        ]
                    )
                    minute += rng.choice((30, 45, 60))

    # -- helpers ---------------------------------------------------------------------

    def _weekdays(self) -> list[date]:
        days = (self.start + timedelta(days=n) for n in range(self.scale.days))
        return [day for day in days if day.weekday() < 5]

    def _date(self, day: date) -> str:
        return day.isoformat() if self.iso_dates else f"{day:%d-%m-%Y}"

    def _stamp(self, moment: datetime) -> str:
        if self.iso_dates:
            return moment.isoformat()
        return f"{moment:%d-%m-%Y %H:%M}"

    def _patient_code(self) -> str:
        return f"000{self.rng.randrange(100_000, 1_000_000)}"

    def _weighted(self, choices: tuple[tuple[str, int], ...]) -> str:
        return self.rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
