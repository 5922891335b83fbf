"""README.md tells the truth: the two commands come first, CI runs the second, every setting
is documented."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.config import Settings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", README)


def test_readme_starts_with_the_demo_and_the_test_command() -> None:
    first, second = commands()[:2]
    assert first.endswith("edge-monitor demo")
    assert second.endswith("python -m pytest -n 2")
    assert README.index(first) < README.index("---")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")

    assert f"TEST_COMMAND='{commands()[1]}'" in ci


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`MONITOR_{name.upper()}`" in README, f"MONITOR_{name.upper()} is undocumented"
