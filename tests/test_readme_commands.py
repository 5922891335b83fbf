"""README.md cannot go stale: every command and flag it shows runs, or exists, as written.

- Every ``bash`` block after the first two (the demo and the test command, which CI and
  tests/test_readme.py cover) runs line by line in one ``bash -e`` per block, in a sandbox: a
  temporary HOME, XDG_DATA_HOME and working directory (so ``~/.local/share/edge-monitor`` and
  relative paths land in tmp), this venv's ``bin`` first on PATH and linked as ``./.venv``,
  the shipped demo model's files under the names in ``FILES``, the collector's ports free
  ones (``MONITOR_PORT``, ``MONITOR_WORKER_METRICS_PORT``: a test must not need 8750 to be
  free). On PostgreSQL ``MONITOR_DATABASE_URL`` names a fresh schema of the test server.
- Lines that install (``python3 -m venv``, ``pip install``) are not run: the checkout is
  installed already, and CI (`.ci/run`) and tests/test_packaging.py run the installs.
- A long-running command (``LONG_RUNNING``) is started as written, must show that it started
  (``STARTED``: a server answers ``/healthz``, a worker or a simulation prints its first
  progress line), and is then stopped with SIGINT, like Ctrl-C, and must exit cleanly. So
  ``simulate --duration 300`` runs as written but only until it shows progress.
- What a block cannot know is in three small tables: ``REWRITES`` (a service that is not on
  loopback), ``GIVEN`` (the state a block continues from) and, for ``python`` blocks,
  ``SUBSTITUTIONS`` (served on loopback: one collector per backend for the module). Nothing
  else of a block is changed.
- A block is left out only by ``<!-- readme-test: not run: REASON -->`` right before it, with
  a REASON.
- The command-line synopsis and every inline ``edge-monitor ...`` command of the prose name
  only commands and flags that the real parser (``monitor.cli._parser()``) has.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, func, select

from monitor.cli import _parser
from monitor.demo_model import paths
from tests import readme
from tests.conftest import BACKENDS, POSTGRES_URL, postgres_problem, require_service
from tests.readme import Block

#: The first bash blocks are the demo and the test command: CI runs the second exactly, and
#: tests/test_readme.py checks both; installing a venv per test run is not this file's job.
FIRST_BLOCKS_COVERED_ELSEWHERE = 2

#: Literal text of a block -> what it is replaced with. A block with such a rewrite runs only
#: on the backend the rewrite points at.
REWRITES: dict[str, str] = {
    # The fleet example's PostgreSQL host `db` -> a fresh schema of the test PostgreSQL.
    "postgresql+psycopg://monitor:secret@db:5432/monitor": "postgresql",
}

#: The demo model's files, under the names the README's blocks use, in every sandbox.
FILES: dict[str, str] = {
    "model.onnx": "model",
    "pump-failure.onnx": "model",
    "card.json": "card",
    "ref.parquet": "reference",
}

#: Commands that run until stopped: (command path) -> whether ``--once`` ends it.
LONG_RUNNING: dict[tuple[str, ...], str | None] = {
    ("serve",): None,
    ("edge", "serve"): None,
    ("worker",): "--once",
    ("simulate",): None,
    ("demo",): None,
    ("dashboard",): None,
}
#: How each long-running command shows it has started; a captured URL must answer /healthz.
STARTED: dict[tuple[str, ...], re.Pattern[str]] = {
    ("serve",): re.compile(r"listening on (http://[^\s;()]+)"),
    ("edge", "serve"): re.compile(r"serving .+ on (http://\S+)"),
    ("demo",): re.compile(r"collector on (http://\S+)"),
    ("worker",): re.compile(r"worker running"),
    ("simulate",): re.compile(r"simulating: "),
    ("dashboard",): re.compile(r"dashboard: open (http://\S+)/ "),
}
#: Where a started command's captured URL says it is healthy.
HEALTH = {("dashboard",): "/_stcore/health"}
#: Servers exit 0 on Ctrl-C (README "Exit codes and errors"); other commands report
#: `edge-monitor: interrupted` and exit 130.
EXITS_0_ON_SIGINT = {("serve",), ("edge", "serve")}


@dataclass(frozen=True)
class Given:
    """The state a block continues from (its README text cannot create it)."""

    why: str
    prepare: Callable[[str, Path], None]  # (database URL, working directory)


def _migrated(url: str, _work: Path) -> None:
    from monitor.storage import migrations

    migrations.upgrade(url)


def register_version_1(engine: Engine) -> None:
    """Model pump-failure, with the demo model registered as version 1 and promoted."""
    from monitor.commands import models

    demo = paths()
    models.add_model(engine, "pump-failure")
    models.register_version(
        engine,
        "pump-failure",
        artifact=demo.model.read_bytes(),
        card=json.loads(demo.card.read_text()),
        reference=demo.reference.read_bytes(),
        version="1",
    )
    models.promote(engine, "pump-failure", "1")


def _version_1_in_production(url: str, work: Path) -> None:
    """pump-failure 1 registered from the demo model and promoted; card.json is the card of
    the new version 2 that the block registers."""
    from monitor.storage.engine import make_engine

    _migrated(url, work)
    engine = make_engine(url)
    try:
        register_version_1(engine)
    finally:
        engine.dispose()
    card = json.loads(paths().card.read_text())
    (work / "card.json").write_text(json.dumps({**card, "version": "2"}), encoding="utf-8")


def _quickstart_reference(_url: str, work: Path) -> None:
    """reference.csv as the quickstart describes it: the SDK example's inputs, prediction and
    class probabilities, as the model saw them in training."""
    rng = np.random.default_rng(3)
    n = 2000
    fail = rng.random(n) < 0.15
    pd.DataFrame(
        {
            "temperature": rng.normal(70.0, 3.0, n).round(2),
            "vibration": rng.gamma(4.0, 0.6, n).round(3),
            "machine_type": rng.choice(["press", "pump", "fan"], n),
            "prediction": np.where(fail, "fail", "ok"),
            "proba:ok": np.where(fail, 0.2, 0.9),
            "proba:fail": np.where(fail, 0.8, 0.1),
        }
    ).to_csv(work / "reference.csv", index=False)


def _cli(url: str, *args: str) -> None:
    from monitor.cli import main

    assert main(["--database-url", url, *args]) == 0, args


def _pump_failure_added(url: str, work: Path) -> None:
    _migrated(url, work)
    _cli(url, "models", "add", "pump-failure")


def _quickstart_nodes_reported(url: str, work: Path) -> None:
    """The quickstart after its nodes have reported for a day: pump-failure 3 registered from
    reference.csv, press-07 and two more nodes, yesterday's records (press-07's temperature
    10 degrees hot from noon) stored and analysed."""
    _quickstart_reference(url, work)
    _pump_failure_added(url, work)
    _cli(
        url,
        "models",
        "register",
        "pump-failure",
        "--version",
        "3",
        "--reference",
        str(work / "reference.csv"),
    )
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    reference = pd.read_csv(work / "reference.csv")
    rng = np.random.default_rng(4)
    rows = reference.sample(3 * 600, replace=True, random_state=5).reset_index(drop=True)
    rows.insert(0, "node", np.repeat(["press-07", "press-08", "press-09"], 600))
    rows.insert(
        0,
        "ts",
        [
            day + timedelta(seconds=float(s))
            for s in np.tile(np.sort(rng.uniform(0, 86_000, 600)), 3)
        ],
    )
    hot = (rows["node"] == "press-07") & (rows["ts"] >= day + timedelta(hours=12))
    rows.loc[hot, "temperature"] += 10.0
    history = work / "yesterday.parquet"
    rows.to_parquet(history, index=False)
    _cli(
        url,
        "import",
        str(history),
        "--model",
        "pump-failure",
        "--version",
        "3",
        "--node-column",
        "node",
    )
    _cli(
        url,
        "analyse",
        "--model",
        "pump-failure",
        "--from",
        day.isoformat(),
        "--to",
        (day + timedelta(days=1)).isoformat(),
    )
    history.unlink()


def _own_history(_url: str, work: Path) -> None:
    """The walk-through's files: reference.csv and a year of history.parquet, the temperature
    sensor 9 degrees hot from July on (tests/e2e/history.py)."""
    from tests.e2e import history

    history.write(work)


def _pump_failure_registered(url: str, work: Path) -> None:
    """pump-failure 1 (the demo model) in production."""
    from monitor.storage.engine import make_engine

    _migrated(url, work)
    engine = make_engine(url)
    try:
        register_version_1(engine)
    finally:
        engine.dispose()


def _rules_file(url: str, work: Path) -> None:
    """The alerts block's alerts.toml is the example file, for the registered demo model."""
    _pump_failure_registered(url, work)
    example = Path(__file__).parents[1] / "examples" / "alerts.toml"
    (work / "alerts.toml").write_text(example.read_text(encoding="utf-8"), encoding="utf-8")


