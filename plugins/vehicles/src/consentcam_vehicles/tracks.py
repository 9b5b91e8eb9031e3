"""Detections over consecutive sampled frames merged into one span per vehicle.

A detection joins the track of the same class whose last box overlaps it most (IoU at least ``min_iou``) if
that track was seen at most ``max_gap_s`` earlier; otherwise it starts a new track. Matching is greedy, best
overlap first, one detection per track per frame. Cheap and good enough at 1 frame per second for parked or
slow vehicles; a fast car crossing the view between two samples becomes two short spans, never a wrong long one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .detector import Detection, iou


@dataclass
class Track:
    name: str
    start_s: float
    end_s: float
    last_box: tuple[float, float, float, float]
    best: Detection
    scores: list[float] = field(default_factory=list)
    colours: Counter[str] = field(default_factory=Counter)

    @property
    def frames(self) -> int:
        return len(self.scores)

    @property
    def colour(self) -> str | None:
        return self.colours.most_common(1)[0][0] if self.colours else None


class Tracker:
    def __init__(self, *, min_iou: float = 0.3, max_gap_s: float = 2.0) -> None:
        self.min_iou = min_iou
        self.max_gap_s = max_gap_s
        self.open: list[Track] = []
        self.closed: list[Track] = []

    def add(self, at_s: float, detections: list[tuple[Detection, str | None]]) -> None:
        """One sampled frame's detections (each with its colour, if read)."""
        for track in [t for t in self.open if at_s - t.end_s > self.max_gap_s]:
            self.open.remove(track)
            self.closed.append(track)
        pairs = []
        for d_index, (detection, _) in enumerate(detections):
            candidates = [(t_index, track) for t_index, track in enumerate(self.open) if track.name == detection.name]
            if not candidates:
                continue
            overlaps = iou(np.array(detection.box), np.array([track.last_box for _, track in candidates]))
            pairs.extend((float(o), d_index, t_index) for o, (t_index, _) in zip(overlaps, candidates, strict=True)
                         if o >= self.min_iou)
        used_d: set[int] = set()
        used_t: set[int] = set()
        for _, d_index, t_index in sorted(pairs, reverse=True):
            if d_index in used_d or t_index in used_t:
                continue
            used_d.add(d_index)
            used_t.add(t_index)
            self._extend(self.open[t_index], at_s, *detections[d_index])
        for d_index, (detection, colour) in enumerate(detections):
            if d_index not in used_d:
                track = Track(detection.name, at_s, at_s, detection.box, detection)
                self._extend(track, at_s, detection, colour)
                self.open.append(track)

    @staticmethod
    def _extend(track: Track, at_s: float, detection: Detection, colour: str | None) -> None:
        track.end_s = at_s
        track.last_box = detection.box
        track.scores.append(detection.score)
        if detection.score >= track.best.score:
            track.best = detection
        if colour:
            track.colours[colour] += 1

    def finish(self) -> list[Track]:
        tracks = self.closed + self.open
        self.closed, self.open = [], []
        return sorted(tracks, key=lambda t: (t.start_s, t.name))
