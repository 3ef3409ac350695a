"""Build a component from its config node: ``{_target_: pkg.module.Name, <its own arguments>}``.

The small resolver model and data code use instead of ``hydra.utils.instantiate``, so they stay
Hydra-free. ``_target_`` is any importable callable (a class or a function), in attnlab or in
the user's own package on ``PYTHONPATH``. Keys written ``_like_this_`` (``_target_``,
``_name_``) are attnlab's and never reach the callable. An argument the callable refuses
(:class:`attnlab.checks.ArgumentError`, an unknown or missing keyword) becomes one
:class:`~attnlab.errors.ConfigError` line naming the config path.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Mapping

from attnlab import checks
from attnlab.errors import ConfigError, first_line

__all__ = ["arguments", "check", "config_error", "instantiate", "locate", "short_name"]


def locate(target: str, path: str) -> Callable[..., Any]:
    """The callable named by ``target`` (``pkg.module.attr``); ConfigError naming ``path``."""
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ConfigError(f"{path}._target_={target!r}: expected a dotted path such as mypkg.layers.MyPooling")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{path}._target_={target!r}: cannot import {module_name} ({e}); "
                          f"is its package installed or on PYTHONPATH?") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{path}._target_={target!r}: {module_name} has no {attr!r}") from None


def arguments(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The callable's keyword arguments: the node without attnlab's ``_keys_``."""
    return {k: v for k, v in spec.items() if not (k.startswith("_") and k.endswith("_"))}


def short_name(spec: Mapping[str, Any]) -> str:
    """What to call a component in run names: ``_name_`` (the option's name, e.g. ``max``), a
    data set's ``name``, else the target's last part (``MyPooling``)."""
    return str(spec.get("_name_") or spec.get("name") or str(spec.get("_target_", "?")).rpartition(".")[2])


def config_error(e: checks.ArgumentError, path: str, value: Any) -> ConfigError:
    """``path=value: <why>`` from a check's Keras-style message."""
    text = str(e)
    if text.startswith("Invalid value for argument"):
        text = text.split(". ", 1)[1]
    return ConfigError(f"{path}={value!r}: {text}")


def _require_target(spec: Any, path: str) -> None:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("_target_"), str):
        raise ConfigError(f"{path}: expected a component with a _target_ (choose one with "
                          f"{path.replace('.', '/')}=<option>), got {spec!r}")


def check(spec: Any, path: str, **extra: Any) -> None:
    """Run a built-in component's argument check (:data:`attnlab.checks.COMPONENT_CHECKS`)
    without building it, so a bad value fails before TensorFlow is imported; ``extra`` are
    arguments the model builder adds (an encoder's ``attention``)."""
    _require_target(spec, path)
    kwargs = {**arguments(spec), **extra}
    try:
        checks.check_component(spec["_target_"], kwargs)
    except checks.ArgumentError as e:
        raise config_error(e, f"{path}.{e.arg}", kwargs.get(e.arg)) from None
    except TypeError as e:  # a missing or unknown argument of a built-in component
        raise ConfigError(f"{path} ({spec['_target_']}): {e}") from None


def instantiate(spec: Mapping[str, Any], path: str, **extra: Any) -> Any:
    """Call ``spec['_target_']`` with the node's arguments and ``extra`` (e.g. ``name=``, ``seed=``).

    Raises:
        ConfigError: the target cannot be found, or refuses an argument (naming ``path.<arg>``).
    """
    _require_target(spec, path)
    fn = locate(str(spec["_target_"]), path)
    kwargs = {**arguments(spec), **extra}
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{path} ({spec['_target_']}): {e}") from None
    except ValueError:  # no signature to read (some builtins): let the call decide
        pass
    try:
        return fn(**kwargs)
    except checks.ArgumentError as e:
        raise config_error(e, f"{path}.{e.arg}", kwargs.get(e.arg)) from None
    except ValueError as e:
        if not isinstance(fn, type):  # a loader's ValueError is not about its arguments
            raise
        # A constructor refusing an argument (a user's layer, Keras' own classes).
        raise ConfigError(f"{path} ({spec['_target_']}): {first_line(e)}") from None
