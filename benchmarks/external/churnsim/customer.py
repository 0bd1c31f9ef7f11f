"""ChurnSim's simulated customer (vendored).

Source: carl24k/fight-churn ``fightchurn/churnsim/customer.py``, PyPI ``fightchurn`` 1.2.0.
MIT licence, Copyright 2020 Carl Gold (see LICENSE.md). For the model see the ChurnSim report
https://papers.ssrn.com/sol3/papers.cfm?abstract_id=4540160 (sections named in the docstrings).

ADAPTED (marked below): ids come from an in-process counter instead of a file guarded by a
file lock; :meth:`Customer.generate_events` draws the same quantities as the original
(per day: the shared day-of-week multiplier, Poisson users, Poisson counts per behaviour
times users, plan limits per month, log-normal action values, a uniform time of day and a
uniform user) with numpy arrays instead of one Python tuple per event, so that a few million
events take seconds; reformatted for this repository's linter. Everything else is the original.
"""

from __future__ import annotations

from datetime import timedelta
from math import ceil

import numpy as np
import pandas as pd
from dateutil import relativedelta
from numpy import random


class Customer:
    date_multipliers: dict = {}
    # ADAPTED: the original keeps the next id in a temp file under a FileLock (for joblib workers)
    _next_id = 0
    # ADAPTED (speed): memo of get_unit_quantity and of the add-on catalogue's rows, per simulation
    _unit_quantity_memo: dict = {}
    _add_on_rows_memo: dict = {}

    @classmethod
    def reset_ids(cls) -> None:
        """ADAPTED: start a new simulation's ids at 0 and forget the day multipliers and the memos."""
        cls._next_id = 0
        cls.date_multipliers = {}
        cls._unit_quantity_memo = {}
        cls._add_on_rows_memo = {}

    def __init__(self, behavior_rates, start_date, args, channel_name="NA"):
        """Creates a customer for simulation, given an ndarray of behavior rates (PER MONTH), which are converted
        to daily. Each customer also has a unique integer id which will become the account_id, and holds its own
        subscriptions and events. Report sections 3.2.1, 3.3, 3.4.1-3.4.4, 3.5.1, 3.5.2, 3.5.6, 3.5.7."""
        self.id = Customer._next_id  # ADAPTED: in-process counter
        Customer._next_id += 1

        self.behavior_rates = behavior_rates
        self.behavior_rates["mean_value"] = None
        self.args = args

        for valued_behavior in Customer.get_valued_behaviors(self.behavior_rates["behavior"].values):
            underlying_behavior = Customer.get_behavior_under_value(
                valued_behavior, self.behavior_rates["behavior"].values
            )
            uidx = self.behavior_rates["behavior"] == underlying_behavior
            vidx = self.behavior_rates["behavior"] == valued_behavior
            self.behavior_rates.loc[uidx, "mean_value"] = self.behavior_rates.loc[vidx, "monthly_rate"].values[0]
            self.behavior_rates = self.behavior_rates.drop(self.behavior_rates[vidx].index, axis=0)

        if "users" in behavior_rates["behavior"].values:
            bidx = self.behavior_rates["behavior"] == "users"
            self.users = max(int(round(self.behavior_rates.loc[bidx, "monthly_rate"].iloc[0])), 1)
            self.behavior_rates = self.behavior_rates.drop(self.behavior_rates[bidx].index, axis=0)
        else:
            self.users = None

        self.behavior_rates["daily_rate"] = (1.0 / 30.0) * self.behavior_rates["monthly_rate"]
        self.channel = channel_name

        age_range = self.args.max_age - self.args.min_age
        avg_age = age_range / 2.0
        if start_date:
            self.start_date = start_date
            self.age = random.uniform(self.args.min_age, self.args.max_age)
            self.date_of_birth = start_date + relativedelta.relativedelta(
                years=-int(self.age), months=-int((self.age % 1) * 12), days=-random.uniform(1, 30)
            )
        else:
            self.date_of_birth = None
            self.age = avg_age

        self.age_satisfaction_coef = self.args.age_satisfy * (avg_age - self.age) / age_range
        self.country = "NA"
        self.mrr = None
        self.discount = 0.0
        self.bill_period = 1
        self.max_bill_period = None
        self.base_mrr = None
        self.plan = None
        self.add_ons = pd.DataFrame()
        self.limits = {}

        self.satisfaction_propensity = np.power(
            self.args.satisfy_base,
            random.uniform(-self.args.satisfy_scale, self.args.satisfy_scale) + self.age_satisfaction_coef,
        )

        # Member variables set by the simulation
        self.subscriptions = []
        self.events = []
        self.current_utility = None
        self.utility_contribs = None
        self.event_counts = None  # monthly event counts

        self.next_renewal = None  # next renewal date
        self.churn_intent_count = 0  # churn intent count for multi-month billing churn
        self.num_months = 0  # how many months this customer has been a customer
        self.num_bill_periods = 1  # how many bill cycles the customer has been on this billing period
        self.bill_period_start = self.start_date
        # ADAPTED (speed): the rates never change after this point, so get_behavior_rate reads them from a dict
        self._rate_of = {}
        for behavior, rate in zip(self.behavior_rates["behavior"], self.behavior_rates["monthly_rate"]):
            self._rate_of.setdefault(behavior, rate)

    def get_behavior_rate(self, behavior):
        if behavior == "users":
            customer_rate = self.users
        elif behavior in self._rate_of:  # ADAPTED (speed): the original filters the rates frame each time
            customer_rate = self._rate_of[behavior]
        else:
            raise ValueError(f"get_behavior_rates UNKNOWN behavior {behavior}")
        return customer_rate

    @staticmethod
    def get_valued_behaviors(behavior_list):
        value_behaviors = []
        for behave in behavior_list:
            if Customer.get_behavior_under_value(behave, behavior_list) is not None:
                value_behaviors.append(behave)
        return value_behaviors

    @staticmethod
    def get_underlying_behaviors(behavior_list):
        underlying_behaviors = []
        for behave in behavior_list:
            if Customer.get_behavior_under_value(behave, behavior_list) is None:
                underlying_behaviors.append(behave)
        return underlying_behaviors

    @staticmethod
    def get_behavior_under_value(one_behavior, behavior_list):
        if not one_behavior.endswith("_value"):
            return None
        base_behave = str(one_behavior).replace("_value", "")
        if base_behave in behavior_list:
            return base_behave
        else:
            return None

    def pick_initial_plan(self, plans, add_ons, bill_periods=None):
        """Report sections 3.5.3 (Product Plans, MRR and Limits) and 3.5.6 (Billing Periods)."""
        if bill_periods is not None:
            self.max_bill_period = np.random.choice(bill_periods)
            plans_to_use = plans[plans["bill_period"] <= self.max_bill_period]
        else:
            plans_to_use = plans

        if plans.shape[1] < 3:
            choice_index = np.random.choice(range(len(plans_to_use)))
        else:
            # Customer can pick between plans for which its expected number of users
            # is at least 1/3 the plan limit and at most 3x the plan limit
            eligible_plans = []
            for plan_index in range(0, len(plans_to_use)):
                is_eligible = False
                for limited in plans_to_use.columns.values[2:]:
                    plan_limit = plans_to_use.iloc[plan_index][limited]
                    customer_rate = self.get_behavior_rate(limited)
                    min_rate = 0.33 * plan_limit if plan_index > 0 else 0  # everyone is eligible_plans for first plan
                    max_rate = 3.0 * plan_limit
                    if min_rate <= customer_rate <= max_rate:
                        is_eligible = True
                        break
                if is_eligible:
                    eligible_plans.append(plan_index)
            assert len(eligible_plans) > 0
            if len(eligible_plans) == 1:
                choice_index = eligible_plans[0]
            else:
                choice_index = np.random.choice(eligible_plans)

        self.set_plan(plans_to_use, choice_index)
        if len(add_ons) > 0:
            for add_on in add_ons.iterrows():
                if random.uniform(0, 1) <= add_on[1]["prob"]:
                    if len(self.add_ons) == 0:
                        self.add_ons = pd.DataFrame([add_on[1]])
                    else:
                        new_add_on_df = pd.DataFrame([add_on[1]])
                        self.add_ons = pd.concat([self.add_ons, new_add_on_df])
        self.add_add_ons(plans_to_use)

    def set_plan(self, plans, plan_idx=None, plan_name=None):
        """Report sections 3.5.3, 3.5.5 (Add-on Products) and 3.5.6."""
        if plan_idx is not None:
            self.plan = plans.index.values[plan_idx]
        else:
            self.plan = plan_name
        # 50% chance of a discount as low as 50%
        if np.random.uniform(0, 1) <= self.args.discount_prob:
            # discounts come in multiples of the min, e.g. 1%, 2%, 5% - not any old value
            self.discount = self.args.min_discount * np.round(
                np.random.uniform(self.args.min_discount, self.args.max_discount) / 0.05
            )
        else:
            self.discount = 0.0
        self.mrr = np.round(plans.loc[self.plan, "mrr"] * (1.0 - self.discount))
        self.base_mrr = self.mrr
        if "bill_period" in plans.columns.values:
            self.bill_period = plans.loc[self.plan, "bill_period"]
        if plans.shape[1] > 2:
            self.limits = {behave: plans.loc[self.plan, behave] for behave in plans.columns[2:]}

    def add_add_ons(self, plans):
        """Report sections 3.5.3 and 3.5.5."""
        # Reset to  base MRR
        self.set_plan(plans, plan_name=self.plan)
        for add_on in self.add_ons.iterrows():
            self.mrr += add_on[1]["mrr"]
            for limited in self.add_ons.columns[3:]:
                if limited in self.limits:
                    self.limits[limited] += add_on[1][limited]
                else:
                    raise ValueError(f"Add on raises a limit {limited} that was not found")

    @staticmethod
    def get_min_max_dow_scale(scale_param):
        """Report section 3.4.1, Day of Week Behavioral Fluctuation, equation 6."""
        assert -1.0 <= scale_param < 1.0
        if scale_param > 0:
            min_scale = 1 - 0.1 * scale_param
            max_scale = 1 + scale_param
        else:
            min_scale = 1 + scale_param
            max_scale = 1 - 0.1 * scale_param
        return min_scale, max_scale

    @staticmethod
    def get_day_multiplier(the_date, args):
        """Increasing/Decreasing behavior based on the day of the week. Stores one multiplier to be
        used by all customers, the first time a day is encountered (report section 3.4.1)."""
        # Set a multiplier for this date
        if the_date not in Customer.date_multipliers:
            if the_date.weekday() >= 4:  # Friday - Sun
                min_scale, max_scale = Customer.get_min_max_dow_scale(args.weekend_scale)
            else:  # Monday-Thursday
                min_scale, max_scale = Customer.get_min_max_dow_scale(args.weekday_scale)
            multiplier = random.uniform(min_scale, max_scale)
            Customer.date_multipliers[the_date] = multiplier
        return Customer.date_multipliers[the_date]

    def reset_event_counts(self):
        if self.users is None:
            self.event_counts = [0] * len(self.behavior_rates)
        else:
            self.event_counts = [0] * (len(self.behavior_rates) + 1)  # Plus one for number of users

    def generate_events(self, start_date, end_date):
        """Generate the events from ``start_date`` (included) to ``end_date`` (excluded) at the customer's daily
        rates: each day, each behaviour's count is a Poisson draw at the customer's rate, times the day's
        multiplier and the day's number of users, rounded; counts of a limited behaviour stop at the plan limit
        for the period; every event gets a uniform time of day and a uniform user of the day; an action value
        is drawn log-normal around the customer's mean value. Adds to the running ``event_counts`` (never reset
        in the original's end-to-end simulation) and returns them. Report sections 3.2.1, 3.4.1, 3.5.1-3.5.3.

        ADAPTED: the original loops over days, behaviours (``DataFrame.iterrows``) and events and appends one
        ``(datetime, type id, user id, value)`` tuple per event; here the same draws are made per period with
        numpy and the events are kept as arrays ``(day offsets, seconds, type ids, user ids)`` plus the
        period's first day. Action values only enter ``event_counts`` (the contract has no value column)."""
        delta = end_date - start_date
        n_days = delta.days

        if self.event_counts is None:
            self.reset_event_counts()

        dow_multiplier = np.array(
            [Customer.get_day_multiplier(start_date + timedelta(days=i), self.args) for i in range(n_days)]
        )
        if self.users is None:
            todays_users = np.ones(n_days, dtype=np.int64)
        else:
            todays_users = np.rint(dow_multiplier * random.poisson(self.users, size=n_days)).astype(np.int64)
            if "users" in self.limits:
                todays_users = np.minimum(todays_users, int(self.limits["users"]))

        names = self.behavior_rates["behavior"].to_numpy()
        type_ids = self.behavior_rates.index.to_numpy()  # the original's row[0]: the event type id
        rates = self.behavior_rates["daily_rate"].to_numpy(dtype=float)
        draws = random.poisson(rates[None, :], size=(n_days, len(rates)))
        counts = np.rint(dow_multiplier[:, None] * draws * todays_users[:, None]).astype(np.int64)
        for j, behavior_name in enumerate(names):
            if behavior_name in self.limits:
                # original: new_count = min(new_count, limit - used so far); i.e. the running total stops at the limit
                used = np.minimum(np.cumsum(counts[:, j]), int(self.limits[behavior_name]))
                counts[:, j] = np.diff(used, prepend=0)

        mean_values = self.behavior_rates["mean_value"].to_numpy()
        for j, type_id in enumerate(type_ids):
            n = int(counts[:, j].sum())
            if mean_values[j] is not None and not pd.isna(mean_values[j]):
                values = np.round(np.exp(np.random.normal(np.log(mean_values[j]), size=n)), 2)
                self.event_counts[type_id] += float(values.sum())
            else:
                self.event_counts[type_id] += n

        per_day = counts.sum(axis=1)
        day = np.repeat(np.arange(n_days), per_day)
        event_type = np.repeat(np.tile(type_ids, n_days), counts.ravel())
        seconds = random.randint(0, 24 * 3600, size=len(day))  # randrange(24), randrange(60), randrange(60)
        if self.users is not None:
            user_id = np.floor(random.uniform(0, 1, size=len(day)) * todays_users[day]).astype(np.int64)
            self.event_counts[-1] += int(todays_users.sum())
            self.event_counts[-1] = int(
                ceil(self.event_counts[-1] / n_days)
            )  # user count is returned as average, not total
        else:
            user_id = np.zeros(len(day), dtype=np.int64)

        self.events.append((start_date, day, seconds, event_type, user_id))

        return self.event_counts

    @staticmethod
    def get_unit_quantity(plan, plans, add_ons):
        # ADAPTED (speed): the answer depends only on the plan and the simulation's plan and add-on tables
        key = (plan, id(plans), id(add_ons))
        if key not in Customer._unit_quantity_memo:
            Customer._unit_quantity_memo[key] = Customer._get_unit_quantity(plan, plans, add_ons)
        return Customer._unit_quantity_memo[key]

    @staticmethod
    def _get_unit_quantity(plan, plans, add_ons):
        if plan in plans.index.values:
            if plans.shape[1] > 2:
                limit_col = plans.columns.values[2]
                return limit_col, plans.loc[plan, limit_col]

        if len(add_ons) > 0 and plan in add_ons["plan"].values:
            if add_ons.shape[1] > 3:
                add_on = add_ons[add_ons["plan"] == plan]
                for limit_col in add_ons.columns.values[3:]:
                    if add_on[limit_col].values[0] > 0:
                        return limit_col, add_on[limit_col].values[0]

        return None, None

    def add_subscriptions(self, start_date, plans, add_ons):
        plan_units, plan_quantity = Customer.get_unit_quantity(self.plan, plans, add_ons)
        self.subscriptions.append(
            (
                self.plan,
                start_date,
                self.next_renewal,
                self.base_mrr,
                plan_quantity,
                plan_units,
                self.bill_period,
                self.discount,
            )
        )
        # NB (original behaviour, kept): this loops over the add-on catalogue passed in, not the customer's own
        # add-ons, so every customer gets one row per catalogue add-on at the add-on's list MRR.
        if id(add_ons) not in Customer._add_on_rows_memo:  # ADAPTED (speed): iterrows once per simulation
            Customer._add_on_rows_memo[id(add_ons)] = [row for _, row in add_ons.iterrows()]
        for add_on in Customer._add_on_rows_memo[id(add_ons)]:
            add_units, add_quantity = Customer.get_unit_quantity(add_on["plan"], plans, add_ons)
            self.subscriptions.append(
                (
                    add_on["plan"],
                    start_date,
                    self.next_renewal,
                    add_on["mrr"],
                    add_quantity,
                    add_units,
                    self.bill_period,
                    self.discount,
                )
            )

    def clear_history(self):
        self.subscriptions = []
        self.events = []