#: Text a block contains -> the state it starts from. Blocks that run `db upgrade` start empty.
GIVEN: dict[str, Given] = {
    "edge-monitor models register pump-failure --onnx": Given(
        "the rollout block continues a fleet running version 1 and registers version 2",
        _version_1_in_production,
    ),
    "edge-monitor simulate": Given("the simulator needs a migrated database", _migrated),
    "edge-monitor models register pump-failure --version 3 --reference reference.csv": Given(
        "the quickstart's reference file is the user's own", _quickstart_reference
    ),
    "edge-monitor results --model pump-failure": Given(
        "reading results continues a fleet that has reported and been analysed",
        _quickstart_nodes_reported,
    ),
    "edge-monitor models window pump-failure --every 15m": Given(
        "window policies are set on a registered model", _pump_failure_added
    ),
    "edge-monitor models baseline pump-failure --per node": Given(
        "baselines are set on a registered model", _pump_failure_added
    ),
    "edge-monitor alerts apply alerts.toml --dry-run": Given(
        "the alerts block applies the user's own rules file to a registered model", _rules_file
    ),
    "edge-monitor webhooks add ops": Given("endpoints live in a migrated database", _migrated),
    "edge-monitor retrain add-hook nightly": Given(
        "hooks are added to a registered model", _pump_failure_registered
    ),
    "edge-monitor import history.parquet": Given(
        "the walk-through's reference and history files are the user's own", _own_history
    ),
}

