"""The node token of ``edge serve``: from a file or the environment, never the command line.

A command line is world-readable (``ps``, ``/proc/<pid>/cmdline``); a file can be ``chmod
600`` and a process's environment is readable only by its user and root. So the token comes
from ``--token-file PATH`` (the file holds the token alone; surrounding whitespace, such as
the newline ``echo`` adds, is ignored) or else from the ``MONITOR_NODE_TOKEN`` variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: The environment variable that holds the node token when no token file is given.
NODE_TOKEN_ENV = "MONITOR_NODE_TOKEN"


class TokenError(ValueError):
    """The node token cannot be read; the message is one line for the user."""


def node_token(token_file: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> str | None:
    """The token in ``token_file`` if given, else ``environ[NODE_TOKEN_ENV]``, else None."""
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TokenError(f"cannot read the token file {token_file}: {reason}") from None
        return _checked(text, f"the token file {token_file}")
    value = environ.get(NODE_TOKEN_ENV, "")
    return _checked(value, NODE_TOKEN_ENV) if value.strip() else None


def _checked(text: str, source: str) -> str:
    token = text.strip()
    if not token:
        raise TokenError(f"{source} is empty")
    if any(c.isspace() or not c.isprintable() for c in token):
        # A token goes into an HTTP header: no spaces, line breaks or control characters.
        raise TokenError(f"{source} must hold the node token alone (one word, no spaces)")
    return token
