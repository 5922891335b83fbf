"""The webhook routes of the admin API: endpoints, test messages and the delivery log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from monitor.alerts.receiver import Receiver
from monitor.alerts.signing import new_secret
from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from tests.collector.conftest import ADMIN_TOKEN, auth

ADMIN = auth(ADMIN_TOKEN)
SECRET = new_secret()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path,
        admin_token=SecretStr(ADMIN_TOKEN),
        webhook_allowed_networks=["127.0.0.1/32"],
        webhook_timeout_seconds=5,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as running:
        yield running


def _error(answer: httpx.Response) -> tuple[int, str, list[str]]:
    error = answer.json()["error"]
    return answer.status_code, error["code"], [d["field"] for d in error["details"] or []]


def test_the_routes_want_the_admin_token(http: httpx.Client, token: str) -> None:
    assert http.get("/v1/admin/webhooks").status_code == 401
    assert http.get("/v1/admin/webhooks", headers=auth(token)).status_code == 401
    assert http.get("/v1/admin/webhooks", headers=ADMIN).json() == {"endpoints": []}


def test_an_endpoint_is_added_tested_and_its_log_read(
    http: httpx.Client, receiver: Receiver
) -> None:
    added = http.put(
        "/v1/admin/webhooks/ops", json={"url": receiver.url, "secret": SECRET}, headers=ADMIN
    )
    assert added.status_code == 200
    assert "secret" not in added.json()
    assert added.json()["source"] == "api" and added.json()["enabled"] is True
    tested = http.post("/v1/admin/webhooks/ops/test", headers=ADMIN)
    assert tested.status_code == 200
    assert tested.json()["delivered"] is True and tested.json()["status_code"] == 204
    assert [m.message_id for m in receiver.received] == [tested.json()["message_id"]]
    assert receiver.received[0].event_type == "webhook.test"
    log = http.get("/v1/admin/webhooks/ops/deliveries", headers=ADMIN).json()["deliveries"]
    assert [(d["event_type"], d["status"], len(d["tries"])) for d in log] == [
        ("webhook.test", "delivered", 1)
    ]
    assert http.get(
        "/v1/admin/webhooks/ops/deliveries", params={"status": "failed"}, headers=ADMIN
    ).json() == {"deliveries": []}


def test_a_generated_secret_is_answered_once(http: httpx.Client) -> None:
    first = http.put(
        "/v1/admin/webhooks/ext", json={"url": "https://93.184.216.34/hook"}, headers=ADMIN
    )
    assert first.json()["secret"].startswith("whsec_")
    again = http.put(
        "/v1/admin/webhooks/ext",
        json={"url": "https://93.184.216.34/other", "enabled": False},
        headers=ADMIN,
    )
    assert "secret" not in again.json()
    assert again.json()["enabled"] is False
    assert again.json()["disabled_reason"] == "disabled by hand"
    listed = http.get("/v1/admin/webhooks", headers=ADMIN).json()["endpoints"]
    assert [(e["name"], e["url"]) for e in listed] == [("ext", "https://93.184.216.34/other")]
    assert all("secret" not in e for e in listed)


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ({"url": "http://169.254.169.254/latest"}, (422, "refused_target", ["url"])),
        ({"url": "http://10.0.0.1/"}, (422, "refused_target", ["url"])),
        ({"url": "http://[::1]:8080/"}, (422, "refused_target", ["url"])),
        ({"url": "ftp://93.184.216.34/"}, (422, "validation_failed", ["url"])),
        (
            {"url": "https://93.184.216.34/", "secret": "shh"},
            (422, "validation_failed", ["secret"]),
        ),
        (
            {"url": "https://93.184.216.34/", "colour": "red"},
            (422, "validation_failed", ["colour"]),
        ),
    ],
)
def test_a_bad_url_or_a_refused_target_names_the_field(
    http: httpx.Client, body: dict[str, object], refusal: tuple[int, str, list[str]]
) -> None:
    assert _error(http.put("/v1/admin/webhooks/bad", json=body, headers=ADMIN)) == refusal
    assert http.get("/v1/admin/webhooks", headers=ADMIN).json() == {"endpoints": []}


def test_refused_targets_say_how_to_allow_them(http: httpx.Client) -> None:
    answer = http.put("/v1/admin/webhooks/x", json={"url": "http://10.0.0.1/"}, headers=ADMIN)
    assert answer.json()["error"]["details"][0]["message"] == (
        "10.0.0.1 is a private address; allow it with MONITOR_WEBHOOK_ALLOWED_NETWORKS"
    )


def test_an_unknown_endpoint_is_404(http: httpx.Client) -> None:
    for answer in (
        http.delete("/v1/admin/webhooks/nobody", headers=ADMIN),
        http.post("/v1/admin/webhooks/nobody/test", headers=ADMIN),
        http.get("/v1/admin/webhooks/nobody/deliveries", headers=ADMIN),
    ):
        assert _error(answer)[:2] == (404, "unknown_endpoint")


def test_a_removed_endpoint_is_gone(http: httpx.Client, receiver: Receiver) -> None:
    http.put("/v1/admin/webhooks/ops", json={"url": receiver.url}, headers=ADMIN)
    assert http.delete("/v1/admin/webhooks/ops", headers=ADMIN).json() == {
        "name": "ops",
        "removed": True,
    }
    assert http.get("/v1/admin/webhooks", headers=ADMIN).json() == {"endpoints": []}


def test_a_failed_test_says_so_without_being_an_error(
    http: httpx.Client, receiver: Receiver
) -> None:
    http.put("/v1/admin/webhooks/ops", json={"url": receiver.url, "secret": SECRET}, headers=ADMIN)
    receiver.status = 500
    tested = http.post("/v1/admin/webhooks/ops/test", headers=ADMIN).json()
    assert (tested["delivered"], tested["status_code"]) == (False, 500)
    (entry,) = http.get("/v1/admin/webhooks/ops/deliveries", headers=ADMIN).json()["deliveries"]
    assert entry["status"] == "failed" and entry["tries"][0]["status_code"] == 500


def test_a_target_no_longer_allowed_is_not_tested(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    with BackgroundCollector(settings) as running, httpx.Client(base_url=running.url) as http:
        http.put("/v1/admin/webhooks/ops", json={"url": receiver.url}, headers=ADMIN)
    closed = settings.model_copy(update={"webhook_allowed_networks": []})
    with BackgroundCollector(closed) as running, httpx.Client(base_url=running.url) as http:
        answer = http.post("/v1/admin/webhooks/ops/test", headers=ADMIN)
    assert _error(answer) == (422, "refused_target", ["url"])
    assert receiver.requests == 0


def test_an_endpoint_of_the_rules_file_is_changed_in_the_file(
    http: httpx.Client, engine: Engine
) -> None:
    from datetime import UTC, datetime

    from monitor.storage import webhooks
    from monitor.storage.engine import begin_write

    with begin_write(engine) as conn:
        webhooks.upsert_endpoint(
            conn,
            name="filed",
            url="https://93.184.216.34/",
            secret=SECRET,
            source="file",
            now=datetime.now(UTC),
        )
    answer = http.put(
        "/v1/admin/webhooks/filed", json={"url": "https://93.184.216.34/x"}, headers=ADMIN
    )
    assert _error(answer)[:2] == (409, "defined_by_file")
