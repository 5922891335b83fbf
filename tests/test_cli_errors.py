"""README's "Exit codes and errors" table is what the command line does: each row's example
runs exactly as written (through a shell, the installed `edge-monitor` first on PATH) in an
empty directory, and exits with the row's code and prints the row's error line."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor import cli
from monitor.storage import migrations

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECTION = "## Exit codes and errors"


@dataclass(frozen=True)
class Row:
    code: int
    when: str
    command: str
    error_line: str | None


def table() -> list[Row]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(SECTION) :].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    found = []
    for line in rows:
        code, when, example, error = (cell.strip() for cell in line.strip("|").split(" | "))
        command = re.match(r"`([^`]+)`", example)
        assert command is not None, f"no `command` in {example!r}"
        error_line = None if error == "none" else error.strip("`")
        found.append(Row(int(code), when, command.group(1), error_line))
    return found


ROWS = table()


def test_the_table_lists_every_exit_code_of_the_command_line() -> None:
    assert {row.code for row in ROWS} == {
        cli.OK,
        cli.FAILED,
        cli.USAGE,
        cli.CANNOT_LISTEN,
        cli.INTERRUPTED,
    }
    assert all(row.error_line is None for row in ROWS if row.code == 0)
    assert all(row.error_line for row in ROWS if row.code != 0)


def environment(home: Path) -> dict[str, str]:
    """The caller's environment without MONITOR_ settings, a home of its own, and the venv's
    `edge-monitor` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env |= {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "share"),
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    }
    return env


def hold_port(command: str, stack: ExitStack) -> None:
    """Listen on the example's --port (it may be taken already: then it is just as busy)."""
    port = int(re.search(r"--port (\d+)", command).group(1))  # type: ignore[union-attr]
    listener = stack.enter_context(socket.socket())
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen()
    except OSError as exc:
        assert exc.errno == errno.EADDRINUSE, exc


def interrupt(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run the command, and press Ctrl-C (SIGINT to its process group) once it has started."""

    def as_in_a_terminal() -> None:
        os.setsid()
        # A shell may start the test runner with SIGINT ignored; a terminal's command has it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,
    ) as process:
        assert process.stdout is not None
        process.stdout.readline()  # it has started and said so
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        return process.returncode, stderr


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.code}: {r.command}" for r in ROWS])
def test_each_row_of_the_table_is_what_the_command_does(row: Row, tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    with ExitStack() as stack:
        if row.code == cli.CANNOT_LISTEN:
            hold_port(row.command, stack)
        if row.code == cli.INTERRUPTED:
            # Something that runs until interrupted: a worker on a database at head.
            data = re.search(r"--data-dir (\S+)", row.command).group(1)  # type: ignore[union-attr]
            migrations.upgrade(f"sqlite:///{tmp_path / data / 'edge-monitor.db'}")
            code, stderr = interrupt(row.command, tmp_path, env)
        else:
            result = subprocess.run(
                ["bash", "-c", row.command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            code, stderr = result.returncode, result.stderr

    lines = stderr.splitlines()
    assert code == row.code, stderr
    if row.error_line is None:
        assert not any(line.startswith("edge-monitor:") for line in lines), stderr
    elif row.code == cli.INTERRUPTED:
        assert lines[-1] == row.error_line
    else:
        assert lines == [row.error_line]
