"""attnlab's Optuna 5 sweeper for Hydra 1.3 (``hydra/sweeper=attnlab_optuna``).

Hydra finds it by scanning the ``hydra_plugins`` namespace package (which therefore has no
``__init__.py`` of its own) and imports :mod:`.config`, which registers the config node.
"""
