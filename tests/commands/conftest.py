"""Fixtures for the shared commands: one database, reached through the CLI and the admin API."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.commands import models
from monitor.demo_model import paths
from tests.collector.conftest import (  # noqa: F401  (fixtures, used by name)
    ADMIN_TOKEN,
    MODEL,
    auth,
    collector,
    http,
    settings,
)

ADMIN = auth(ADMIN_TOKEN)
CARD: dict[str, Any] = json.loads(paths().card.read_text())
CLI_ERROR = "edge-monitor: error: "


def parquet(rows: int) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"temperature_c": [70.0 + i for i in range(rows)]}).to_parquet(buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Refusal:
    """How the admin API refused a request: status, envelope code, first field, message."""

    status: int
    code: str
    field: str | None
    message: str

    @classmethod
    def of(cls, answer: httpx.Response) -> Refusal:
        error = answer.json()["error"]
        details = error["details"] or [{}]
        return cls(answer.status_code, error["code"], details[0].get("field"), error["message"])


@dataclass
class Both:
    """The CLI and the admin API over the same database."""

    db_url: str
    http: httpx.Client
    capsys: pytest.CaptureFixture[str]
    files: Path

    def cli(self, *args: str) -> int:
        self.capsys.readouterr()
        return main(["--database-url", self.db_url, *args])

    def cli_error(self, *args: str) -> str:
        """The one line the CLI prints when it refuses, without its prefix (exit code 1)."""
        assert self.cli(*args) == 1
        lines = self.capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(CLI_ERROR), lines[0]
        return lines[0].removeprefix(CLI_ERROR)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.request(method, f"/v1/admin{path}", json=body, headers=ADMIN)

    def api_refusal(self, method: str, path: str, body: dict[str, Any] | None = None) -> Refusal:
        return Refusal.of(self.api(method, path, body))

    def register_cli_args(
        self,
        model: str,
        *,
        artifact: bytes,
        card: Any,
        reference: bytes | None = None,
        version: str | None = None,
    ) -> list[str]:
        """`models register` arguments for these inputs, written to files."""
        (self.files / "model.onnx").write_bytes(artifact)
        (self.files / "card.json").write_text(json.dumps(card))
        args = ["models", "register", model, "--onnx", str(self.files / "model.onnx")]
        args += ["--card", str(self.files / "card.json")]
        if reference is not None:
            (self.files / "reference.data").write_bytes(reference)
            args += ["--reference", str(self.files / "reference.data")]
        if version is not None:
            args += ["--version", version]
        return args

    def register_body(
        self,
        *,
        artifact: bytes,
        card: Any,
        reference: bytes | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """The admin API's body for these inputs."""
        body: dict[str, Any] = {
            "artifact_base64": base64.b64encode(artifact).decode(),
            "card": card,
        }
        if reference is not None:
            body["reference_base64"] = base64.b64encode(reference).decode()
        if version is not None:
            body["version"] = version
        return body


@pytest.fixture
def both(
    db_url: str,
    engine: Engine,
    http: httpx.Client,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Both:
    return Both(db_url, http, capsys, tmp_path)


@pytest.fixture
def pump(engine: Engine) -> str:
    """The model ``pump-failure`` with version 1 in production and version 2 a candidate."""
    models.add_model(engine, MODEL)
    for version in ("1", "2"):
        models.register_version(
            engine,
            MODEL,
            artifact=f"onnx-{version}".encode(),
            card={**CARD, "version": version},
        )
    models.promote(engine, MODEL, "1")
    return MODEL
