"""ChurnSim's behaviour model: customers' monthly event rates drawn from a (log-)normal (vendored).

Source: carl24k/fight-churn ``fightchurn/churnsim/behavior.py``, PyPI ``fightchurn`` 1.2.0.
MIT licence, Copyright 2020 Carl Gold (see LICENSE.md). Report section 3.2.1, "Behavior Model".

ADAPTED (marked below): reads the parameter files from ``conf/`` beside this file and does not
copy them to ``CHURN_OUT_DIR``; a covariance matrix that is not positive definite raises
instead of asking on stdin; the database helpers for the event-type table are left out;
reformatted for this repository's linter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.external.churnsim.customer import Customer

CONF_DIR = Path(__file__).resolve().parent / "conf"


def is_pos_def(x):
    """Quick check of whether the given matrix is positive definite"""
    rtol = 1e-05
    atol = 1e-08
    return np.all(np.linalg.eigvals(x) > 0) and np.allclose(x, x.T, rtol=rtol, atol=atol)


class BehaviorModel:
    def generate_customer(self, start_of_month, args):
        """The main result expected of the behavior model: produce customers that can be simulated."""
        raise NotImplementedError("Sub-classes must define generate_customer!")


class NormalBehaviorModel(BehaviorModel):
    def __init__(self, name, random_seed=None, version="model"):
        """A mean and (pseudo) covariance matrix to generate customers with event rates, read from
        ``conf/<name>_<version>.csv``: column ``behavior`` (names), ``mean`` (mean rates), optional ``max``,
        then a pseudo-covariance matrix with the behaviours as columns."""
        self.name = name
        self.version = version
        model_path = CONF_DIR / f"{name}_{version}.csv"  # ADAPTED: the vendored conf folder
        model = pd.read_csv(model_path)
        model = model.set_index(["behavior"])  # (the original sets it in place)
        self.behave_means = model["mean"]
        self.behave_maxs = None
        if "max" in model.columns:
            self.behave_maxs = model["max"]
        self.behave_names = model.index.values
        if not all([b in model.columns.values for b in self.behave_names]):
            raise ValueError(
                f"Covariance columns missing behaviors in rows: {list(set(self.behave_names) - set(model.columns))}"
            )
        self.behave_cov = model[self.behave_names]
        self.min_rate = 0.01 * self.behave_means.min()
        corr_scale = (np.absolute(self.behave_cov.to_numpy()) <= 1.0).all()
        if random_seed is not None:
            np.random.seed(random_seed)
        if not is_pos_def(self.behave_cov):
            # ADAPTED: the original asks on stdin whether to multiply the matrix by its transpose
            raise ValueError(f"{model_path.name}: the covariance matrix is not positive definite")

        if corr_scale:
            self.scale_correlation_to_covariance()

    def scale_correlation_to_covariance(self):
        # This seems to give a reasonable amount of variance if the matrix was designed as a set of correlations
        scaling = np.sqrt(self.behave_means.abs() * np.sqrt(self.behave_means.abs()))
        self.behave_cov = np.matmul(self.behave_cov, np.diag(scaling))
        self.behave_cov = np.matmul(np.diag(scaling), self.behave_cov)

    def behave_var(self):
        return np.diagonal(self.behave_cov)

    def generate_customer(self, start_of_month, args):
        """Event rates drawn from the multi-variate gaussian distribution."""
        customer_rates = np.random.multivariate_normal(mean=self.behave_means, cov=self.behave_cov)
        customer_rates = customer_rates.clip(min=self.min_rate)  # clip : no negative rates!
        new_customer = Customer(
            pd.DataFrame({"behavior": self.behave_names, "monthly_rate": customer_rates}), start_of_month, args
        )
        return new_customer


class LogNormalBehaviorModel(NormalBehaviorModel):
    def __init__(self, name, exp_base, random_seed=None, version=None):
        """The Log-Normal version of the behavior model (report sections 3.2.1 and 3.4.2, Product Channels)."""
        self.exp_base = exp_base
        self.log_fun = lambda x: np.log(x) / np.log(self.exp_base)
        self.exp_fun = lambda x: np.power(self.exp_base, x)

        super().__init__(name, random_seed, version)

    def scale_correlation_to_covariance(self):
        self.log_means = self.log_fun(self.behave_means)
        rectified_means = np.array([max(m, 0.0) for m in self.log_means])

        scaling = np.sqrt(rectified_means)
        self.behave_cov = np.matmul(self.behave_cov, np.diag(scaling))
        self.behave_cov = np.matmul(np.diag(scaling), self.behave_cov)

    def behave_var(self):
        return self.exp_fun(np.diagonal(self.behave_cov))

    def generate_customer(self, start_of_month, args):
        """Event rates drawn log-normal (report section 3.2.1). Also subtract 0.667 and set min at 0.333 per month,
        so there can be very low rates despite 0 (1) min in log normal sim."""
        customer_rates = np.random.multivariate_normal(mean=self.log_means, cov=self.behave_cov)
        customer_rates = self.exp_fun(customer_rates)
        customer_rates = np.maximum(customer_rates - 0.667, 0.333)
        if self.behave_maxs is not None:
            customer_rates = customer_rates.clip(max=self.behave_maxs).to_numpy()
        # ADAPTED (speed): the names as Python objects, as pandas 2 (the original's) keeps them, not pandas 3's str
        behavior = pd.Series(self.behave_names, dtype=object)
        new_customer = Customer(
            pd.DataFrame({"behavior": behavior, "monthly_rate": customer_rates}),
            start_date=start_of_month,
            args=args,
            channel_name=self.version,
        )
        return new_customer
