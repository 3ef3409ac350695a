"""Where a run ran: CPU, cores, GPUs and host, as MLflow tags.

:func:`describe` never imports TensorFlow (seconds, and it claims GPU memory): what it says
about GPUs comes from a TensorFlow that the process has imported already. Call it after
Keras/TensorFlow are loaded (in ``train`` they are, before the run starts) to get the
``gpu``/``cpu`` answer; called earlier, ``attnlab.device`` is ``unknown`` and
``attnlab.device.gpus`` says why.
"""

from __future__ import annotations

import collections
import os
import platform
import socket
import sys
from typing import Any

PREFIX = "attnlab.device"
NOT_CHECKED = "not checked (TensorFlow not imported)"


def describe() -> dict[str, str]:
    """Tags describing this process's hardware.

    Returns:
        ``attnlab.device`` (``gpu`` when TensorFlow sees a GPU, ``cpu`` when it sees none,
        ``unknown`` before TensorFlow is imported), ``attnlab.device.cpu`` (CPU model),
        ``attnlab.device.cores`` (cores this process may use: affinity, e.g. a Slurm
        allocation), ``attnlab.device.host``, ``attnlab.device.gpus`` (e.g.
        ``2 x NVIDIA H200 (compute 9.0)``, ``none``), ``attnlab.device.gpu_count`` and
        ``attnlab.device.tensorflow`` (version and CUDA build) when TensorFlow is loaded, and
        ``attnlab.slurm.job_id`` inside a Slurm job.
    """
    tags = {
        f"{PREFIX}.cpu": cpu_model(),
        f"{PREFIX}.cores": str(usable_cores()),
        f"{PREFIX}.host": socket.gethostname(),
    }
    tf = sys.modules.get("tensorflow")
    if tf is None or not hasattr(tf, "config"):
        tags.update({PREFIX: "unknown", f"{PREFIX}.gpus": NOT_CHECKED})
    else:
        gpus = tf.config.list_physical_devices("GPU")
        tags.update({
            PREFIX: "gpu" if gpus else "cpu",
            f"{PREFIX}.gpus": _gpu_summary(tf, gpus),
            f"{PREFIX}.gpu_count": str(len(gpus)),
            f"{PREFIX}.tensorflow": _tf_build(tf),
        })
    job = slurm_job_id()
    if job:
        tags["attnlab.slurm.job_id"] = job
    return tags


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: what Slurm or taskset granted)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def slurm_job_id() -> str | None:
    """The Slurm job as ``squeue`` lists it (``<array job>_<task>`` for array tasks), else None."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def _gpu_summary(tf: Any, gpus: list[Any]) -> str:
    """``2 x NVIDIA H200 (compute 9.0)``, one entry per kind of GPU; ``none`` when there are none."""
    if not gpus:
        return "none"
    kinds: collections.Counter[str] = collections.Counter()
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu) or {}
        except Exception:  # noqa: BLE001 - details are optional; the device itself was listed
            details = {}
        name = str(details.get("device_name") or gpu.name)
        cc = details.get("compute_capability")
        kinds[f"{name} (compute {cc[0]}.{cc[1]})" if cc else name] += 1
    return ", ".join(f"{n} x {kind}" for kind, n in kinds.items())


def _tf_build(tf: Any) -> str:
    """``2.21.0 (CUDA 12.5.1, cuDNN 9)`` for a CUDA build, ``2.21.0 (CPU build)`` otherwise."""
    try:
        info = dict(tf.sysconfig.get_build_info())
    except Exception:  # noqa: BLE001
        info = {}
    version = str(getattr(tf, "__version__", "?"))
    if not info.get("is_cuda_build"):
        return f"{version} (CPU build)"
    return f"{version} (CUDA {info.get('cuda_version', '?')}, cuDNN {info.get('cudnn_version', '?')})"
