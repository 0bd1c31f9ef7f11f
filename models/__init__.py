"""Training, evaluation, calibration, explanation and MLflow tracking of the
churn model. A library: no orchestration imports here."""