#: Python blocks: what a block cannot know -> what the test puts there. Nothing else changes.
SUBSTITUTIONS: dict[str, str] = {
    # text: the collector's address -> the served collector's URL
    '"http://collector:8750"': "url",
    # a name the block uses and never defines -> node press-07's token (granted pump-failure)
    "token": "token",
    # `...` closing a dict literal -> the demo model's other features (the reference's first row)
    "...": "features",
}
ELLIPSIS_IN_DICT = re.compile(r",\s*\.\.\.\s*}")


# -- which blocks ---------------------------------------------------------------------------


def bash_blocks() -> list[Block]:
    found = [b for b in readme.blocks(readme.read()) if b.lang == "bash"]
    return found[FIRST_BLOCKS_COVERED_ELSEWHERE:]


def python_blocks() -> list[Block]:
    return [b for b in readme.blocks(readme.read()) if b.lang == "python"]


def runs(block: Block) -> bool:
    try:
        return block.not_run_reason() is None
    except ValueError:
        return True  # test_every_excluded_block_says_why reports it; running shows the rest


def rewritten_backends(block: Block) -> set[str]:
    return {target for text, target in REWRITES.items() if text in block.text}


def block_id(block: Block) -> str:
    """``line56-db-upgrade``: where the block is and the first command it runs."""
    parser = _parser()
    for _, text in block.logical_lines():
        words = readme.command_words(text)
        if words:
            return "-".join([f"line{block.line}", *readme.resolve(parser, words)])
    return f"line{block.line}"


def bash_cases() -> list[Any]:
    """(block, backend) of every bash block that runs: both backends, or the one that a
    rewrite points it at."""
    cases = []
    for block in filter(runs, bash_blocks()):
        backends = rewritten_backends(block) or {"sqlite", "postgresql"}
        for backend in ("sqlite", "postgresql"):
            if backend in backends:
                cases.append(pytest.param(block, backend, id=f"{block_id(block)}-{backend}"))
    return cases


# -- directives and tables -----------------------------------------------------------------


def test_every_excluded_block_says_why() -> None:
    problems = []
    for block in readme.blocks(readme.read()):
        try:
            reason = block.not_run_reason()
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if reason == "":
            problems.append(
                f"README.md:{block.line - 1}: the block's <!-- readme-test: not run: --> gives no "
                "reason"
            )
    assert problems == []


def test_every_rewrite_and_given_applies_to_a_block_that_runs() -> None:
    texts = [b.text for b in bash_blocks() if runs(b)]
    stale = [key for key in [*REWRITES, *GIVEN] if not any(key in t for t in texts)]
    assert stale == [], f"entries of REWRITES/GIVEN that no README block contains: {stale}"


