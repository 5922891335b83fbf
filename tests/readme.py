"""README.md read as a test reads it: its fenced blocks, the directive before a block, the
inline commands of its prose, and a check of command words against the real argparse parser.

Nothing here knows what the README says today; everything is parsed when a test runs.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: The one directive that keeps a block from running: an HTML comment right before it.
DIRECTIVE = re.compile(r"<!--\s*readme-test:(.*?)-->", re.DOTALL)
NOT_RUN = re.compile(r"\s*not run:(.*)", re.DOTALL)
FENCE = re.compile(r"^```(\S*)\s*$")
INLINE = re.compile(r"`([^`\n]+)`")
#: `edge-monitor` as a command word: at the start, after a space or a path's slash.
COMMAND_WORD = re.compile(r"(?:^|(?<=[\s/\"']))edge-monitor(?=\s|$)")
#: A word the README puts where the user writes their own value: NAME, KIND:NAME, F.onnx ...
PLACEHOLDER = re.compile(r"^[A-Z][A-Za-z0-9_]*([:=.][A-Za-z0-9_]*)*$|^\.\.\.$")


def read() -> str:
    return README.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language (``""`` for a plain block), its lines and where it
    is (``line`` is the README line of its first content line)."""

    lang: str
    lines: tuple[str, ...]
    line: int
    #: The text of a ``<!-- readme-test: ... -->`` comment right before the block, if any.
    directive: str | None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def not_run_reason(self) -> str | None:
        """The REASON of ``not run: REASON`` ("" when empty); None when the block runs.

        Raises ValueError for a ``readme-test:`` comment of any other form, so that a typo
        cannot exclude a block silently."""
        if self.directive is None:
            return None
        match = NOT_RUN.fullmatch(self.directive)
        if match is None:
            raise ValueError(
                f"README.md:{self.line - 1}: the block's comment <!-- readme-test:{self.directive}"
                "--> is no directive (the only one is <!-- readme-test: not run: REASON -->)"
            )
        return match.group(1).strip()

    def logical_lines(self) -> list[tuple[int, str]]:
        """(README line, text) of each shell line, backslash continuations joined, blank and
        comment-only lines left out."""
        found: list[tuple[int, str]] = []
        pending: tuple[int, str] | None = None
        for offset, raw in enumerate(self.lines):
            number = self.line + offset
            if pending is not None:
                number, text = pending[0], pending[1] + " " + raw.strip()
            else:
                text = raw.strip()
            if text.endswith("\\"):
                pending = (number, text[:-1].rstrip())
                continue
            pending = None
            if text and not text.startswith("#"):
                found.append((number, text))
        if pending is not None and pending[1]:
            found.append(pending)
        return found


def blocks(text: str) -> list[Block]:
    """Every fenced block of the README, in order."""
    lines = text.split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        found.append(
            Block(opening.group(1), tuple(lines[start:end]), start + 1, _directive(lines, i))
        )
        i = end + 1
    return found


def _directive(lines: list[str], fence: int) -> str | None:
    """The readme-test comment that ends on the last non-blank line before ``fence``."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0 or not lines[j].rstrip().endswith("-->"):
        return None
    k = j
    while k >= 0 and "<!--" not in lines[k]:
        k -= 1
    if k < 0:
        return None
    comment = "\n".join(lines[k : j + 1])
    comment = comment[comment.rindex("<!--") :]
    match = DIRECTIVE.fullmatch(comment.strip())
    return match.group(1) if match else None


def prose(text: str) -> Iterator[tuple[int, str]]:
    """(README line, text) of every line outside fenced blocks."""
    inside = False
    for number, line in enumerate(text.split("\n"), start=1):
        if FENCE.match(line) or (inside and line.rstrip() == "```"):
            inside = not inside
            continue
        if not inside:
            yield number, line


def inline_code(text: str) -> Iterator[tuple[int, str]]:
    """(README line, code) of every inline backticked span of the prose."""
    for number, line in prose(text):
        for match in INLINE.finditer(line):
            yield number, match.group(1)


def command_words(code: str) -> list[str] | None:
    """The words after an ``edge-monitor`` command word in ``code`` (None if there is none)."""
    match = COMMAND_WORD.search(code)
    if match is None:
        return None
    return words_of(code[match.end() :])


def words_of(text: str) -> list[str]:
    """Shell-ish words of a command as the README writes it: brackets of optional parts
    dropped, ``M...`` read as ``M``, a trailing ``# comment`` cut, quotes removed."""
    words = []
    for word in text.split():
        if word.startswith("#"):
            break
        word = word.replace("[", "").replace("]", "").strip("\"'(),;")
        if word.endswith("...") and word != "...":
            word = word[:-3]
        if word:
            words.append(word)
    return words


