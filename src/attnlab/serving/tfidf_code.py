"""MLflow "model from code" entry of ``model=tfidf_lr`` (see ``model_code.py``): loading the
model imports the installed attnlab and reads plain arrays; nothing is unpickled."""

import mlflow.models

from attnlab.serving.tfidf import TfidfPyfunc

mlflow.models.set_model(TfidfPyfunc())