def test_a_block_is_left_out_only_by_a_directive_with_a_reason() -> None:
    text = (
        "<!-- readme-test: not run: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n"
        "<!-- readme-test: not run:  -->\n\n```bash\nls\n```\n"
        "<!-- readme-test: skip -->\n```bash\npwd\n```\n"
        "<!-- a comment -->\n```bash\nwhoami\n```\n"
    )
    gpu, empty, unknown, plain = readme.blocks(text)
    assert gpu.not_run_reason() == "needs a GPU"
    assert empty.not_run_reason() == ""
    with pytest.raises(ValueError, match="is no directive"):
        unknown.not_run_reason()
    assert plain.not_run_reason() is None


def test_a_command_or_flag_the_parser_lacks_is_named_with_its_readme_line() -> None:
    parser = _parser()
    check = readme.check_command

    assert check(parser, readme.words_of("nodes add NAME [--group G] [--model M]..."), "x") == []
    assert check(parser, readme.words_of("serve [--no-such-flag N]"), "README.md:9")[0].startswith(
        "README.md:9: `edge-monitor serve` has no flag --no-such-flag (its flags: --host,"
    )
    assert check(parser, ["models", "register|frobnicate", "..."], "README.md:9") == [
        "README.md:9: `edge-monitor models` has no command 'frobnicate' (its commands: "
        + ", ".join(readme.subcommands(readme.subcommands(parser)["models"]))
        + ")"
    ]


# -- bash blocks ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sandbox:
    work: Path
    env: dict[str, str]
    database_url: str


def make_sandbox(tmp_path: Path, database_url: str | None) -> Sandbox:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir(parents=True)
    data_home = home / ".local" / "share"
    venv = Path(sys.prefix)
    (work / ".venv").symlink_to(venv, target_is_directory=True)
    demo = paths()
    for name, field in FILES.items():
        (work / name).write_bytes(getattr(demo, field).read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(data_home),
        XDG_CACHE_HOME=str(home / ".cache"),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        MONITOR_PORT=str(free_port()),
        MONITOR_WORKER_METRICS_PORT=str(free_port()),
        MONITOR_DASHBOARD_PORT=str(free_port()),
    )
    if database_url is not None:
        env["MONITOR_DATABASE_URL"] = database_url
    url = database_url or f"sqlite:///{data_home / 'edge-monitor' / 'edge-monitor.db'}"
    return Sandbox(work, env, url)


INSTALLS = re.compile(r"(^|\s)(\S*python3?\s+-m\s+venv|\S*pip3?\s+install)(\s|$)")


@dataclass(frozen=True)
class Script:
    text: str
    #: The long-running command the script ends with (exec'd), if any: (line, path, text).
    long_running: tuple[int, tuple[str, ...], str] | None


def script_of(block: Block, rewrites: dict[str, str], line_file: Path) -> Script:
    """The block as a bash script: install steps left out, rewrites applied, each line
    preceded by a note of its README line, a long-running last command exec'd (so that
    SIGINT reaches it)."""
    parser = _parser()
    out = ["set -e"]
    lines = block.logical_lines()
    long_running = None
    for position, (number, text) in enumerate(lines):
        parts = [p.strip() for p in text.split("&&")]
        kept = [p for p in parts if not INSTALLS.search(p)]
        if not kept:
            out.append(f"# README.md:{number} not run (an install): {text}")
            continue
        for literal, replacement in rewrites.items():
            kept = [p.replace(literal, replacement) for p in kept]
        for index, part in enumerate(kept):
            words = readme.command_words(part)
            if words is None:
                continue
            path = readme.resolve(parser, words)
            if path not in LONG_RUNNING or LONG_RUNNING[path] in words:
                continue
            if position != len(lines) - 1 or index != len(kept) - 1:
                pytest.fail(
                    f"README.md:{number}: {part!r} runs until stopped; this test runs such a "
                    "command only as its block's last command (teach tests/test_readme_commands"
                    ".py to run it elsewhere, or move it)"
                )
            long_running = (number, path, part)
            kept[index] = "exec " + part
        out.append(f"printf '%s\\n' {number} > {shlex.quote(str(line_file))}")
        out.append(" && ".join(kept))
    return Script("\n".join(out) + "\n", long_running)


