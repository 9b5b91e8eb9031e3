"""Tracks merged into spans, and whole clips analysed by the real model: the truck's span, the sampling rate
setting, the model hash in the label set, and the plugin as the host loads it."""

from __future__ import annotations

import pytest
from consentcam.plugins import make_plugin_host
from consentcam_vehicles.analyse import Analyser, ModelMismatch, Timings
from consentcam_vehicles.detector import Detection
from consentcam_vehicles.model import DEFAULT_SHA256
from consentcam_vehicles.plugin import CAPABILITIES, VehiclesPlugin
from consentcam_vehicles.settings import VehicleSettings
from consentcam_vehicles.tracks import Tracker
from vehicles_testkit import scene_clip


def det(name: str, x: float, score: float = 0.8) -> tuple[Detection, str | None]:
    return Detection(name, score, (x, 0.2, x + 0.3, 0.5)), "white"


def test_consecutive_overlapping_detections_are_one_span_and_a_long_gap_splits_it():
    tracker = Tracker(min_iou=0.3, max_gap_s=2.0)
    for at in range(10, 16):  # a truck creeping right, seen every second
        tracker.add(float(at), [det("truck", 0.1 + 0.02 * (at - 10))])
    tracker.add(16.0, [])
    tracker.add(17.0, [det("truck", 0.22, 0.95)])  # missed once: still the same truck
    tracker.add(25.0, [det("truck", 0.22)])  # gone 8 s: another sighting
    spans = tracker.finish()
    assert [(t.name, t.start_s, t.end_s, t.frames) for t in spans] == [("truck", 10, 17, 7), ("truck", 25, 25, 1)]
    assert spans[0].best.score == 0.95 and spans[0].colour == "white"


def test_classes_and_places_keep_tracks_apart():
    tracker = Tracker()
    for at in range(3):
        tracker.add(float(at), [det("truck", 0.0), det("truck", 0.6), det("car", 0.0)])
    spans = tracker.finish()
    assert sorted((t.name, t.last_box[0], t.frames) for t in spans) == [("car", 0.0, 3), ("truck", 0.0, 3),
                                                                        ("truck", 0.6, 3)]


def test_the_truck_clip_gives_a_truck_span_inside_9_to_21_seconds(vehicles_settings, truck_clip):
    timings = Timings()
    result = Analyser(vehicles_settings).analyse(truck_clip, timings)
    assert result.analyser == "vehicles" and result.model_sha256 == DEFAULT_SHA256 and "YOLOX" in result.model_name
    trucks = [label for label in result.labels if label.name == "truck"]
    assert len(trucks) == 1, result.labels
    truck = trucks[0]
    assert 9 <= truck.start_s <= 11 and 18 <= truck.end_s <= 21, truck
    assert truck.attributes["frames"] >= 9 and truck.colour == "white" and truck.score > 0.6
    assert {label.name for label in result.labels} <= {"bicycle", "car", "motorcycle", "bus", "truck", "train"}
    assert timings.frames == 30 and len(timings.per_frame_detect_s) == 30  # 1 frame per second of 30 s


def test_sampling_rate_is_a_setting(vehicles_settings, dog_jpg, tmp_path):
    clip = scene_clip(dog_jpg, tmp_path / "short.mp4", seconds=6, truck=(2, 4))
    faster = vehicles_settings.model_copy(update={"sample_fps": 2.0, "colour": False})
    timings = Timings()
    result = Analyser(faster).analyse(clip, timings)
    assert timings.frames == 12
    truck = next(label for label in result.labels if label.name == "truck")
    # Samples are the first frames at or after 0, 0.5, 1, ... s; at 5 fps, 3.5 s is the frame at 3.6 s.
    assert truck.start_s == 2.0 and 3.4 <= truck.end_s < 4.0 and truck.colour is None


def test_a_model_file_that_is_not_the_required_one_is_refused(vehicles_settings, truck_clip):
    pinned = vehicles_settings.model_copy(update={"model_sha256": "0" * 64})
    with pytest.raises(ModelMismatch, match="0000"):
        Analyser(pinned).analyse(truck_clip)


async def test_the_plugin_loads_with_vehicle_capabilities_only_and_names_its_model(vehicles_plugin, dog_jpg):
    host = make_plugin_host(load_entry_points=False, extra=[vehicles_plugin], strict=True)
    assert host.analysers() == ["vehicles"]
    assert host.capabilities() == set(CAPABILITIES)
    from consentcam.hooktypes import ClipToAnalyse

    [label_set] = await host.analyse_clip(ClipToAnalyse("e1", dog_jpg, {}))  # a still is one frame
    assert label_set.model_sha256 == DEFAULT_SHA256
    assert {label.name for label in label_set.labels} >= {"bicycle", "car"}


def test_the_plugin_is_registered_as_an_entry_point():
    from importlib.metadata import entry_points

    [point] = [e for e in entry_points(group="consentcam") if e.name == "vehicles"]
    assert isinstance(point.load(), VehiclesPlugin)


async def test_without_a_model_the_plugin_fails_saying_how_to_fetch_it(tmp_path, truck_clip):
    from consentcam import PluginError
    from consentcam.hooktypes import ClipToAnalyse

    plugin = VehiclesPlugin(VehicleSettings(_env_file=None, model_path=tmp_path / "none.onnx"))  # type: ignore[call-arg]
    with pytest.raises(PluginError, match="consentcam-vehicles fetch-model"):
        await plugin.consentcam_analyse_clip(ClipToAnalyse("e1", truck_clip, {}))