# -- the command line, as argparse knows it -------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's commands by name (empty when it takes none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[str]:
    """Every runnable command, e.g. ``serve``, ``db upgrade``, ``models build-demo``."""
    children = subcommands(parser)
    if not children:
        return [" ".join(path)]
    found = []
    for name, child in children.items():
        found += leaf_commands(child, (*path, name))
    return found


def _flags(parser: argparse.ArgumentParser) -> str:
    shown = [
        option
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--version")
    ]
    return ", ".join(shown) or "none"


def is_placeholder(word: str) -> bool:
    return PLACEHOLDER.match(word) is not None


def check_command(parser: argparse.ArgumentParser, words: list[str], where: str) -> list[str]:
    """Problems with the commands and flags ``words`` name (``edge-monitor`` left out): each a
    line naming ``where``. Placeholders (NAME, COMMAND, ``...``) and values are not checked,
    except a literal value of a flag with choices; ``a|b`` alternatives are each checked."""
    return _walk(parser, ["edge-monitor"], words, where)


def resolve(parser: argparse.ArgumentParser, words: list[str]) -> tuple[str, ...]:
    """The command path (``("models", "register")``) that ``words`` run."""
    current = parser
    path: tuple[str, ...] = ()
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            action = current._option_string_actions.get(word.partition("=")[0])
            takes_value = action is not None and action.nargs != 0 and "=" not in word
            i += 2 if takes_value else 1
            continue
        children = subcommands(current)
        if word not in children:
            break
        current, path = children[word], (*path, word)
        i += 1
    return path


def _walk(
    parser: argparse.ArgumentParser, path: list[str], words: list[str], where: str
) -> list[str]:
    problems: list[str] = []
    current = parser
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("...", "|"):
            i += 1
            continue
        if word.startswith("-"):
            flag, equals, value = word.partition("=")
            action = current._option_string_actions.get(flag)
            if action is None:
                problems.append(
                    f"{where}: `{' '.join(path)}` has no flag {flag} (its flags: {_flags(current)})"
                )
                i += 1
                continue
            if action.nargs == 0:
                i += 1
                continue
            if not equals:
                following = words[i + 1] if i + 1 < len(words) else None
                if following is None or following.startswith("-"):
                    i += 1
                    continue
                value = following
                i += 1
            i += 1
            if action.choices is not None:
                for option in value.split("|"):
                    if not is_placeholder(option) and option not in action.choices:
                        problems.append(
                            f"{where}: `{' '.join(path)} {flag}` has no choice {option!r} "
                            f"(its choices: {', '.join(map(str, action.choices))})"
                        )
            continue
        children = subcommands(current)
        if not children:
            i += 1  # a positional argument: a placeholder or the user's value
            continue
        alternatives = word.split("|")
        if all(is_placeholder(a) for a in alternatives):
            i += 1
            continue
        unknown = [a for a in alternatives if a not in children]
        if unknown:
            problems += [
                f"{where}: `{' '.join(path)}` has no command {name!r} (its commands: "
                f"{', '.join(children)})"
                for name in unknown
            ]
            return problems
        if len(alternatives) > 1:
            for name in alternatives:
                problems += _walk(children[name], [*path, name], words[i + 1 :], where)
            return problems
        current = children[word]
        path = [*path, word]
        i += 1
    return problems
