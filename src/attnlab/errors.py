"""User-facing error types.

An :class:`AttnlabError` carries a message that is a complete one-line explanation
for the user: the CLI prints ``error: <message>`` and exits with status 2, without a
traceback. Raise one only where the message alone tells the user what is wrong and,
where possible, how to fix it; programming errors stay ordinary exceptions so that
they keep their traceback.
"""

from __future__ import annotations

__all__ = ["AttnlabError", "ConfigError", "DataError"]


class AttnlabError(Exception):
    """An error whose message is a complete one-line explanation for the user."""


class DataError(AttnlabError):
    """Input data is missing, unreadable or malformed (names the file and/or column)."""


class ConfigError(AttnlabError):
    """A configuration value is missing or invalid (names the key and the bad value)."""
