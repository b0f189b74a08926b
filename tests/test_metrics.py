"""/metrics of real uvicorn processes: prometheus-client's exposition, labelled by route template only.

Whatever paths clients ask for, the exposition stays parseable and its series bounded; with
`whitebill serve --processes 2` any process answers for both, from a temporary directory that is
gone once the server has stopped.
"""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Backend, serving

pytestmark = pytest.mark.usefixtures("database")

ROUTES = {
    "/healthz",
    "/metrics",
    "/webhooks/{provider}/{config_id:int}",
    "/graphql",
    "/usage",
    "/reports/{report}.csv",
    "/pay/{reference}/{mac}",
    "/pay/{reference}/{mac}/return",
    "/portal",
    "/portal/",
    "/ui",
    "other",
}
HOSTILE = '"\\\n{}=,# \x7f\u00e9\u3000%'


def random_path(rng: random.Random) -> str:
    """A path of 1 to 3 segments of printable ASCII and hostile characters, percent-encoded."""
    alphabet = string.ascii_letters + string.digits + HOSTILE
    segments = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(1, 3))]
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def requests_by_series(exposition: str) -> dict[tuple[tuple[str, str], ...], float]:
    families = {family.name: family for family in text_string_to_metric_families(exposition)}
    counted = families["whitebill_http_requests"]
    return {tuple(sorted(s.labels.items())): s.value for s in counted.samples if s.name.endswith("_total")}


async def test_metrics_stay_parseable_and_bounded_after_a_thousand_random_paths(
    database: Backend, providers: None, tmp_path: Path
) -> None:
    # A server of its own: the series counted are those these requests made, not other tests'.
    with serving(database, tmp_path / "metrics.log") as server:
        await _a_thousand_random_paths(server.url)


async def _a_thousand_random_paths(url: str) -> None:
    rng = random.Random(16)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        first = (await http.get("/a%22b%5Cc%0Ad")).status_code
        assert first == 404
        limit = asyncio.Semaphore(16)

        async def visit(path: str) -> None:
            async with limit:
                method = rng.choice(["GET", "POST", "DELETE", "PURGE"])
                answer = await http.request(method, path)
                assert answer.status_code < 500

        await asyncio.gather(*(visit(random_path(rng)) for _ in range(1000)))
        exposition = (await http.get("/metrics")).text
    series = requests_by_series(exposition)  # parses, or raises
    assert {dict(labels)["path"] for labels in series} <= ROUTES
    assert {dict(labels)["method"] for labels in series} <= {"GET", "POST", "DELETE", "OTHER", "HEAD", "PUT"}
    assert len(series) <= 40, sorted(series)
    assert sum(v for labels, v in series.items() if dict(labels)["path"] == "other") >= 1001
    latency = {f.name: f for f in text_string_to_metric_families(exposition)}["whitebill_http_request_duration_seconds"]
    assert {s.labels["path"] for s in latency.samples} <= ROUTES


async def test_several_server_processes_answer_metrics_for_all_and_leave_no_directory(
    database: Backend, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with serving(
        database, tmp_path / "server.log", args=("--processes", "2"), extra_env={"TMPDIR": str(scratch)}
    ) as server:
        assert [p.name for p in scratch.iterdir() if p.name.startswith("whitebill-metrics-")], "no shared directory"
        for _ in range(40):  # a new connection each time: the two processes take turns as they come
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                assert (await http.get("/healthz")).status_code == 200
        for _ in range(6):  # whichever process answers, it counts every request
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                series = requests_by_series((await http.get("/metrics")).text)
            health = (("method", "GET"), ("path", "/healthz"), ("status", "200"))
            assert series.get(health, 0) >= 40, (series, server.log()[-3000:])
    assert list(scratch.iterdir()) == [], f"the metrics directory outlived the server:\n{server.log()[-3000:]}"
