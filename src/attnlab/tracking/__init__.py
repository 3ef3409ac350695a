"""The MLflow side of attnlab: where runs go, their lifecycle, and what they record.

``tracking`` owns every MLflow client, URI and run lifecycle (single runs here; a sweep's
parent run in :mod:`attnlab.tracking.sweeps`). Nothing else calls ``mlflow.set_tracking_uri``.
"""

from attnlab.tracking.records import (
    MODEL_NAME,
    artifact_dir,
    log_config,
    log_dict,
    log_metrics,
    log_model,
    log_params_flat,
    log_pyfunc,
    pip_requirements,
    set_tags,
)
from attnlab.tracking.runs import (
    ERROR_TAG,
    PRUNED_EPOCH_TAG,
    STATUS_TAG,
    deferred_interrupts,
    run_lifecycle,
    sigterm_as_interrupt,
)
from attnlab.tracking.lock import store_lock
from attnlab.tracking import retry
from attnlab.tracking.reaper import reap_dead_runs
from attnlab.tracking.store import client, ensure_store, hide_password, launch_uri, probe, resolve_uri, setup, uri_scope

__all__ = [
    "ERROR_TAG",
    "MODEL_NAME",
    "PRUNED_EPOCH_TAG",
    "STATUS_TAG",
    "artifact_dir",
    "client",
    "deferred_interrupts",
    "ensure_store",
    "hide_password",
    "launch_uri",
    "log_config",
    "log_dict",
    "log_metrics",
    "log_model",
    "log_params_flat",
    "log_pyfunc",
    "pip_requirements",
    "probe",
    "reap_dead_runs",
    "resolve_uri",
    "retry",
    "run_lifecycle",
    "set_tags",
    "setup",
    "sigterm_as_interrupt",
    "store_lock",
    "uri_scope",
]
