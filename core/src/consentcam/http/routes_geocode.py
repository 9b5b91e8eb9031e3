"""Address search for the owner portal, answered by whichever geocoding plugins the deployment installed."""

from __future__ import annotations

from pydantic import Field

from ..errors import NotFound, PluginError
from ..schemas import Input, Output
from .api import ANY_USER, Api, Call


class GeocodeQuery(Input):
    q: str = Field(min_length=3, max_length=200, description="an address or place, as a person would type it")
    limit: int = Field(default=5, ge=1, le=20)


class Place(Output):
    label: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    source: str = ""


class GeocodeResults(Output):
    results: list[Place]


def geocode_routes(api: Api) -> None:
    @api.route("GET", "/api/v1/geocode", summary="Places matching an address (needs a geocoding plugin)",
               roles=ANY_USER, query=GeocodeQuery, response=GeocodeResults, errors=(404, 502), tags=("map",))
    async def geocode(call: Call) -> GeocodeResults:
        host = call.platform.plugins
        if "geocode" not in host.capabilities():
            raise NotFound("address search needs a geocoding plugin, and none is installed: place the camera on the map")
        try:
            places = await host.geocode(call.query.q, call.query.limit)
        except Exception as exc:  # a plugin's failure is a clean 502, never a stack trace; the query is not logged
            raise PluginError(f"the geocoding plugin failed: {type(exc).__name__}") from exc
        # A plugin's answer is checked like any input: out-of-range coordinates never reach a map.
        results = [Place(label=p.label[:300], lat=p.lat, lon=p.lon, source=p.source[:100]) for p in places
                   if -90 <= p.lat <= 90 and -180 <= p.lon <= 180]
        return GeocodeResults(results=results)
