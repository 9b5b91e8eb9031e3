"""Analysis labels in the vault, with a stand-in analyser (the real one is ``plugins/vehicles``): the outbox job
written with the clip, labels kept beside the evidence and never in it, search by label within a request and a
time span, the same access rules and audit as every evidence read, and label sets refused whole when they do
not name their model or make no sense."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import pytest
from consentcam import PluginError, hookimpl
from consentcam.db.models import AuditEvent, Evidence, EvidenceLabel, Job
from consentcam.hooktypes import ClipToAnalyse, Label, LabelSet, PluginInfo
from consentcam.jobs import Worker
from consentcam.platform import open_platform
from consentcam.vault import labels
from sqlalchemy import select

from .conftest import count, ok, problem
from .fixtures.vault import CREATION_TIME, open_case, put_clip

pytest_plugins = ("tests.fixtures.clips",)  # h264_clip: 5 s, creation time 08:30:00
pytestmark = pytest.mark.usefixtures("fast_passwords")

MODEL = hashlib.sha256(b"a stand-in model").hexdigest()
START = datetime.fromisoformat(CREATION_TIME.replace("Z", "+00:00"))


class StandInAnalyser:
    """Returns whatever label sets the test put in ``sets``; remembers the clips it was given."""

    name = "stand-in"

    def __init__(self) -> None:
        self.sets: list[LabelSet] = []
        self.clips: list[tuple[str, bytes]] = []
        self.missing_model = False

    @hookimpl
    def consentcam_plugin_info(self) -> PluginInfo:
        return PluginInfo("stand-in", "1.0", ("analyse_objects",))

    @hookimpl
    async def consentcam_analyse_clip(self, clip: ClipToAnalyse) -> LabelSet | None:
        if self.missing_model:
            raise PluginError("no model file: run the fetch command")
        self.clips.append((clip.evidence_id, clip.path.read_bytes()))
        return self.sets.pop(0) if self.sets else None


@pytest.fixture
def analysers() -> list[Any]:
    return [StandInAnalyser()]


@pytest.fixture
async def consentcam_platform(consentcam_settings, consentcam_clock, analysers):
    import consentcam.workflows  # noqa: F401 - registers the job handlers

    platform = await open_platform(consentcam_settings, clock=consentcam_clock, extra_plugins=analysers)
    yield platform
    await platform.db.dispose()


async def upload(api, world, clock, clip) -> tuple[Any, str]:
    case = await open_case(api, world, clock)
    receipt = await ok(await put_clip(api, case.path(), clip.read_bytes()), 201)
    return case, receipt["evidence_id"]


async def analyse_all(p) -> list[Job]:
    await Worker(p, kinds=(labels.ANALYSE,)).drain()
    async with p.db.sessions() as session:
        return list((await session.execute(select(Job).where(Job.kind == labels.ANALYSE))).scalars())


def search(api, person, **query):
    return api.get("/api/v1/evidence", params=query, headers=person.headers)


def at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat()


async def test_labels_are_kept_beside_the_clip_and_found_by_label_request_and_time(
        api, consentcam_world, consentcam_clock, consentcam_platform, analysers, h264_clip):
    p, analyser = consentcam_platform, analysers[0]
    analyser.sets.append(LabelSet("stand-in", MODEL.upper(), model_name="stand-in v1", labels=[
        Label("Bus", 1.0, 3.0, 0.9, box=(0.1, 0.2, 0.5, 0.6), colour="Red"),
        Label("car", 0.0, 9.0, 0.5),  # past the clip's 5 s: kept up to the end of the clip
    ]))
    case, evidence_id = await upload(api, consentcam_world, consentcam_clock, h264_clip)
    async with p.db.sessions() as session:
        before = await session.get(Evidence, evidence_id)
    [job] = await analyse_all(p)
    assert job.status == "done" and job.result["label_sets"] == [
        {"analyser": "stand-in", "model_sha256": MODEL, "labels": 2}] and job.result["refused"] == []
    assert analyser.clips == [(evidence_id, h264_clip.read_bytes())]  # the original bytes

    investigator = case.investigator
    page = await ok(await search(api, investigator, label="bus"))
    [item] = page["items"]
    assert item["id"] == evidence_id
    bus = next(label for label in item["labels"] if label["label"] == "bus")
    assert bus == {"label": "bus", "start_s": 1.0, "end_s": 3.0, "start_at": at(1), "end_at": at(3),
                   "box": [0.1, 0.2, 0.5, 0.6], "score": 0.9, "colour": "red", "attributes": {},
                   "analyser": "stand-in", "model_name": "stand-in v1", "model_sha256": MODEL,
                   "created_at": bus["created_at"]}
    car = next(label for label in item["labels"] if label["label"] == "car")
    assert car["end_s"] == pytest.approx(h264_clip_duration(item), abs=0.1)

    # The same spelling rules for the query; the span itself must meet from/to, not just the clip.
    assert len((await ok(await search(api, investigator, label="BUS")))["items"]) == 1
    assert len((await ok(await search(api, investigator, label="bus", **{"from": at(2.5), "to": at(4)})))["items"]) == 1
    assert (await ok(await search(api, investigator, label="bus", **{"from": at(3.5), "to": at(4.5)})))["items"] == []
    assert len((await ok(await search(api, investigator, label="car", **{"from": at(3.5), "to": at(4.5)})))["items"]) == 1
    assert len((await ok(await search(api, investigator, label="bus", request_id=case.request_id)))["items"]) == 1
    assert (await ok(await search(api, investigator, label="bus", request_id="no-such-request")))["items"] == []
    assert (await ok(await search(api, investigator, label="truck")))["items"] == []

    # The clip's record carries its labels; nothing about the clip itself changed.
    record = await ok(await api.get(f"/api/v1/evidence/{evidence_id}", headers=investigator.headers))
    assert [label["label"] for label in record["labels"]] == ["car", "bus"]
    async with p.db.sessions() as session:
        after = await session.get(Evidence, evidence_id)
    assert (after.sha256, after.size, after.media, after.provenance, after.disposed_at) == (
        before.sha256, before.size, before.media, before.provenance, None)

    # Access as for every evidence read: another agency finds nothing, an owner may not search.
    stranger = await consentcam_world.staff(await consentcam_world.agency(), "investigator")
    assert (await ok(await search(api, stranger, label="bus")))["items"] == []
    await problem(await search(api, case.owners[0], label="bus"), 403)

    # Audit: the analyser's read is a custody event; the label search is recorded with its query and result.
    async with p.db.sessions() as session:
        reads = (await session.execute(select(AuditEvent).where(
            AuditEvent.subject_id == evidence_id, AuditEvent.action == "custody.downloaded"))).scalars().all()
        searched = (await session.execute(select(AuditEvent).where(
            AuditEvent.action == "evidence.searched", AuditEvent.actor_id == investigator.id)
            .order_by(AuditEvent.seq))).scalars().first()
    assert [(e.actor_role, e.detail["purpose"], e.detail["analysers"]) for e in reads] == [
        ("plugin", "analysis", ["stand-in"])]
    assert searched.detail["query"]["label"] == "bus" and searched.detail["evidence_ids"] == [evidence_id]


def h264_clip_duration(item: dict[str, Any]) -> float:
    return float(item["media"]["duration_s"])


async def test_a_job_delivered_twice_stores_its_label_set_once(api, consentcam_world, consentcam_clock,
                                                               consentcam_platform, analysers, h264_clip):
    p, analyser = consentcam_platform, analysers[0]
    same = LabelSet("stand-in", MODEL, [Label("truck", 0.0, 1.0, 0.7)])
    analyser.sets += [same, same]
    _, evidence_id = await upload(api, consentcam_world, consentcam_clock, h264_clip)
    [job] = await analyse_all(p)
    again = await labels.analyse(p, job)  # a worker that lost its lease runs it again
    assert again["label_sets"] == [] and len(analyser.clips) == 2
    assert await count(p, EvidenceLabel) == 1


REFUSED = [
    (LabelSet("stand-in", "", [Label("truck", 0, 1, 0.5)]), "SHA-256 is missing"),
    (LabelSet("stand-in", "abc", [Label("truck", 0, 1, 0.5)]), "SHA-256 is missing or not 64 hex"),
    (LabelSet("", MODEL, [Label("truck", 0, 1, 0.5)]), "must be named"),
    (LabelSet("stand-in", MODEL, [Label("truck", 0, 1, 0.5), Label("truck", 3, 1, 0.5)]), "0 <= start <= end"),
    (LabelSet("stand-in", MODEL, [Label("truck", 0, float("nan"), 0.5)]), "finite"),
    (LabelSet("stand-in", MODEL, [Label("truck", 0, 1, 1.5)]), "score must be in"),
    (LabelSet("stand-in", MODEL, [Label("truck", 60, 61, 0.5)]), "starts after the clip ends"),
    (LabelSet("stand-in", MODEL, [Label("truck!", 0, 1, 0.5)]), "a label is 1-100"),
    (LabelSet("stand-in", MODEL, [Label("truck", 0, 1, 0.5, box=(0.5, 0.5, 0.2, 0.9))]), "a box is"),
]


async def test_a_label_set_that_names_no_model_or_makes_no_sense_is_refused_whole(
        api, consentcam_world, consentcam_clock, consentcam_platform, analysers, h264_clip):
    p, analyser = consentcam_platform, analysers[0]
    analyser.sets.append(REFUSED[0][0])
    _, evidence_id = await upload(api, consentcam_world, consentcam_clock, h264_clip)
    [job] = await analyse_all(p)  # through the job: refused, and why, in its result
    assert job.status == "done" and job.result["label_sets"] == [] and len(job.result["refused"]) == 1
    assert REFUSED[0][1] in job.result["refused"][0]
    async with p.db.sessions() as session:
        evidence = await session.get(Evidence, evidence_id)
    for bad, why in REFUSED[1:]:
        stored = await labels.store(p, evidence, [bad])
        assert stored["label_sets"] == [] and len(stored["refused"]) == 1 and why in stored["refused"][0], (bad, stored)
    assert await count(p, EvidenceLabel) == 0
    # A good set beside a bad one is kept: each set stands alone.
    stored = await labels.store(p, evidence, [REFUSED[3][0], LabelSet("other", MODEL, [Label("bus", 0, 1, 0.5)])])
    assert [s["analyser"] for s in stored["label_sets"]] == ["other"] and len(stored["refused"]) == 1
    assert await count(p, EvidenceLabel) == 1


async def test_clips_wait_for_an_analyser_without_its_model_and_are_labelled_once_it_has_one(
        api, consentcam_world, consentcam_clock, consentcam_platform, analysers, h264_clip):
    p, analyser = consentcam_platform, analysers[0]
    analyser.missing_model = True
    case, evidence_id = await upload(api, consentcam_world, consentcam_clock, h264_clip)
    [job] = await analyse_all(p)
    assert (job.status, job.attempts, job.max_attempts) == ("pending", 1, 40) and "no model file" in job.last_error
    assert await count(p, EvidenceLabel) == 0

    analyser.missing_model = False  # the operator fetched the model
    analyser.sets.append(LabelSet("stand-in", MODEL, [Label("bus", 0.0, 2.0, 0.8)]))
    consentcam_clock.advance(3600)
    [job] = await analyse_all(p)
    assert job.status == "done" and job.attempts == 2
    assert [i["id"] for i in (await ok(await search(api, case.investigator, label="bus")))["items"]] == [evidence_id]


@pytest.mark.parametrize("analysers", [[]])
async def test_without_an_analyser_no_analysis_job_is_written(api, consentcam_world, consentcam_clock,
                                                             consentcam_platform, h264_clip):
    await upload(api, consentcam_world, consentcam_clock, h264_clip)
    assert await analyse_all(consentcam_platform) == []
    assert consentcam_platform.plugins.analysers() == []


async def test_bad_search_input_is_a_problem(api, consentcam_world, consentcam_clock, consentcam_platform, h264_clip):
    case, _ = await upload(api, consentcam_world, consentcam_clock, h264_clip)
    await problem(await search(api, case.investigator, label="x" * 101), 422)
    await problem(await search(api, case.investigator, label="bus", **{"from": "yesterday"}), 422)
