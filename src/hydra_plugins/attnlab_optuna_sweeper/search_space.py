"""Search space, sampler and pruner from the sweeper's YAML, validated before any trial.

Every problem raises :class:`attnlab.errors.ConfigError` naming ``hydra.sweeper.<key>`` and
the bad value, so ``attnlab train -m ...`` prints one line and exits 2 before a trial starts.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

from typing import TYPE_CHECKING

from attnlab.errors import ConfigError

_SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_KEY = "hydra.sweeper.params"

if TYPE_CHECKING:  # optuna is imported when a sweep starts, not when Hydra scans its plugins
    import optuna
    from optuna.distributions import BaseDistribution


def _number(key: str, spec: Mapping[str, Any], field: str, kind: type) -> Any:
    if field not in spec or spec[field] is None:
        raise ConfigError(f"{_KEY}.{key}: {spec.get('type')} needs '{field}'")
    value = spec[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise ConfigError(f"{_KEY}.{key}.{field}={value!r}: must be {'an integer' if kind is int else 'a number'}")
    return kind(value)


def parse_params(params: Mapping[str, Any] | None) -> dict[str, BaseDistribution]:
    """``{config key: spec}`` -> Optuna distributions, in YAML order."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not params:
        raise ConfigError(f"{_KEY} is empty: give at least one parameter, e.g. "
                          f"{_KEY}.train.learning_rate={{type: float, low: 1e-4, high: 1e-2, log: true}}")
    out: dict[str, BaseDistribution] = {}
    for key, spec in params.items():
        key = str(key)
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{_KEY}.{key}={spec!r}: must be a mapping with 'type' (float | int | categorical)")
        kind = spec.get("type")
        if kind not in _SPEC_KEYS:
            raise ConfigError(f"{_KEY}.{key}.type={kind!r}: unknown distribution; choose float, int or categorical")
        unknown = set(spec) - _SPEC_KEYS[kind]
        if unknown:
            raise ConfigError(f"{_KEY}.{key}: unknown field(s) {sorted(unknown)} for type {kind}; "
                              f"allowed: {sorted(_SPEC_KEYS[kind])}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, (list, tuple)) or len(choices) == 0:
                raise ConfigError(f"{_KEY}.{key}.choices={choices!r}: must be a non-empty list")
            for c in choices:
                if c is not None and not isinstance(c, (bool, int, float, str)):
                    raise ConfigError(f"{_KEY}.{key}.choices: {c!r} is not a scalar (null, bool, number or string)")
            if len(set(map(repr, choices))) != len(choices):
                raise ConfigError(f"{_KEY}.{key}.choices={list(choices)!r}: contains duplicates")
            out[key] = CategoricalDistribution(list(choices))
            continue
        num = float if kind == "float" else int
        low, high = _number(key, spec, "low", num), _number(key, spec, "high", num)
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{_KEY}.{key}.log={log!r}: must be true or false")
        step = spec.get("step")
        if step is not None:
            step = _number(key, spec, "step", num)
        if not all(math.isfinite(v) for v in (low, high)):
            raise ConfigError(f"{_KEY}.{key}: low={low} and high={high} must be finite")
        if low > high:
            raise ConfigError(f"{_KEY}.{key}: low={low} > high={high}")
        if log and low <= 0:
            raise ConfigError(f"{_KEY}.{key}: log scale needs low > 0 (got low={low})")
        if step is not None and step <= 0:
            raise ConfigError(f"{_KEY}.{key}.step={step}: must be > 0")
        if log and step is not None and not (kind == "int" and step == 1):
            raise ConfigError(f"{_KEY}.{key}: log and step cannot be combined")
        if kind == "float":
            out[key] = FloatDistribution(low, high, log=log, step=step)
        else:
            out[key] = IntDistribution(low, high, log=log, step=step or 1)
    return out


def grid_space(dists: Mapping[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The grid sampler's values: categorical choices, stepped ints and floats."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, list[Any]] = {}
    for key, d in dists.items():
        if isinstance(d, CategoricalDistribution):
            space[key] = list(d.choices)
        elif isinstance(d, IntDistribution):
            space[key] = list(range(d.low, d.high + 1, d.step))
        elif isinstance(d, FloatDistribution) and d.step is not None:
            n = int(round((d.high - d.low) / d.step))
            space[key] = [round(d.low + i * d.step, 12) for i in range(n + 1)]
        else:
            raise ConfigError(f"{_KEY}.{key}: sampler grid needs a categorical, an int or a float with 'step'")
    return space


def _accepted(cls: type) -> set[str]:
    return {a for a in inspect.signature(cls.__init__).parameters if a not in ("self", "args", "kwargs")}


def _construct(kind_key: str, cls: type, kwargs: Mapping[str, Any], siblings: tuple[type, ...], **fixed: Any) -> Any:
    """``cls(**fixed, **kwargs)``; options only a sibling class takes are dropped, so switching
    ``hydra.sweeper.pruner.type`` on the command line keeps working over a preset's options,
    while an option no class takes (a typo) is an error."""
    allowed = _accepted(cls) - set(fixed)
    other = set().union(*(_accepted(c) for c in siblings)) - allowed
    unknown = set(kwargs) - allowed - other
    if unknown:
        raise ConfigError(f"hydra.sweeper.{kind_key}: unknown option(s) {sorted(unknown)} for {cls.__name__}; "
                          f"allowed: {sorted(a for a in allowed if not a.startswith('_'))}")
    kwargs = {k: v for k, v in kwargs.items() if k in allowed}
    try:
        return cls(**fixed, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"hydra.sweeper.{kind_key}: {cls.__name__}({dict(kwargs)}): {e}") from e


SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "successive_halving", "none")


def check_sampler(cfg: Mapping[str, Any] | None, dists: Mapping[str, BaseDistribution]) -> None:
    make_sampler(cfg, dists, 0)


def make_sampler(cfg: Mapping[str, Any] | None, dists: Mapping[str, BaseDistribution], seed_offset: int) -> optuna.samplers.BaseSampler:
    """A sampler seeded with ``seed + seed_offset`` (the offset keeps parallel workers apart)."""
    import optuna

    cfg = dict(cfg or {})
    kind = cfg.pop("type", "tpe")
    seed = cfg.pop("seed", None)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"hydra.sweeper.sampler.seed={seed!r}: must be an integer or null")
    cfg_seed = seed
    seed = None if seed is None else (seed + seed_offset) % (2**32)
    all_ = (optuna.samplers.TPESampler, optuna.samplers.RandomSampler, optuna.samplers.GridSampler)
    if kind == "tpe":
        return _construct("sampler", optuna.samplers.TPESampler, cfg, all_, seed=seed)
    if kind == "random":
        return _construct("sampler", optuna.samplers.RandomSampler, cfg, all_, seed=seed)
    if kind == "grid":
        # No offset, and never unseeded: GridSampler shuffles its grid with the seed, and a
        # trial's stored grid_id names the same point only under the same seed (every worker).
        seed = cfg_seed if cfg_seed is not None else 0
        return _construct("sampler", optuna.samplers.GridSampler, cfg, all_, search_space=grid_space(dists), seed=seed)
    raise ConfigError(f"hydra.sweeper.sampler.type={kind!r}: unknown sampler; choose {', '.join(SAMPLERS)}")


def make_pruner(cfg: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    import optuna

    cfg = dict(cfg or {})
    kind = cfg.pop("type", "median")
    all_ = (optuna.pruners.MedianPruner, optuna.pruners.SuccessiveHalvingPruner, optuna.pruners.NopPruner)
    if kind == "median":
        return _construct("pruner", optuna.pruners.MedianPruner, cfg, all_)
    if kind == "successive_halving":
        return _construct("pruner", optuna.pruners.SuccessiveHalvingPruner, cfg, all_)
    if kind in ("none", None):
        return _construct("pruner", optuna.pruners.NopPruner, cfg, all_)
    raise ConfigError(f"hydra.sweeper.pruner.type={kind!r}: unknown pruner; choose {', '.join(PRUNERS)}")


def grid_size(dists: Mapping[str, BaseDistribution]) -> int:
    return math.prod(len(v) for v in grid_space(dists).values())


def override_value(value: Any) -> str:
    """A sampled value as a Hydra override value (strings quoted so '1e-3' stays a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    s = str(value)
    if s.replace("_", "").isalnum() and not s[0].isdigit() and s.lower() not in ("true", "false", "null", "nan", "inf"):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
