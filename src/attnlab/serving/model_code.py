"""MLflow "model from code" entry: logging this file (not a pickled object) means loading a
model never unpickles anything; it imports the installed attnlab."""

import mlflow.models

from attnlab.serving.pyfunc import AttnlabPyfunc

mlflow.models.set_model(AttnlabPyfunc())
