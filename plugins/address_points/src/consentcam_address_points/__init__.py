"""A geocoder over a local address-point CSV: the city's own data, no outside service, queries never logged."""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from consentcam.hookspecs import hookimpl
from consentcam.hooktypes import GeocodedPlace, PluginInfo

log = logging.getLogger(__name__)

SETTING = "CONSENTCAM_ADDRESS_POINTS"
ADDRESS_COLUMNS = ("address", "full_address", "addr")
LAT_COLUMNS = ("lat", "latitude")
LON_COLUMNS = ("lon", "lng", "longitude")

# The abbreviations people and address files use interchangeably, expanded to one spelling on both sides.
WORDS = {
    "N": "NORTH", "S": "SOUTH", "E": "EAST", "W": "WEST", "NE": "NORTHEAST", "NW": "NORTHWEST",
    "SE": "SOUTHEAST", "SW": "SOUTHWEST", "ST": "STREET", "AVE": "AVENUE", "AV": "AVENUE", "BLVD": "BOULEVARD",
    "RD": "ROAD", "DR": "DRIVE", "PL": "PLACE", "CT": "COURT", "LN": "LANE", "PKWY": "PARKWAY", "TER": "TERRACE",
    "HWY": "HIGHWAY", "SQ": "SQUARE", "CIR": "CIRCLE", "PLZ": "PLAZA", "STE": "SUITE", "APT": "APARTMENT",
}


def words(text: str) -> list[str]:
    return [WORDS.get(w, w) for w in re.findall(r"[A-Z0-9]+", text.upper())]


@dataclass(frozen=True)
class Point:
    address: str
    lat: float
    lon: float
    words: frozenset[str]
    number: str | None


class AddressIndex:
    """Every address by each of its words: a query looks up its rarest word, then checks the rest."""

    def __init__(self, points: list[Point]) -> None:
        self.points = points
        self.by_word: dict[str, list[int]] = defaultdict(list)
        for i, point in enumerate(points):
            for word in point.words:
                self.by_word[word].append(i)

    @classmethod
    def from_csv(cls, path: Path) -> AddressIndex:
        points, skipped = [], 0
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {c.lower().strip(): c for c in reader.fieldnames or []}

            def pick(names: tuple[str, ...]) -> str:
                for name in names:
                    if name in columns:
                        return columns[name]
                raise ValueError(f"{path}: no column named any of {', '.join(names)} (found: {', '.join(columns)})")

            a, y, x = pick(ADDRESS_COLUMNS), pick(LAT_COLUMNS), pick(LON_COLUMNS)
            for row in reader:
                try:
                    lat, lon = float(row[y]), float(row[x])
                except (TypeError, ValueError):
                    skipped += 1
                    continue
                address = (row[a] or "").strip()
                if not address or not (-90 <= lat <= 90 and -180 <= lon <= 180):
                    skipped += 1
                    continue
                ws = words(address)
                number = ws[0] if ws and ws[0].isdigit() else None
                points.append(Point(address, lat, lon, frozenset(ws), number))
        log.info("address points: %d addresses from %s (%d rows skipped)", len(points), path, skipped)
        return cls(points)

    def search(self, query: str, limit: int) -> list[Point]:
        wanted = words(query)
        if not wanted:
            return []
        postings = [self.by_word.get(w) for w in set(wanted)]
        if any(p is None for p in postings):
            return []
        rarest = min(postings, key=len)  # type: ignore[arg-type]
        need = set(wanted)
        hits = [self.points[i] for i in rarest if need <= self.points[i].words]
        number = wanted[0] if wanted[0].isdigit() else None
        # Exact house number first, then the shortest address (the least extra words), then alphabetical.
        hits.sort(key=lambda p: (p.number != number, len(p.words), p.address))
        return hits[:limit]


class AddressPoints:
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._given = path
        self._index: AddressIndex | None = None
        self._indexed: Path | None = None
        self._loading = asyncio.Lock()

    @property
    def path(self) -> Path | None:
        """The file given, else the setting as it is now (read when used, not when the module was imported)."""
        configured = self._given if self._given is not None else os.environ.get(SETTING)
        return Path(configured) if configured else None

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        # Without a file there is nothing to search: declare nothing, so the portal does not offer a dead button.
        return PluginInfo(name="address-points", version="0.1.0", capabilities=("geocode",) if self.path else (),
                          description="address search over the city's own address-point file")

    async def index(self) -> AddressIndex:
        # A city's file has hundreds of thousands of rows: read it once, off the event loop.
        async with self._loading:
            path = self.path
            assert path is not None
            if self._index is None or self._indexed != path:
                self._index = await asyncio.to_thread(AddressIndex.from_csv, path)
                self._indexed = path
        return self._index

    @hookimpl
    async def consentcam_geocode(self, query: str, limit: int) -> list[GeocodedPlace] | None:
        if self.path is None:
            return None
        return [GeocodedPlace(label=p.address, lat=p.lat, lon=p.lon, source="address-points")
                for p in (await self.index()).search(query, limit)]


plugin = AddressPoints()
