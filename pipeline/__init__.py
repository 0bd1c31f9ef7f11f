"""Wiring: settings, the warehouse connection, the synthetic data generator,
Prefect flows and the `churn` command line."""
