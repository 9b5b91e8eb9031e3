"""The address-point geocoder on its own, and through the core's /api/v1/geocode as the owner portal calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from consentcam.hookspecs import hookimpl
from consentcam.hooktypes import GeocodedPlace, PluginInfo
from consentcam.http.app import create_app
from consentcam.platform import open_platform
from consentcam.testing.conformance import PluginConformance
from consentcam.testing.world import World
from consentcam_address_points import AddressIndex, AddressPoints

CSV = """full_address,latitude,longitude
121 N LaSalle St,41.88380,-87.63230
121 N LaSalle St Ste 100,41.88381,-87.63231
1210 N LaSalle St,41.90390,-87.63220
50 W Washington St,41.88330,-87.63010
50 W Washington Blvd,41.88270,-87.64310
not a place,abc,-87.6
far away,91.0,-87.6
,41.8,-87.6
"""


@pytest.fixture
def points_csv(tmp_path: Path) -> Path:
    path = tmp_path / "points.csv"
    path.write_text(CSV)
    return path


def test_abbreviations_match_either_spelling_and_exact_numbers_rank_first(points_csv: Path) -> None:
    index = AddressIndex.from_csv(points_csv)
    assert len(index.points) == 5, "rows without coordinates, out of range or without an address are skipped"
    found = [p.address for p in index.search("121 north lasalle street", 5)]
    assert found == ["121 N LaSalle St", "121 N LaSalle St Ste 100"]
    assert [p.address for p in index.search("50 W Washington Blvd", 5)] == ["50 W Washington Blvd"]
    assert {p.address for p in index.search("Washington", 5)} == {"50 W Washington St", "50 W Washington Blvd"}
    assert index.search("121 N Clark St", 5) == [], "every word typed must be in the address"
    assert index.search("  ,, ", 5) == []


def test_a_file_without_coordinate_columns_says_which_it_wanted(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("address,x,y\n1 Main St,1,2\n")
    with pytest.raises(ValueError, match="latitude"):
        AddressIndex.from_csv(bad)


def test_without_a_file_it_declares_nothing() -> None:
    assert AddressPoints(path="").consentcam_plugin_info().capabilities == ()


class Broken:
    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo(name="broken-geocoder", version="0", capabilities=("geocode",))

    @hookimpl
    async def consentcam_geocode(self, query: str, limit: int) -> list[GeocodedPlace]:
        raise ConnectionError(f"upstream down while looking up {query}")


@pytest.fixture
async def opened() -> Any:
    platforms: list[Any] = []
    yield platforms
    for platform in platforms:
        await platform.db.dispose()


async def _client(settings: Any, clock: Any, aiohttp_client: Any, plugins: list[object],
                  opened: list[Any]) -> tuple[Any, World]:
    platform = await open_platform(settings, clock=clock, extra_plugins=plugins)
    opened.append(platform)
    client = await aiohttp_client(create_app(settings, platform=platform, run_jobs=False))
    return client, World(platform)


async def test_the_portal_finds_an_address_through_the_api(consentcam_settings: Any, consentcam_clock: Any,
                                                           aiohttp_client: Any, points_csv: Path, opened: list[Any],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    client, world = await _client(consentcam_settings, consentcam_clock, aiohttp_client, [AddressPoints(points_csv)], opened)
    owner = await world.owner()
    auth = {"Authorization": f"Bearer {owner.token}"}
    response = await client.get("/api/v1/geocode", params={"q": "121 N LaSalle", "limit": "1"}, headers=auth)
    assert response.status == 200
    assert await response.json() == {"results": [
        {"label": "121 N LaSalle St", "lat": 41.8838, "lon": -87.6323, "source": "address-points"}]}
    assert "LaSalle" not in caplog.text, "the address someone typed is never logged"

    assert (await client.get("/api/v1/geocode", params={"q": "121 N LaSalle"})).status == 401
    short = await client.get("/api/v1/geocode", params={"q": "ab"}, headers=auth)
    assert short.status == 422 and "q" in (await short.text())


async def test_no_geocoder_is_a_clear_404_and_a_failing_one_a_502(consentcam_settings: Any, consentcam_clock: Any,
                                                                  aiohttp_client: Any, opened: list[Any]) -> None:
    client, world = await _client(consentcam_settings, consentcam_clock, aiohttp_client, [AddressPoints(path="")], opened)
    owner = await world.owner()
    auth = {"Authorization": f"Bearer {owner.token}"}
    none = await client.get("/api/v1/geocode", params={"q": "1 Main St"}, headers=auth)
    assert none.status == 404 and "geocoding plugin" in (await none.json())["detail"]

    client, _ = await _client(consentcam_settings, consentcam_clock, aiohttp_client, [Broken()], opened)  # same database
    failed = await client.get("/api/v1/geocode", params={"q": "1 Main St"}, headers=auth)
    body = await failed.json()
    assert failed.status == 502 and "ConnectionError" in body["detail"]
    assert "Main" not in body["detail"], "the query does not come back in an error either"


def test_the_demo_city_s_addresses_follow_chicago_s_grid(tmp_path: Path) -> None:
    """serve --demo writes these for the portal's "Find": an address lands on its street, on its side, at its block."""
    from consentcam.demo import EAST_WEST, NORTH_SOUTH, write_address_points

    path = tmp_path / "demo.csv"
    assert write_address_points(path) > 1000
    index = AddressIndex.from_csv(path)
    west_side, east_side = index.search("120 N LaSalle St", 1)[0], index.search("121 N LaSalle St", 1)[0]
    assert west_side.lon < NORTH_SOUTH["LaSalle St"] < east_side.lon, "even numbers on the west side"
    # 120 N is 120/800 of a mile north of Madison (about 241 m): past Washington (100 N), short of Randolph (150 N).
    assert EAST_WEST["Washington St"] < west_side.lat < EAST_WEST["Randolph St"]
    assert abs((west_side.lat - EAST_WEST["Madison St"]) * 111_320 - 241) < 5


class TestAddressPointsConformance(PluginConformance):
    """The vendor kit's checks that apply to a geocoder: it declares itself, loads strictly and from its entry point."""

    entry_point = "address_points"

    @pytest.fixture
    def plugin(self, points_csv: Path) -> AddressPoints:
        return AddressPoints(points_csv)
