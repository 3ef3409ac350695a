"""Compatibility name for models logged by attnlab 0.1: their code file imports
``attnlab.pyfunc.AttnlabPyfunc``. New code uses :mod:`attnlab.serving.pyfunc`."""

from attnlab.serving.pyfunc import AttnlabPyfunc

__all__ = ["AttnlabPyfunc"]
