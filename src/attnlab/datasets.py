"""A run's data as MLflow dataset inputs, and the check ``attnlab reproduce`` makes with them.

Every run logs its train, validation and test splits with ``mlflow.log_input`` (contexts
``training``, ``validation``, ``test``): a pandas DataFrame of texts and label names, named
``<data set>.<split>``, whose digest is the sha256 over the split's whole content (every text
and label, in order; MLflow's own digest reads a sample), and whose source is the file it came
from, or ``<data set>:<seed>`` for generated data. The MLflow UI's "Dataset" column shows them.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from attnlab.data import Dataset, Split
from attnlab.errors import DataError

CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag on a dataset input
DIGEST_CHARS = 32  # MLflow stores at most 36 characters


def digest(split: Split, classes: list[str]) -> str:
    """sha256 (first :data:`DIGEST_CHARS` hex digits) over every (label name, text) row in order."""
    h = hashlib.sha256()
    for text, label in zip(split.texts, split.labels):
        h.update(f"{classes[int(label)]}\t{text}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:DIGEST_CHARS]


def digests(dataset: Dataset) -> dict[str, str]:
    """Context (``training``, ``validation``, ``test``) -> digest of that split."""
    return {CONTEXTS[name]: digest(split, dataset.classes) for name, split in dataset.splits.items()}


def source_of(dataset: Dataset, split: str, seed: int) -> str:
    """The file a split was read from (validation or test carved from the training file: that
    file), or ``<name>:<seed>`` for data generated without files."""
    files = dataset.files
    path = files.get(split) or files.get("data") or files.get("train")
    return str(path) if path else f"{dataset.name}:{seed}"


def _source(uri: str, kind: str) -> Any:
    """A dataset source stored as ``{"uri": uri}`` of type ``kind`` (``local`` for a file, as MLflow
    writes it; ``generated`` for data made by a seed). Built here rather than resolved by MLflow from
    the string, which warns that a path "can be interpreted in multiple ways" and knows no seeds."""
    from mlflow.data.dataset_source import DatasetSource

    class Source(DatasetSource):
        def __init__(self, uri: str) -> None:
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return kind

        def load(self, **kwargs: Any) -> str:
            return self.uri

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> "Source":
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> "Source":
            return cls(str(source_dict["uri"]))

    return Source(uri)


def log_inputs(dataset: Dataset, seed: int) -> dict[str, str]:
    """Log the three splits as dataset inputs of the active run; returns their digests."""
    import mlflow.data
    import pandas as pd

    from attnlab.tracking import deferred_interrupts, retry

    out = {}
    for name, split in dataset.splits.items():
        frame = pd.DataFrame({"text": list(split.texts), "label": [dataset.classes[int(i)] for i in split.labels]})
        source = _source(source_of(dataset, name, seed), "local" if dataset.files else "generated")
        out[CONTEXTS[name]] = digest(split, dataset.classes)
        ds = mlflow.data.from_pandas(frame, source=source, targets="label", name=f"{dataset.name}.{name}",
                                     digest=out[CONTEXTS[name]])
        with deferred_interrupts():  # jobs of a sweep log the same dataset at once: a lost race is tried again
            retry.call_racing(mlflow.log_input, ds, context=CONTEXTS[name], what=f"logging dataset {ds.name}")
    return out


def logged_digests(run: Any) -> dict[str, str]:
    """Context -> digest of the dataset inputs a run logged ({} for runs from before them)."""
    found = {}
    for di in (run.inputs.dataset_inputs if run.inputs else []) or []:
        context = next((t.value for t in di.tags if t.key == CONTEXT_TAG), None)
        if context in CONTEXTS.values():
            found[context] = di.dataset.digest
    return found


def check_same_data(plain: Mapping[str, Any], run: Any) -> None:
    """Load the data ``plain`` describes and compare each split's digest with the run's inputs.

    Raises:
        DataError: one line naming the first split whose content differs.
    """
    from attnlab import data

    logged = logged_digests(run)
    if not logged:
        return
    now = digests(data.load(plain["data"], int(plain["seed"])))
    for context, then in logged.items():
        if now.get(context) != then:
            raise DataError(f"the {context} split differs from run {run.info.run_id}'s (digest {now.get(context)} now, "
                            f"{then} then): refusing to reproduce on different data")