def output_of(out: Path, err: Path) -> str:
    return out.read_text(errors="replace") + err.read_text(errors="replace")


def failed_line(block: Block, line_file: Path) -> str:
    number = int(line_file.read_text().strip()) if line_file.exists() else block.line
    text = dict(block.logical_lines()).get(number, "")
    return f"README.md:{number} `{text}`"


def await_start(
    proc: subprocess.Popen[bytes], path: tuple[str, ...], out: Path, err: Path, where: str
) -> bool:
    """Whether the command is still running once it showed that it started (False: it did
    and then finished by itself, with status 0); fails if it exits otherwise."""
    pattern = STARTED[path]
    deadline = time.monotonic() + 120  # a guard against hanging, not a performance limit
    url = None
    while time.monotonic() < deadline:
        exited = proc.poll()
        match = pattern.search(output_of(out, err))
        if exited is not None:
            if exited == 0 and match is not None:
                return False
            pytest.fail(f"{where} exited with {exited} instead of running:\n{output_of(out, err)}")
        if match is not None and not match.groups():
            return True
        if match is not None:
            url = match.group(1).replace("0.0.0.0", "127.0.0.1").rstrip(".,")
            try:
                if httpx.get(url + HEALTH.get(path, "/healthz"), timeout=2).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    pytest.fail(f"{where} did not show that it started (at {url}):\n{output_of(out, err)}")


def stop_with_sigint(
    proc: subprocess.Popen[bytes], path: tuple[str, ...], where: str, out: Path, err: Path
) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where} did not stop on SIGINT:\n{output_of(out, err)}")
    output = output_of(out, err)
    assert "Traceback" not in output, f"{where} printed a traceback when stopped:\n{output}"
    if path in EXITS_0_ON_SIGINT:
        assert code == 0, f"{where} exited {code} on SIGINT, not 0:\n{output}"
    else:
        assert code == 130, f"{where} exited {code} on SIGINT, not 130:\n{output}"
        lines = err.read_text(errors="replace").strip().splitlines()
        assert "edge-monitor: interrupted" in lines, f"{where} did not say it was interrupted"
        after = lines[lines.index("edge-monitor: interrupted") + 1 :]
        assert after == [], (
            f"{where} printed {len(after)} line(s) after `edge-monitor: interrupted` (an "
            f"error is one line):\n" + "\n".join(after)
        )


@pytest.mark.slow  # a few seconds per block: each command is a process, as the user runs it
@pytest.mark.parametrize(("block", "backend"), bash_cases(), indirect=["backend"])
def test_bash_block_runs_as_written(
    block: Block, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    database_url = None if backend == "sqlite" else str(request.getfixturevalue("db_url"))
    sandbox = make_sandbox(tmp_path, database_url)
    rewrites = {
        text: shlex.quote(sandbox.database_url)
        for text, target in REWRITES.items()
        if target == backend and text in block.text
    }
    for text, given in GIVEN.items():
        if text in block.text:
            given.prepare(sandbox.database_url, sandbox.work)
    line_file = tmp_path / "line"
    script = script_of(block, rewrites, line_file)
    (tmp_path / "block.sh").write_text(script.text, encoding="utf-8")
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            ["bash", "-e", str(tmp_path / "block.sh")],
            cwd=sandbox.work,
            env=sandbox.env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # so that nothing it started outlives the test
        )
    try:
        if script.long_running is None:
            code = proc.wait(timeout=240)
            assert code == 0, (
                f"{failed_line(block, line_file)} exited with {code}:\n{output_of(out, err)}"
            )
            return
        number, path, text = script.long_running
        where = f"README.md:{number} `{text}`"
        if await_start(proc, path, out, err, where):
            stop_with_sigint(proc, path, where, out, err)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            with contextlib.suppress(ProcessLookupError):  # collector workers left behind
                os.killpg(proc.pid, signal.SIGKILL)


# -- the command line: synopsis and prose ---------------------------------------------------


def synopsis() -> Block:
    for block in readme.blocks(readme.read()):
        if block.lang == "" and block.lines and block.lines[0].startswith("edge-monitor "):
            return block
    pytest.fail("README.md has no command-line synopsis (a ``` block starting `edge-monitor `)")


