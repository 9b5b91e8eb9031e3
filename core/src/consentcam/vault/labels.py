"""Analysis labels: the outbox job that hands a stored clip to the analysis plugins, and the labels they return,
kept beside the evidence (``evidence_labels``) and never in it. The clip's bytes, its row and its hash are not
touched; a plugin reading the clip is a custody event like any other download.

A label set names its analyser and the SHA-256 of the model file that produced it, so a court can see which
model said "truck". A set without a valid hash, or with a label that makes no sense (a negative span, a score
outside [0, 1], a box outside the frame), is refused whole and the refusal recorded in the job's result: a
half-trusted label set is worse than none. The job is delivered at least once; a set already stored for the
same clip, analyser and model is not stored twice.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import Actor
from ..db.models import Evidence, EvidenceLabel, Job
from ..hooktypes import ClipToAnalyse, LabelSet
from ..jobs import PermanentFailure, job_handler
from ..platform import Platform
from . import custody
from .core import vault_for

log = logging.getLogger(__name__)

ANALYSE = "evidence.analyse"
LABEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SLACK_S = 1.0  # a span may end a little after the clip's probed duration (the last frame's own length)


def normalise(name: str) -> str:
    """The one spelling labels are stored and searched under: lower case, words joined by '_'."""
    return re.sub(r"[\s-]+", "_", name.strip().lower())


class RefusedLabelSet(ValueError):
    """A label set the vault will not store, and why."""


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def checked_rows(evidence: Evidence, label_set: LabelSet, now: Any) -> list[EvidenceLabel]:
    """The rows of one label set, or ``RefusedLabelSet`` saying what is wrong with it."""
    analyser = (label_set.analyser or "").strip()
    if not analyser or len(analyser) > 100:
        raise RefusedLabelSet("the analyser must be named (1-100 characters)")
    digest = (label_set.model_sha256 or "").strip().lower()
    if not SHA256.match(digest):
        raise RefusedLabelSet(f"{analyser}: the model's SHA-256 is missing or not 64 hex digits")
    duration = (evidence.media or {}).get("duration_s")
    rows = []
    for index, label in enumerate(label_set.labels):
        name = normalise(label.name or "")
        where = f"{analyser}: label {index} ({label.name!r})"
        if not LABEL_NAME.match(name):
            raise RefusedLabelSet(f"{where}: a label is 1-100 of a-z, 0-9, '_' and '-'")
        if not _finite(label.start_s, label.end_s, label.score) or not 0 <= label.start_s <= label.end_s:
            raise RefusedLabelSet(f"{where}: the span must be finite offsets with 0 <= start <= end")
        if isinstance(duration, int | float) and label.start_s > duration + SLACK_S:
            raise RefusedLabelSet(f"{where}: the span starts after the clip ends ({duration:.1f} s)")
        if not 0 <= label.score <= 1:
            raise RefusedLabelSet(f"{where}: the score must be in [0, 1]")
        box = None
        if label.box is not None:
            box = list(label.box)
            if len(box) != 4 or not _finite(*box) or not (0 <= box[0] <= box[2] <= 1 and 0 <= box[1] <= box[3] <= 1):
                raise RefusedLabelSet(f"{where}: a box is [x1, y1, x2, y2] in fractions of the frame")
        colour = label.colour.strip().lower()[:30] if isinstance(label.colour, str) and label.colour.strip() else None
        end_s = min(label.end_s, duration) if isinstance(duration, int | float) and duration >= label.start_s else label.end_s
        start = evidence.recorded_start
        rows.append(EvidenceLabel(
            evidence_id=evidence.id, label=name, start_s=float(label.start_s), end_s=float(end_s),
            start_at=start + timedelta(seconds=label.start_s) if start else None,
            end_at=start + timedelta(seconds=end_s) if start else None,
            box=box, score=float(label.score), colour=colour, attributes=dict(label.attributes or {}),
            analyser=analyser, model_name=(label_set.model_name or "")[:200], model_sha256=digest, created_at=now,
        ))
    return rows


async def store(p: Platform, evidence: Evidence, label_sets: Sequence[LabelSet]) -> dict[str, Any]:
    """Keep every acceptable label set (one transaction); report what was stored and what was refused."""
    now = p.now()
    stored, refused = [], []
    async with p.db.transaction() as session:
        for label_set in label_sets:
            try:
                rows = checked_rows(evidence, label_set, now)
            except RefusedLabelSet as exc:
                log.warning("evidence %s: label set refused: %s", evidence.id, exc)
                refused.append(str(exc))
                continue
            digest = label_set.model_sha256.strip().lower()
            known = (await session.execute(
                select(EvidenceLabel.id).where(EvidenceLabel.evidence_id == evidence.id,
                                               EvidenceLabel.analyser == label_set.analyser.strip(),
                                               EvidenceLabel.model_sha256 == digest).limit(1))).first()
            if known:
                continue
            session.add_all(rows)
            stored.append({"analyser": label_set.analyser.strip(), "model_sha256": digest, "labels": len(rows)})
    return {"evidence_id": evidence.id, "label_sets": stored, "refused": refused}


@job_handler(ANALYSE)
async def analyse(p: Platform, job: Job) -> dict[str, Any]:
    async with p.db.sessions() as session:
        evidence = await session.get(Evidence, job.payload["evidence_id"])
    if evidence is None:
        raise PermanentFailure("no such evidence")
    if evidence.disposed_at is not None:
        return {"note": "disposed before the analysis ran"}
    analysers = p.plugins.analysers()
    if not analysers:
        return {"note": "no analysis plugin is loaded"}
    vault = vault_for(p)
    async with p.db.transaction() as session:
        fresh = await session.get(Evidence, evidence.id)
        assert fresh is not None
        await custody.record(p, session, p.now(), Actor.plugin("analysis"), custody.DOWNLOADED, fresh, range="all",
                             purpose="analysis", analysers=analysers)
    work = p.settings.data_dir / "analysis"
    work.mkdir(parents=True, exist_ok=True)
    extension = str((evidence.media or {}).get("extension") or "bin")
    with tempfile.TemporaryDirectory(dir=work, prefix="clip-") as folder:
        # The stored object itself when the store is a local folder (read only), else a private copy.
        path = await vault.storage.fetch(evidence.storage_key, Path(folder) / f"clip.{extension}")
        label_sets = await p.plugins.analyse_clip(ClipToAnalyse(evidence_id=evidence.id, path=path,
                                                                media=dict(evidence.media or {})))
    return await store(p, evidence, label_sets)


# --- reading ------------------------------------------------------------------------------------------


def label_out(row: EvidenceLabel) -> dict[str, Any]:
    return {
        "label": row.label, "start_s": row.start_s, "end_s": row.end_s,
        "start_at": row.start_at.isoformat() if row.start_at else None,
        "end_at": row.end_at.isoformat() if row.end_at else None,
        "box": row.box, "score": row.score, "colour": row.colour, "attributes": row.attributes,
        "analyser": row.analyser, "model_name": row.model_name, "model_sha256": row.model_sha256,
        "created_at": row.created_at.isoformat(),
    }


async def labels_of(session: AsyncSession, evidence_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {e: [] for e in evidence_ids}
    if not evidence_ids:
        return out
    rows = (await session.execute(select(EvidenceLabel).where(EvidenceLabel.evidence_id.in_(list(evidence_ids)))
                                  .order_by(EvidenceLabel.evidence_id, EvidenceLabel.start_s, EvidenceLabel.label))).scalars()
    for row in rows:
        out[row.evidence_id].append(label_out(row))
    return out
