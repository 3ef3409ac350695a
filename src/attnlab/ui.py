"""Where a person looks: the MLflow UI's runs table and run pages, as URLs.

MLflow 3.17's UI opens an experiment on its GenAI overview; the runs table is
``#/experiments/<id>/runs?workflowType=machine_learning``, and a run's page
``#/experiments/<id>/runs/<run id>`` (both checked in a real browser,
``tests/test_ui_browser.py``). The table shows no metric until a person picks columns, so
attnlab keeps a *shared view* on its experiments (the experiment tag
``mlflow.sharedViewState.attnlab``, the UI's own format): the URL's ``viewStateShareKey=attnlab``
opens the table with the metrics attnlab runs are compared by.

``python -m attnlab.ui --tracking-uri URI --port PORT`` prints the runs table's URL (``make ui``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

VIEW_KEY = "attnlab"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
# Columns of the shared view: what a person compares runs by (metrics absent from a run show "-").
VIEW_COLUMNS = ["attributes.`Run Name`", "attributes.`Dataset`", "attributes.`Duration`",
                "metrics.`val_accuracy`", "metrics.`test_accuracy`", "metrics.`attention_entropy`",
                "metrics.`epochs_completed`"]


def base_url(tracking_uri: str, ui_url: str) -> str:
    """The UI's address: an http(s) tracking URI is an MLflow server that serves the UI itself;
    any other store is served by ``make ui`` / ``mlflow ui`` at ``ui_url`` (``tracking.ui_url``)."""
    uri = str(tracking_uri)
    return (uri if uri.startswith(("http://", "https://")) else str(ui_url)).rstrip("/")


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table with attnlab's columns."""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """One run's page (metrics, parameters, datasets, artifacts)."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def ensure_view(client: Any, experiment_id: str) -> None:
    """Put attnlab's shared view on the experiment, unless it already holds this one."""
    value = json.dumps({"selectedColumns": VIEW_COLUMNS})
    if client.get_experiment(experiment_id).tags.get(VIEW_TAG) != value:
        client.set_experiment_tag(experiment_id, VIEW_TAG, value)


def experiment_url(tracking_uri: str, ui_url: str, experiment: str) -> str | None:
    """The runs table of ``experiment`` in the store at ``tracking_uri``; None when the store or
    the experiment does not exist yet (nothing is created)."""
    from attnlab import tracking
    from attnlab.errors import AttnlabError

    try:
        client = tracking.client(tracking_uri, must_exist=True)
        exp = client.get_experiment_by_name(experiment)
    except AttnlabError:
        return None
    if exp is None:
        return None
    ensure_view(client, exp.experiment_id)
    return runs_url(base_url(tracking_uri, ui_url), exp.experiment_id)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the runs table's URL (for ``make ui``, before it starts ``mlflow ui``)."""
    from omegaconf import OmegaConf

    from attnlab.config import config_dir
    from attnlab.console import quiet_libraries

    quiet_libraries()
    defaults = OmegaConf.load(config_dir() / "tracking" / "default.yaml")
    p = argparse.ArgumentParser(prog="python -m attnlab.ui", description="Print the MLflow UI's runs table URL.")
    p.add_argument("--tracking-uri", required=True, help="the store `mlflow ui` will serve")
    p.add_argument("--port", type=int, default=None, help="the port `mlflow ui` will listen on")
    p.add_argument("--experiment", default=str(defaults["experiment"]), help="default: %(default)s")
    args = p.parse_args(argv)
    ui = str(defaults["ui_url"])
    if args.port is not None:
        ui = f"{ui.rsplit(':', 1)[0]}:{args.port}"
    url = experiment_url(args.tracking_uri, ui, args.experiment)
    if url is None:
        print(f"MLflow UI: {ui}  (no experiment {args.experiment!r} in {args.tracking_uri} yet: run `make run` "
              f"or `attnlab train` first)", flush=True)
    else:
        print(f"MLflow UI, runs table: {url}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
