"""A clip in, a label set out: sample frames, detect vehicles, read colours, merge tracks into spans."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from consentcam.hooktypes import Label, LabelSet

from . import colour
from .detector import Detector, letterbox
from .model import DEFAULT_NAME, DEFAULT_SHA256, file_sha256
from .sampling import sample
from .settings import VehicleSettings
from .tracks import Tracker

ANALYSER = "vehicles"


@dataclass
class Timings:
    """Where an analysis spent its time (the benchmark reads these)."""

    frames: int = 0
    decode_s: float = 0.0  # decoding, sampling and scaling
    detect_s: float = 0.0  # the detector alone: letterbox, model, decode, NMS
    rest_s: float = 0.0  # colours and tracks
    total_s: float = 0.0
    per_frame_detect_s: list[float] = field(default_factory=list)


class ModelMismatch(Exception):
    """The model file's hash is not the one the settings require."""


class Analyser:
    """Loads the model once (its hash is read then, and named in every label set) and analyses clips."""

    def __init__(self, settings: VehicleSettings | None = None) -> None:
        self.settings = settings or VehicleSettings()
        self._detector: Detector | None = None
        self._sha256 = ""
        self._lock = threading.Lock()

    @property
    def model_sha256(self) -> str:
        self.detector()
        return self._sha256

    def detector(self) -> Detector:
        with self._lock:
            if self._detector is None:
                s = self.settings
                digest = file_sha256(s.model_path) if s.model_path.is_file() else ""
                if s.model_sha256 and digest != s.model_sha256.lower():
                    raise ModelMismatch(f"{s.model_path}: SHA-256 {digest or '(no file)'}, the settings require "
                                        f"{s.model_sha256.lower()}")
                self._detector = Detector(s.model_path, score_threshold=s.score_threshold,
                                          nms_threshold=s.nms_threshold, threads=s.threads)
                self._sha256 = digest
            return self._detector

    def model_name(self) -> str:
        return DEFAULT_NAME if self.model_sha256 == DEFAULT_SHA256 else self.settings.model_path.name

    def analyse(self, path: Path, timings: Timings | None = None) -> LabelSet:
        s = self.settings
        detector = self.detector()
        timings = timings if timings is not None else Timings()
        tracker = Tracker(min_iou=s.track_iou, max_gap_s=s.track_gap_s)
        started = time.perf_counter()
        frames = sample(path, every_s=1.0 / s.sample_fps, size=detector.size, skip_nonref=s.skip_nonref)
        while True:
            mark = time.perf_counter()
            picture = next(frames, None)
            timings.decode_s += time.perf_counter() - mark
            if picture is None:
                break
            mark = time.perf_counter()
            found = detector.detect(letterbox(picture.bgr, detector.size))
            took = time.perf_counter() - mark
            timings.detect_s += took
            timings.per_frame_detect_s.append(took)
            mark = time.perf_counter()
            tracker.add(picture.at_s, [(d, colour.dominant(picture.bgr, d.box) if s.colour else None) for d in found])
            timings.rest_s += time.perf_counter() - mark
            timings.frames += 1
        interval = 1.0 / s.sample_fps
        labels = [
            Label(name=track.name, start_s=track.start_s, end_s=track.end_s, score=round(track.best.score, 4),
                  box=tuple(round(v, 4) for v in track.best.box), colour=track.colour,  # type: ignore[arg-type]
                  attributes={"frames": track.frames, "mean_score": round(sum(track.scores) / track.frames, 4),
                              "sample_interval_s": interval})
            for track in tracker.finish() if track.frames >= s.min_frames
        ]
        timings.total_s = time.perf_counter() - started
        return LabelSet(analyser=ANALYSER, model_sha256=self._sha256, labels=labels, model_name=self.model_name())
