"""attnlab: an experiment-tracking research harness for self-attention text classifiers."""

__version__ = "0.2.0"
