"""Alias history, kept in the registry itself: every move ``attnlab register`` makes of an alias
(``champion``) is a tag on the registered model, ``attnlab.alias_history.<alias>.<nnnn>``, whose
value is JSON: time (UTC), previous holder, new holder, run, selection metric and value, the
command. Anyone with the store sees it (no local file); MLflow's own alias records keep no past.

``attnlab history [--name attnlab] [--alias champion]`` prints one line per move;
``attnlab register --rollback`` moves the alias back to the version it held before the last move
that was not itself undone (rolling back twice goes two moves back) and records that move too.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from attnlab import tracking
from attnlab.errors import AttnlabError, first_line

TAG_PREFIX = "attnlab.alias_history"


@dataclass
class Move:
    """One move of an alias."""

    seq: int
    time: str  # ISO 8601, UTC
    alias: str
    previous: str | None  # the version the alias held before (None: it was new)
    version: str
    run_id: str
    metric: str
    value: float | None
    command: str
    kind: str = "register"  # register | rollback


def _tag(alias: str, seq: int) -> str:
    return f"{TAG_PREFIX}.{alias}.{seq:04d}"


def moves(client: Any, name: str, alias: str) -> list[Move]:
    """The recorded moves of ``name@alias``, oldest first ([] for a model without any)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as e:
        raise AttnlabError(f"no registered model {name!r} ({first_line(e)})") from e
    prefix = f"{TAG_PREFIX}.{alias}."
    found = [Move(**json.loads(v)) for k, v in tags.items() if k.startswith(prefix)]
    return sorted(found, key=lambda m: m.seq)


def record(client: Any, name: str, alias: str, previous: str | None, version: str, run_id: str,
           metric: str, value: float | None, command: str, kind: str = "register") -> Move:
    """Add one move to the registered model's history (after the alias was moved)."""
    done = moves(client, name, alias)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    move = Move(done[-1].seq + 1 if done else 1, now, alias, previous, str(version), run_id, metric,
                None if value is None else float(value), command[:1000], kind)
    client.set_registered_model_tag(name, _tag(alias, move.seq), json.dumps(asdict(move)))
    return move


def rollback_target(history: Sequence[Move]) -> Move:
    """The move a rollback undoes: the latest one not undone by a later rollback.

    Raises:
        AttnlabError: nothing to undo, or the alias had no holder before that move.
    """
    stack: list[Move] = []
    for m in history:
        if m.kind == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(m)
    if not stack:
        raise AttnlabError("nothing to roll back: no recorded move of the alias is left to undo "
                           "(see `attnlab history`)")
    if stack[-1].previous is None:
        raise AttnlabError(f"cannot roll back: version {stack[-1].version} was the alias's first holder")
    return stack[-1]


def rollback(client: Any, name: str, alias: str, command: str) -> str:
    """Move ``name@alias`` back to its previous holder and record it; returns what was done."""
    from mlflow.exceptions import MlflowException

    undone = rollback_target(moves(client, name, alias))
    target = str(undone.previous)
    try:
        current = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        current = None
    try:
        mv = client.get_model_version(name, target)
        client.set_registered_model_alias(name, alias, target)
    except MlflowException as e:
        raise AttnlabError(f"cannot move {name}@{alias} back to version {target}: {first_line(e)}") from e
    value = mv.tags.get(undone.metric)
    record(client, name, alias, None if current is None else str(current), target, mv.run_id or "",
           undone.metric, None if value is None else float(value), command, kind="rollback")
    return (f"rolled back {name}@{alias}: version {current} -> version {target} (run {mv.run_id}); "
            f"undid move #{undone.seq} of {undone.time}")


def format_move(m: Move) -> str:
    """One line: when, the move, the run and its metric, and the command that made it."""
    when = m.time.replace("T", " ").replace("+00:00", " UTC")
    before = f"v{m.previous}" if m.previous is not None else "(none)"
    value = f"{m.metric}={m.value:.4f}" if m.value is not None else m.metric
    kind = "  rollback" if m.kind == "rollback" else ""
    return f"#{m.seq} {when}  {m.alias}: {before} -> v{m.version}{kind}  run {m.run_id}  {value}  by: {m.command}"


def main(argv: list[str]) -> int:
    """``attnlab history``: one line per recorded move of the alias."""
    from attnlab.registry import OneLineParser, defaults

    d = defaults()
    p = OneLineParser(prog="attnlab history",
                      description="List every move of a registry alias that attnlab recorded, oldest first.")
    p.add_argument("--name", default=d["name"], help="registered model name (default: %(default)s)")
    p.add_argument("--alias", default=d["alias"], help="alias (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)")
    args = p.parse_args(argv)
    client = tracking.client(tracking.launch_uri(args.tracking_uri), must_exist=True)
    found = moves(client, args.name, args.alias)
    if not found:
        print(f"no recorded move of {args.name}@{args.alias}")
    for m in found:
        print(format_move(m))
    return 0


def command_line(prog: str, argv: Sequence[str]) -> str:
    """The command as a person would type it again."""
    return " ".join([prog, *(shlex.quote(a) for a in argv)])
