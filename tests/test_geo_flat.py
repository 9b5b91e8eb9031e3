"""The flat stand-in for a geodesic circle (``geo.FlatCircle``): its error bound holds wherever it is offered, so the
points it decides alone are decided as the geodesic test would decide them."""

from __future__ import annotations

import numpy as np
from consentcam.geo import GEOD, Fence, FlatCircle
from hypothesis import given, settings
from hypothesis import strategies as st

latitudes = st.floats(-FlatCircle.MAX_LAT, FlatCircle.MAX_LAT)
longitudes = st.floats(-179.0, 179.0)
radii = st.floats(1.0, 50_000.0)


@settings(max_examples=300, deadline=None)
@given(lat=latitudes, lon=longitudes, radius=radii, seed=st.integers(0, 2**32 - 1))
def test_the_flat_distance_stays_within_its_band(lat: float, lon: float, radius: float, seed: int) -> None:
    flat = FlatCircle.of(lon, lat, radius)
    if flat is None:  # refused: only near the antimeridian, or a band too wide to help
        assert abs(lon) + radius * 1.1 / 111_000 / max(np.cos(np.radians(lat)), 1e-9) > 170 or \
            (abs(np.tan(np.radians(lat))) + 1) * radius * FlatCircle.REACH / FlatCircle.M_MIN > FlatCircle.MAX_BAND
        return
    rng = np.random.default_rng(seed)
    n = 400
    azimuths = rng.uniform(0, 360, n)
    distances = radius * FlatCircle.REACH * np.sqrt(rng.uniform(0, 1, n))
    distances[:36] = radius * FlatCircle.REACH  # the reach itself, all around: the worst place
    azimuths[:36] = np.arange(0, 360, 10)
    lons, lats, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), azimuths, distances)
    measured = np.sqrt(flat.distance2(lons, lats))
    assert np.all(np.abs(measured - distances) <= flat.band * distances + 1e-6), \
        f"worst error {np.max(np.abs(measured / distances - 1)):.3g} over band {flat.band:.3g}"


@settings(max_examples=100, deadline=None)
@given(lat=latitudes, lon=st.floats(-170.0, 170.0), radius=st.floats(5.0, 50_000.0), seed=st.integers(0, 2**32 - 1))
def test_what_it_decides_alone_the_geodesic_test_agrees_with(lat: float, lon: float, radius: float, seed: int) -> None:
    fence = Fence.circle(lat, lon, radius)
    flat = fence.flat
    if flat is None:
        return
    rng = np.random.default_rng(seed)
    # Points crowded around the edge, where a wrong band would show.
    n = 500
    distances = radius * rng.uniform(1 - 3 * flat.band, 1 + 3 * flat.band, n)
    lons, lats, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), rng.uniform(0, 360, n), distances)
    d2 = flat.distance2(lons, lats)
    exact = fence.contains(lons, lats)
    assert np.all(exact[d2 <= flat.inner2]), "called inside by the flat test, outside by the geodesic one"
    assert not np.any(exact[d2 > flat.outer2]), "called outside by the flat test, inside by the geodesic one"
    min_lon, min_lat, max_lon, max_lat = fence.bbox()  # drawn from the stand-in: it must hold the whole circle
    inside = exact.nonzero()
    assert np.all((lons[inside] >= min_lon) & (lons[inside] <= max_lon) & (lats[inside] >= min_lat) & (lats[inside] <= max_lat))
    ring_lons, ring_lats, _ = GEOD.fwd(np.full(360, lon), np.full(360, lat), np.arange(360.0), np.full(360, radius))
    assert np.all((ring_lons >= min_lon) & (ring_lons <= max_lon) & (ring_lats >= min_lat) & (ring_lats <= max_lat))


def test_no_stand_in_near_the_poles_or_across_the_antimeridian() -> None:
    assert FlatCircle.of(10.0, 85.0, 500) is None
    assert FlatCircle.of(179.999, 10.0, 500) is None
    assert FlatCircle.of(-87.63, 41.88, 500) is not None
    assert Fence.of_polygon(Fence.circle(41.88, -87.63, 500).as_polygon()).flat is None
