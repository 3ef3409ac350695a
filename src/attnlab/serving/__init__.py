"""Serving a logged attnlab model: the MLflow pyfunc wrapper and its models-from-code entry."""