def synopsis_commands(block: Block) -> list[tuple[int, list[str]]]:
    """(README line, words after `edge-monitor`) of each command the synopsis shows."""
    found = []
    for offset, line in enumerate(block.lines):
        number = block.line + offset
        text = line.strip()
        if not text:
            continue
        if offset == 0:
            found.append((number, readme.words_of(text.removeprefix("edge-monitor"))))
            continue
        command = re.split(r"\s{2,}", text, maxsplit=1)[0]  # the description follows 2+ spaces
        for alternative in command.split(" | "):
            found.append((number, readme.words_of(alternative)))
    return found


def test_the_synopsis_names_only_real_commands_and_flags() -> None:
    parser = _parser()
    problems = []
    for number, words in synopsis_commands(synopsis()):
        problems += readme.check_command(parser, words, f"README.md:{number}")
    assert problems == [], "the command-line synopsis is stale:\n" + "\n".join(problems)


def test_the_synopsis_shows_every_command() -> None:
    parser = _parser()
    shown = set()
    for _, words in synopsis_commands(synopsis()):
        for index, word in enumerate(words):
            for name in word.split("|"):
                shown.add(" ".join([*[w for w in words[:index] if not w.startswith("-")], name]))
    missing = [c for c in readme.leaf_commands(parser) if c not in shown]
    assert missing == [], (
        f"commands missing from the synopsis (README.md:{synopsis().line}): {missing}"
    )


def test_inline_commands_name_only_real_commands_and_flags() -> None:
    """Every backticked `edge-monitor ...` of the prose, and every backticked command that
    starts with a command's name (`serve --with-worker`, `nodes revoke`)."""
    parser = _parser()
    top = readme.subcommands(parser)
    problems = []
    checked = 0
    for number, code in readme.inline_code(readme.read()):
        words = readme.command_words(code)
        if words is None:
            plain = readme.words_of(code)
            if len(plain) < 2 or plain[0] not in top:
                continue
            words = plain
        checked += 1
        problems += readme.check_command(parser, words, f"README.md:{number} `{code}`")
    assert checked > 0, "no inline command found: is the README's prose parsed?"
    assert problems == [], "inline commands are stale:\n" + "\n".join(problems)


# -- python blocks --------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    token: str
    engine: Engine
    node_id: int


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One collector per backend for the module's python blocks, on loopback, over a migrated
    database where pump-failure 1 (the demo model) is in production and node `press-07` may
    fetch it. (Module-scoped, so it makes its own database as tests/conftest.py's db_url
    does.)"""
    from monitor.collector.server import BackgroundCollector
    from monitor.commands import nodes
    from monitor.config import Settings
    from monitor.storage import migrations
    from monitor.storage.engine import make_engine

    tmp = tmp_path_factory.mktemp("served")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'edge-monitor.db'}"
    else:
        problem = postgres_problem()
        require_service(problem is None, problem or "")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    migrations.upgrade(url)
    engine = make_engine(url)
    try:
        register_version_1(engine)
        added = nodes.add_node(
            engine, "press-07", group="line-a", site="plant-1", model_names=["pump-failure"]
        )
        settings = Settings(database_url=url, data_dir=tmp / "collector", admin_token=None)
        with BackgroundCollector(settings) as running:
            yield Served(running.url, added.token, engine, added.node.id)
    finally:
        engine.dispose()
        if schema is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def remaining_features(given: set[str]) -> dict[str, Any]:
    """The demo model's features other than ``given``, valued as the reference's first row."""
    import pyarrow.parquet as pq

    card = json.loads(paths().card.read_text())
    row = pq.read_table(paths().reference).slice(0, 1).to_pylist()[0]
    return {f["name"]: row[f["name"]] for f in card["features"] if f["name"] not in given}


def substituted(block: Block, served: Served) -> tuple[str, dict[str, Any]]:
    """The block's source with the SUBSTITUTIONS made, and the names it is run with."""
    source = block.text
    names: dict[str, Any] = {}
    rests: dict[str, Any] = {}
    for placeholder, value in SUBSTITUTIONS.items():
        if placeholder.isidentifier():
            names[placeholder] = getattr(served, value)  # the block's own assignment wins
        elif placeholder != "...":
            source = source.replace(placeholder, repr(getattr(served, value)))
    while ELLIPSIS_IN_DICT.search(source):
        name = f"_readme_rest_{len(rests)}"
        source = ELLIPSIS_IN_DICT.sub(f", **{name}}}", source, count=1)
        rests[name] = None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values, strict=True):
                if key is None and isinstance(item, ast.Name) and item.id in rests:
                    given = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                    rests[item.id] = remaining_features({str(g) for g in given})
    return source, {**names, **rests}


