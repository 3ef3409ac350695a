"""Champion history in the registry: every alias move recorded, `attnlab history`, `--rollback`."""

from __future__ import annotations

import pytest

from attnlab.history import Move, rollback_target
from conftest import cli_main


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _finished_run_with_model(client, exp_id: str, val_accuracy: float) -> str:
    """A FINISHED run with a READY logged-model record (selection reads only the record)."""
    from mlflow.entities import LoggedModelStatus

    rid = client.create_run(exp_id, tags={"attnlab.variant": f"acc={val_accuracy}"}).info.run_id
    client.log_metric(rid, "val_accuracy", val_accuracy)
    lm = client.create_logged_model(exp_id, name="model", source_run_id=rid)
    client.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
    client.set_terminated(rid, "FINISHED")
    return rid


def test_two_registrations_two_moves_and_rollback_restores_the_first(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    exp_id = client.create_experiment("attnlab")
    common = ["--tracking-uri", uri, "--name", "hist", "--alias", "champion"]
    first = _finished_run_with_model(client, exp_id, 0.80)
    assert cli_main(["register", *common], capsys)[0] == 0
    second = _finished_run_with_model(client, exp_id, 0.90)
    assert cli_main(["register", *common, "--metric", "val_accuracy"], capsys)[0] == 0
    assert client.get_model_version_by_alias("hist", "champion").run_id == second

    rc, out, err = cli_main(["history", *common], capsys)
    lines = out.splitlines()
    assert rc == 0 and err == "" and len(lines) == 2, out
    assert lines[0].startswith("#1 ") and "champion: (none) -> v1" in lines[0] and f"run {first}" in lines[0]
    assert "val_accuracy=0.8000" in lines[0] and "by: attnlab register --tracking-uri" in lines[0]
    assert "champion: v1 -> v2" in lines[1] and f"run {second}" in lines[1] and "val_accuracy=0.9000" in lines[1]
    assert "--metric val_accuracy" in lines[1] and " UTC " in lines[1]

    rc, out, _ = cli_main(["register", *common, "--rollback"], capsys)
    assert rc == 0 and "version 2 -> version 1" in out
    assert client.get_model_version_by_alias("hist", "champion").run_id == first
    rc, out, _ = cli_main(["history", *common], capsys)
    assert len(out.splitlines()) == 3 and "champion: v2 -> v1  rollback" in out.splitlines()[2]
    # v1 was the first holder: nothing earlier to go back to (one line, exit 2)
    rc, _, err = cli_main(["register", *common, "--rollback"], capsys)
    assert rc == 2 and err.startswith("error: cannot roll back: version 1 was the alias's first holder")
    assert err.count("\n") == 1


def _move(seq: int, previous: str | None, version: str, kind: str = "register") -> Move:
    return Move(seq, "2026-01-01T00:00:00+00:00", "champion", previous, version, "r", "val_accuracy", 0.5, "c", kind)


def test_rollback_walks_back_one_move_at_a_time():
    moves = [_move(1, None, "1"), _move(2, "1", "2"), _move(3, "2", "3")]
    assert rollback_target(moves).seq == 3  # undo 2 -> 3: back to 2
    moves.append(_move(4, "3", "2", "rollback"))
    assert rollback_target(moves).seq == 2  # the next rollback undoes 1 -> 2: back to 1
    moves += [_move(5, "2", "1", "rollback")]
    from attnlab.errors import AttnlabError

    with pytest.raises(AttnlabError, match="first holder"):
        rollback_target(moves)
    with pytest.raises(AttnlabError, match="nothing to roll back"):
        rollback_target([])
