"""Search space, sampler and pruner from the sweeper's config, and trial values as overrides.

Optuna validates: distributions are Optuna's own classes, samplers and pruners are built by
:func:`hydra.utils.instantiate` from their ``_target_`` nodes, and any ``ValueError``,
``TypeError`` or warning they raise becomes one :class:`attnlab.errors.ConfigError` line
naming ``hydra.sweeper.<key>`` and the bad value. Only what Optuna cannot know is checked
here (an unknown distribution type, a non-integer bound of an int, a non-scalar choice).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Mapping

from attnlab.errors import ConfigError
from attnlab.trial import build_pruner as make_pruner, optuna_checked  # noqa: F401 - re-exported

if TYPE_CHECKING:  # optuna is imported when a sweep starts, not when Hydra scans its plugins
    import optuna
    from optuna.distributions import BaseDistribution

_KEY = "hydra.sweeper.params"
_KINDS = {"float": "FloatDistribution", "int": "IntDistribution", "categorical": "CategoricalDistribution"}


def _distribution(key: str, spec: Any) -> BaseDistribution:
    import optuna.distributions as od

    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind not in _KINDS:
        raise ConfigError(f"{_KEY}.{key}={spec!r}: unknown distribution type {kind!r}; "
                          f"choose {', '.join(_KINDS)} (e.g. {{type: float, low: 0.0, high: 1.0}})")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if kind == "int":  # Optuna would truncate 1.5 to 1 without a word
        for f in ("low", "high", "step"):
            v = kwargs.get(f)
            if isinstance(v, float) and not v.is_integer():
                raise ConfigError(f"{_KEY}.{key}.{f}={v!r}: an int distribution needs integer bounds and step")
    for c in kwargs.get("choices") or ():  # Optuna only warns, and a list would become a string override
        if c is not None and not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{_KEY}.{key}.choices: {c!r} is not a scalar (null, bool, number or string)")
    cls = getattr(od, _KINDS[kind])
    return optuna_checked(f"{_KEY}.{key}={dict(spec)!r}", lambda: cls(**kwargs))


def parse_params(params: Mapping[str, Any] | None) -> dict[str, BaseDistribution]:
    """``{config key: spec}`` -> Optuna distributions, in YAML order."""
    if not params:
        raise ConfigError(f"{_KEY} is empty: give at least one parameter, e.g. "
                          f"{_KEY}.train.learning_rate={{type: float, low: 1e-4, high: 1e-2, log: true}}")
    return {str(k): _distribution(str(k), spec) for k, spec in params.items()}


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
            raise ConfigError(f"{_KEY}.{key}={d!r}: the grid sampler needs a categorical, an int or a float with 'step'")
    return space


def grid_size(dists: Mapping[str, BaseDistribution]) -> int:
    return math.prod(len(v) for v in grid_space(dists).values())


def is_grid(sampler_cfg: Mapping[str, Any] | None) -> bool:
    return str((sampler_cfg or {}).get("_target_", "")).rsplit(".", 1)[-1] == "GridSampler"


def make_sampler(cfg: Mapping[str, Any] | None, dists: Mapping[str, BaseDistribution],
                 seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The configured sampler, its ``seed`` plus ``seed_offset`` (parallel trials draw apart).

    A grid sampler gets the grid from ``dists`` and no offset (its seed orders the grid, which
    must be the same in every worker); null config: Optuna's default sampler, unseeded.
    """
    from hydra.utils import instantiate

    if not cfg:
        import optuna

        return optuna.samplers.TPESampler()
    extra: dict[str, Any] = {}
    if is_grid(cfg):
        extra = {"search_space": grid_space(dists), "seed": 0 if cfg.get("seed") is None else cfg["seed"]}
    elif isinstance(cfg.get("seed"), int) and not isinstance(cfg["seed"], bool):
        extra = {"seed": (cfg["seed"] + seed_offset) % 2**32}
    return optuna_checked(f"hydra.sweeper.sampler ({cfg.get('_target_')})", lambda: instantiate(cfg, **extra))


def _quoted(s: str) -> str:
    """A Hydra quoted string that reads back exactly ``s`` (URLs, passwords, ``${``)."""
    return "'" + re.sub(r"(\\*)('|\$\{|$)", lambda m: m.group(1) * 2 + ("\\" if m.group(2) else "") + m.group(2), s) + "'"


class Interpolation(str):
    """An OmegaConf interpolation (``${hydra:...}``) that an override must keep, not escape."""


def override_value(value: Any) -> str:
    """A value as a Hydra override value: strings quoted unless plain words (so '1e-3' stays a
    string), mappings as ``{key: value, ...}``, lists as ``[value, ...]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Interpolation):
        return f"'{value}'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    s = str(value)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s) and s.lower() not in ("true", "false", "null", "nan", "inf"):
        return s
    return _quoted(s)
