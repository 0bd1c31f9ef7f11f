"""ChurnSim's end-to-end simulation: customers created month by month, simulated until they churn (vendored).

Source: carl24k/fight-churn ``fightchurn/churnsim/churnsim.py`` (class ``ChurnSimulation``), PyPI
``fightchurn`` 1.2.0. MIT licence, Copyright 2020 Carl Gold (see LICENSE.md). Report section 3.3,
"Simulation Algorithm" (https://papers.ssrn.com/sol3/papers.cfm?abstract_id=4540160).

ADAPTED (marked below): the Hydra/OmegaConf config is read by :func:`load_config` (the model's
YAML over ``default.yaml``, as Hydra's ``defaults`` list does) into a plain attribute mapping;
customers are simulated one after the other in this process (the original's default
``n_parallel: 1``) and their account row, subscriptions and events are kept in memory
(:class:`SimulationOutput`) instead of being written to PostgreSQL with ``COPY``; the live
(day-by-day) mode, cloud upload, debug queries and files under ``CHURN_OUT_DIR`` are left out;
the random generators are seeded here as ``run_churn_simulation`` does; reformatted.
``create_customer``, ``simulate_customer``, ``customer_month_end`` and the month loop of
``end_to_end_simulation`` are the original's, with one fix:

ADAPTED (fix): the released end-to-end loop never resets ``Customer.event_counts``, so from the
second month on the utility reads every event since the customer started (and saturates), while
the attribute is documented as the *monthly* event counts, the live (day-by-day) simulation of
the same release resets the counts after each month end (``customer.reset_event_counts()``),
and the earlier ``fightchurn/datagen`` version computed the utility from each month's counts.
The loop here resets them after each month end as the live simulation does. The config key
``monthly_event_counts: false`` (``--cumulative-counts`` in ``benchmarks.external.run``) keeps
the release's end-to-end behaviour instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from math import ceil
from typing import Any

import numpy as np
import pandas as pd
import yaml
from dateutil import parser
from dateutil.relativedelta import relativedelta

from benchmarks.external.churnsim.behavior import CONF_DIR, LogNormalBehaviorModel
from benchmarks.external.churnsim.customer import Customer
from benchmarks.external.churnsim.utility import UtilityModel


class Args(dict):
    """ADAPTED: a mapping read like the original's OmegaConf ``DictConfig`` (``args.init_customers``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def load_config(model: str, **overrides: Any) -> Args:
    """ADAPTED (Hydra's job in the original): ``conf/default.yaml``, then ``conf/<model>.yaml`` over it
    (both list ``default`` first in their Hydra ``defaults``), then ``overrides`` (``None`` ignored)."""
    values: dict[str, Any] = {}
    for name in ("default", model):
        with (CONF_DIR / f"{name}.yaml").open() as fh:
            values.update(yaml.safe_load(fh))
    values.pop("defaults", None)
    values.pop("hydra", None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("model") != model:
        raise ValueError(f"conf/{model}.yaml names model {values.get('model')!r}")
    return Args(values)


@dataclass
class SimulationOutput:
    """ADAPTED: what the original writes to its PostgreSQL schema, kept in memory.

    ``accounts``: (id, channel, date_of_birth, country) as in its ``account`` table;
    ``subscriptions``: (account id, plan, start, end, mrr, quantity, units, bill period, discount)
    as in its ``subscription`` table; ``events``: per customer and simulated month, the arrays of
    :meth:`Customer.generate_events`; ``mid_term_churns``: account id -> (the subscription's contracted
    end, the end the simulator wrote when the customer churned mid-term).
    """

    event_types: list[str]
    accounts: list[tuple] = field(default_factory=list)
    subscriptions: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    mid_term_churns: dict[int, tuple] = field(default_factory=dict)


class ChurnSimulation:
    def __init__(self, args):
        """Creates the behavior/utility model objects and sets internal variables to prepare for simulation
        (report sections 3.2.1, 3.3, 3.4.2, 3.4.5)."""
        self.args = args
        self.model_name = args.model
        self.start_date = parser.parse(args.start_date).date()
        self.end_date = parser.parse(args.end_date).date()
        self.init_customers = args.init_customers
        self.monthly_growth_rate = args.growth_rate
        self.util_mod = UtilityModel(self.model_name, args)

        self.min_age = args.min_age
        self.max_age = args.max_age
        self.age_satisfaction_scale = args.age_satisfy

        # ADAPTED: run_churn_simulation seeds Python's generator before building the simulation; the
        # behaviour models seed numpy's. Ids and the shared day multipliers start afresh in this process.
        if args.random_seed is not None:
            random.seed(args.random_seed)
        Customer.reset_ids()

        self.behavior_models = {}
        self.model_list = []
        self.population_percents = self.args.population

        for version in self.population_percents.keys():
            behave_mod = LogNormalBehaviorModel(
                self.model_name, exp_base=self.args.behave_exp_base, random_seed=args.random_seed, version=version
            )
            self.behavior_models[behave_mod.version] = behave_mod
            self.model_list.append(behave_mod)

        plans_path = CONF_DIR / f"{self.model_name}_plans.csv"  # ADAPTED: the vendored conf folder
        self.plans = pd.read_csv(plans_path, index_col=0)
        # ADAPTED (speed): names as Python objects, as pandas 2 (the original's) reads them, not pandas 3's str
        self.plans.index = self.plans.index.astype(object)

        add_on_file = CONF_DIR / f"{self.model_name}_addons.csv"
        if add_on_file.exists():
            self.add_ons = pd.read_csv(add_on_file)
            self.add_ons["plan"] = self.add_ons["plan"].astype(object)  # ADAPTED (speed): as above
        else:
            self.add_ons = pd.DataFrame()
        self.util_mod.setExpectations(self.behavior_models, self.population_percents)

        self.country_lookup = self.args.country
        self.output = SimulationOutput(event_types=[str(b) for b in self.model_list[0].behave_names])

    def create_customer(self, start_date):
        """All the steps for creating a customer: pick a behavior model, generate the customer, assign the
        country, possibly limit the billing periods at the start of the simulation, pick the plan, calculate
        the next renewal, add the subscriptions."""
        customer_model = self.behavior_models[
            np.random.choice(list(self.population_percents.keys()), p=list(self.population_percents.values()))
        ]
        new_customer = customer_model.generate_customer(start_date, args=self.args)

        customer_country = np.random.choice(list(self.country_lookup.keys()), p=list(self.country_lookup.values()))
        new_customer.country = customer_country

        plans_to_use = self.plans
        available_periods = None
        if "bill_period" in self.plans.columns.values:
            available_periods = sorted(self.plans["bill_period"].unique())
            # For the first month in a simulation, only allow 1 month bill periods
            #  - otherwise there are artificial cycles of lots of people re-newing on the 3,6,12 months
            if start_date <= self.start_date + relativedelta(months=1):
                min_period = self.plans["bill_period"].min()
                plans_to_use = self.plans[self.plans["bill_period"] == min_period]

        new_customer.pick_initial_plan(plans_to_use, self.add_ons, available_periods)
        new_customer.next_renewal = new_customer.start_date + relativedelta(months=new_customer.bill_period)
        new_customer.add_subscriptions(new_customer.start_date, self.plans, self.add_ons)

        return new_customer

    def simulate_customer(self, start_of_month):
        """Simulate one customer collecting its events and subscriptions: the core inner loop of the simulation
        (report section 3.3)."""
        end_range = start_of_month + relativedelta(months=+1)
        # Pick a random start date for the subscription within the month
        customer_start = start_of_month + timedelta(days=random.randrange((end_range - start_of_month).days))
        new_customer = self.create_customer(customer_start)

        churned = False
        while not churned:
            this_month = customer_start if new_customer.num_months == 0 else next_month  # noqa: F821
            new_customer.num_months += 1
            next_month = customer_start + relativedelta(months=new_customer.num_months)
            new_customer.generate_events(this_month, next_month)
            # exit if the simulation is over
            if next_month > self.end_date:
                break
            churned = self.customer_month_end(new_customer, next_month)
            if not churned and self.args.get("monthly_event_counts", True):
                # ADAPTED (fix, see below): a new month's utility reads that month's events
                new_customer.reset_event_counts()

        return new_customer

    def customer_month_end(self, customer, next_month):
        """All the updates for a customer as they have completed each month: a-causal churn, utility and churn
        intent, churn or renewal (with plan / bill period changes) at the renewal date, mid-term churn on
        longer billing periods."""
        churned = False
        churn_intent = False
        # First check for acausal churn
        if self.args.acausal_churn > 0:
            if random.uniform(0, 1) < self.args.acausal_churn:
                churn_intent = True
        # If no acausal churn, check utility
        if not churn_intent:
            _ = self.util_mod.utility_function(customer)
            churn_intent = self.util_mod.simulate_churn(customer)
        # If customer was unhappy, update the intent count
        if churn_intent:
            customer.churn_intent_count += 1

        # check for churn, upgrade/downgrade on renewal date, make new subscriptions if not churned
        if next_month >= customer.next_renewal:
            # churn at the end of the term if they wanted to churn just once (every month for monthly)
            if customer.churn_intent_count > 0:
                churned = True
            if not churned:
                customer.churn_intent_count = 0
                bill_period_change = self.util_mod.simulate_upgrade_downgrade(customer, self.plans, self.add_ons)
                if bill_period_change:
                    # Resets the start date if billing period changes
                    customer.bill_period_start = next_month
                    customer.num_bill_periods = 1
                else:
                    customer.num_bill_periods += 1
                customer.next_renewal = customer.bill_period_start + relativedelta(
                    months=customer.bill_period * customer.num_bill_periods
                )
                customer.add_subscriptions(next_month, self.plans, self.add_ons)

        elif (customer.churn_intent_count > 1 and 2 <= customer.bill_period <= 6) or (
            customer.churn_intent_count > 2 and 6 < customer.bill_period
        ):
            # churn mid term on 2 churns for quarterly/bi-annual, 3 churns for annual
            churned = True
            old_last = customer.subscriptions[-1]
            new_last = (
                old_last[0],
                old_last[1],
                next_month,
                old_last[3],
                old_last[4],
                old_last[5],
                old_last[6],
                old_last[7],
            )
            customer.subscriptions[-1] = new_last
            # ADAPTED: remembered for the mapping (which end was contracted, which one the simulator wrote)
            self.output.mid_term_churns[customer.id] = (old_last[2], next_month)

        return churned

    def create_customers_for_month(self, month_date, n_to_create):
        """Creates all the customers for one month. ADAPTED: one after the other in this process (the
        original's joblib loop with its default n_parallel=1), kept in memory instead of the database."""
        for _ in range(n_to_create):
            customer = self.simulate_customer(month_date)
            self.add_customer_to_output(customer)

    def add_customer_to_output(self, customer):
        """ADAPTED: the original's add_customer_to_database and customer_events_subs_to_database."""
        out = self.output
        country = None if customer.country == "None" else customer.country
        out.accounts.append((customer.id, customer.channel, customer.date_of_birth, country))
        for s in customer.subscriptions:
            # plan name, start, end, mrr, quantity, units, billing period, discount
            out.subscriptions.append((customer.id, *s))
        for month_start, day, seconds, event_type, user_id in customer.events:
            out.events.append((customer.id, month_start, day, seconds, event_type, user_id))
        customer.clear_history()

    def end_to_end_simulation(self) -> SimulationOutput:
        """Simulation main function: the initial customers, then month by month new customers (growing by the
        growth rate). Churn is modeled at the customer level (report section 3.3)."""
        self.create_customers_for_month(self.start_date, self.init_customers)

        # Advance to additional months
        next_month = self.start_date + relativedelta(months=+1)
        n_to_add = int(ceil(self.init_customers * self.monthly_growth_rate))  # number of new customers in first month
        while next_month < self.end_date:
            self.create_customers_for_month(next_month, n_to_add)
            next_month = next_month + relativedelta(months=+1)
            n_to_add = int(ceil(n_to_add * (1.0 + self.monthly_growth_rate)))  # increase the new customers by growth
        return self.output
