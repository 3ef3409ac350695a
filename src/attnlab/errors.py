"""User-facing errors and the one-line messages the CLI prints.

An :class:`AttnlabError` carries a message that is a complete one-line explanation for the
user: the CLI prints ``error: <message>`` and exits with status 2, without a traceback. Raise
one only where the message alone tells the user what is wrong and, where possible, how to fix
it; programming errors stay ordinary exceptions so that they keep their traceback.

:func:`first_line` and :func:`one_line` are the only places an exception becomes a line.
"""

from __future__ import annotations

import argparse

__all__ = ["AttnlabError", "ConfigError", "DataError", "DivergedError", "OneLineParser", "first_line", "one_line"]


class AttnlabError(Exception):
    """An error whose message is a complete one-line explanation for the user."""


class DataError(AttnlabError):
    """Input data is missing, unreadable or malformed (names the file and/or column)."""


class DivergedError(AttnlabError):
    """A loss or metric became NaN or infinite: the run decided nothing and ends FAILED."""


class ConfigError(AttnlabError):
    """A configuration value is missing or invalid (names the key and the bad value)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-blank line of ``exc``'s message (its type name when it has none).

    MLflow's exceptions keep the readable part in ``.message``; it is preferred when present.
    """
    text = getattr(exc, "message", None) or str(exc)
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


# Lines of Hydra/OmegaConf messages that repeat what the user typed or point at internals.
_NOISE = ("reference_type", "object_type", "Set the environment variable")


def one_line(exc: BaseException) -> str:
    """Collapse a (possibly multi-line, possibly wrapped) error into one line for the user.

    The innermost :class:`AttnlabError` in the exception chain wins; a Hydra/OmegaConf
    message keeps the reason from its cause (allowed values, types) without its noise.
    """
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, AttnlabError):
            return first_line(cur, limit=2000)
        cur = cur.__cause__ or cur.__context__
    text = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__).strip():
        text += "\n" + str(exc.__cause__)
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(_NOISE):
            continue
        if line.startswith("Config search path"):
            break
        lines.append(line)
    if not lines:
        return type(exc).__name__
    return "; ".join(lines).replace("Available options in", "available options in").replace(":;", ":")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line ConfigErrors (the CLI prints ``error: ...``, exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{message} (see `{self.prog} --help`)")
