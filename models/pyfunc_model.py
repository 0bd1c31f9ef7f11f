"""MLflow "models from code" entry: the file MLflow stores and runs to build
the pyfunc. The trained model itself travels as an artifact (``churn_model``)."""

import mlflow

from models.tracking import ChurnPyfunc

mlflow.models.set_model(ChurnPyfunc())