def made_since(kinds: tuple[type, ...], seen: dict[int, Any]) -> list[Any]:
    """Objects of ``kinds`` not in ``seen``, which then holds them (a reference held keeps an
    id from being reused)."""
    new = [o for o in gc.get_objects() if isinstance(o, kinds) and id(o) not in seen]
    seen.update((id(o), o) for o in new)
    return new


def counts(served: Served) -> tuple[int, int, int]:
    from monitor.storage.tables import labels, node_heartbeats, records

    with served.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (records, labels, node_heartbeats)
        )


#: sample_rate=0.1 keeps a record by a hash of its random request id: the block runs until
#: one record is kept; the chance that 200 runs keep none is 0.9**200, about 7e-10.
MAX_RUNS = 200


@pytest.mark.slow  # a block that samples 1 record in 10 runs about 10 times
@pytest.mark.parametrize(
    "block", [pytest.param(b, id=f"line{b.line}") for b in filter(runs, python_blocks())]
)
def test_python_block_delivers_through_a_real_collector(
    block: Block, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each python block runs as written against the served collector (only SUBSTITUTIONS
    made), and what it logs arrives; one that logs nothing must
    still reach the collector with its heartbeat."""
    from monitor.runtime import ModelUpdater
    from monitor.sdk import Monitor

    work = tmp_path / "work"
    work.mkdir()
    demo = paths()
    for name, field in FILES.items():
        (work / name).write_bytes(getattr(demo, field).read_bytes())
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))
    source, names = substituted(block, served)
    # Blank lines before it, so that a traceback names the README's own line numbers.
    code = compile("\n" * (block.line - 1) + source, str(readme.README), "exec")
    kinds = (Monitor, ModelUpdater)
    seen: dict[int, Any] = {}
    made_since(kinds, seen)
    for run in range(MAX_RUNS):
        before = counts(served)
        exec(code, {"__name__": "__readme__", **names})
        made = made_since(kinds, seen)
        for updater in made:
            if isinstance(updater, ModelUpdater):  # a poller the block started and let go
                updater.close()
        monitors = [m for m in made if isinstance(m, Monitor)]
        assert monitors, f"README.md:{block.line}: the block made no Monitor"
        if run == 0:  # the SDK reaches the collector even when the block logs nothing

            def heartbeat_arrived(heartbeats: int = before[2]) -> bool:
                return counts(served)[2] > heartbeats

            _wait_for(heartbeat_arrived, "a heartbeat", block)
        for monitor in monitors:
            monitor.close()
        records, labels = sum_stats(monitors, "stats"), sum_stats(monitors, "label_stats")
        after = counts(served)
        assert records["internal_errors"] == 0
        for what, stats, stored in (
            ("records", records, after[0] - before[0]),
            ("labels", labels, after[1] - before[1]),
        ):
            lost = {k: v for k, v in stats["dropped"].items() if v and k != "sampled_out"}
            assert lost == {}, f"README.md:{block.line}: {what} dropped: {lost}"
            assert stats["delivered"] == stored
            assert stats["delivered"] + stats["dropped"].get("sampled_out", 0) == stats["logged"]
        if records["logged"] == 0 or records["delivered"] > 0:
            return
    pytest.fail(f"README.md:{block.line}: no record of {MAX_RUNS} runs was kept and delivered")


def sum_stats(monitors: list[Any], method: str) -> dict[str, Any]:
    total: dict[str, Any] = {"logged": 0, "delivered": 0, "internal_errors": 0, "dropped": {}}
    for monitor in monitors:
        stats = getattr(monitor, method)()
        for key in ("logged", "delivered", "internal_errors"):
            total[key] += stats.get(key, 0)
        for reason, count in stats["dropped"].items():
            total["dropped"][reason] = total["dropped"].get(reason, 0) + count
    return total


def _wait_for(condition: Callable[[], bool], what: str, block: Block) -> None:
    deadline = time.monotonic() + 30  # a guard against hanging, not a performance limit
    while not condition():
        assert time.monotonic() < deadline, f"README.md:{block.line}: {what} never arrived"
        time.sleep(0.05)
