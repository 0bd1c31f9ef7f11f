"""Exact path-dependent TreeSHAP for a LightGBM booster, the same values as
``booster.predict(X, pred_contrib=True)`` several times faster on shallow trees.

LightGBM's TreeSHAP walks every tree once per account and costs about
trees x leaves x depth^2 per account. For a leaf whose path has ``d`` distinct
features, the contribution it gives each of them depends only on which of
its path conditions the account meets: ``2^d`` patterns. So, the way
FastTreeSHAP's "v2" does, every leaf's contributions are computed once per
pattern (a table of ``2^d x d`` numbers, a few hundred KB for our depth <= 6
model), and an account then costs trees x leaves x depth: evaluate each split
once, form each leaf's pattern, add its ``d`` table entries. Compiled with
numba and run over blocks of accounts in parallel.

The values are LightGBM's to rounding (the tests hold them to 1e-9 on a model
with categorical splits and missing values): the splits decide exactly as
LightGBM's ``NumericalDecision`` / ``CategoricalDecision`` do (missing types
None / Zero / NaN, default directions, category bitsets) and the covers are
LightGBM's own counts. The base value column is taken from LightGBM itself.
Trees deeper than :data:`MAX_TABLE_DEPTH` distinct features on a path would
need too large a table: such a booster falls back to ``pred_contrib``.

Shapley value of path feature ``j`` of a leaf with value ``v``, distinct path
features ``U`` (``|U| = d``), cover fraction ``z_k`` (product over feature
``k``'s splits on the path of child count / parent count) and ``o_k`` = 1 when
the account meets all of ``k``'s conditions on the path::

    phi_j = v (o_j - z_j) sum_{S in U \\ j} |S|! (d - |S| - 1)! / d!  prod_{k in S} o_k  prod_{k in U \\ S \\ j} z_k
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, fields
from typing import Any

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd

from models import treeshap_kernels as kernels

log = logging.getLogger(__name__)

#: at most this many distinct features on a root-to-leaf path (table 2^d x d per leaf)
MAX_TABLE_DEPTH = 12
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
class _Ensemble:
    """A booster's trees as flat arrays for the compiled kernel."""

    n_features: int
    tree_node_start: np.ndarray  # int64 (trees + 1): internal nodes of tree t
    tree_leaf_start: np.ndarray  # int64 (trees + 1): leaves of tree t
    node_feature: np.ndarray  # int64
    node_threshold: np.ndarray  # float64 (numeric splits)
    node_categorical: np.ndarray  # bool
    node_missing: np.ndarray  # int64: 0 None, 1 Zero, 2 NaN
    node_default_left: np.ndarray  # bool
    node_cat_start: np.ndarray  # int64: bitset words of a categorical split
    node_cat_words: np.ndarray  # int64
    cat_bits: np.ndarray  # uint32
    leaf_check_start: np.ndarray  # int64 (leaves + 1): conditions on the leaf's path
    check_node: np.ndarray  # int64: local node index in its tree
    check_left: np.ndarray  # bool: the path goes left at that node
    check_slot: np.ndarray  # int64: the distinct-feature slot of the condition
    leaf_slot_start: np.ndarray  # int64 (leaves + 1): distinct path features
    slot_feature: np.ndarray  # int64
    leaf_table_start: np.ndarray  # int64 (leaves + 1)
    table: np.ndarray  # float64: per leaf, 2^d patterns x d contributions
    max_nodes: int


_EXPLAINERS: weakref.WeakKeyDictionary[lgb.Booster, TreeShap] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()  # one parallel kernel at a time: each one already uses every core


def explainer_for(booster: lgb.Booster) -> TreeShap:
    """The booster's :class:`TreeShap`, built once (its tables take a fraction of a second)."""
    with _LOCK:
        explainer = _EXPLAINERS.get(booster)
        if explainer is None:
            explainer = _EXPLAINERS[booster] = TreeShap(booster)
    return explainer


class TreeShap:
    """Exact TreeSHAP contributions of a LightGBM booster (see the module doc).

    ``TreeShap(booster).contributions(X)`` returns what
    ``booster.predict(X, pred_contrib=True)`` returns for a binary or
    regression booster: (rows x features + 1), the last column the base value."""

    def __init__(self, booster: lgb.Booster, num_iteration: int | None = None) -> None:
        self.booster = booster
        best = getattr(booster, "best_iteration", 0) or 0
        self.num_iteration = num_iteration if num_iteration is not None else (best if best > 0 else None)
        dump = booster.dump_model(num_iteration=self.num_iteration)
        self.feature_names: list[str] = list(dump["feature_names"])
        self.pandas_categorical = getattr(booster, "pandas_categorical", None)
        self.ensemble = _compile(dump) if dump.get("num_class", 1) == 1 else None
        if self.ensemble is None:
            log.info("TreeSHAP: trees too deep or multi-class: using LightGBM's pred_contrib")
        self._base: float | None = None

    @property
    def fast(self) -> bool:
        """False when the booster falls back to LightGBM's own TreeSHAP."""
        return self.ensemble is not None

    def contributions(self, frame: pd.DataFrame | np.ndarray, threads: int | None = None) -> np.ndarray:
        if not len(frame):
            return np.zeros((0, len(self.feature_names) + 1))
        if self.ensemble is None:
            return self.booster.predict(
                frame, pred_contrib=True, num_iteration=self.num_iteration, num_threads=threads or 0
            )
        x = self.as_float(frame)
        phi = np.zeros((len(x), self.ensemble.n_features + 1), dtype=np.float64)
        with _LOCK:
            previous = numba.get_num_threads()
            numba.set_num_threads(min(threads or previous, numba.config.NUMBA_NUM_THREADS))
            try:
                kernels.shap_values(x, phi, *_kernel_args(self.ensemble))
            finally:
                numba.set_num_threads(previous)
        phi[:, -1] = self.base_value(frame)
        return phi

    def base_value(self, frame: pd.DataFrame | np.ndarray) -> float:
        """The expected value column, LightGBM's own (the same for every row)."""
        if self._base is None:
            one = frame.iloc[:1] if isinstance(frame, pd.DataFrame) else frame[:1]
            self._base = float(self.booster.predict(one, pred_contrib=True, num_iteration=self.num_iteration)[0, -1])
        return self._base

    def as_float(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The matrix LightGBM predicts on: categoricals as their training
        codes (unknown or missing: NaN), everything float64, C order."""
        if not isinstance(frame, pd.DataFrame):
            x = np.array(frame, dtype=np.float64, order="C")
        else:
            categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
            trained = dict(zip(categorical, self.pandas_categorical or []))
            columns = []
            for col in frame.columns:
                series = frame[col]
                if col in trained and list(series.cat.categories) != list(trained[col]):
                    series = series.cat.set_categories(trained[col])
                if isinstance(series.dtype, pd.CategoricalDtype):
                    codes = series.cat.codes.to_numpy().astype(np.float64)
                    codes[codes < 0] = np.nan
                    columns.append(codes)
                else:
                    columns.append(series.to_numpy(dtype=np.float64, na_value=np.nan))
            x = np.ascontiguousarray(np.column_stack(columns)) if columns else np.zeros((len(frame), 0))
        x[np.abs(x) <= kernels.ZERO_THRESHOLD] = 0.0  # LightGBM reads such values as zero
        return x


def _kernel_args(e: _Ensemble) -> tuple[Any, ...]:
    """The arrays in the order the kernel takes them (the dataclass's, after n_features)."""
    return tuple(getattr(e, f.name) for f in fields(e) if f.name != "n_features")


# -- the booster's trees as flat arrays ---------------------------------------
class _Builder:
    """Flattens the trees of a LightGBM model dump, leaf by leaf."""

    def __init__(self) -> None:
        self.nodes: dict[str, list] = {
            k: [] for k in ("feature", "threshold", "cat", "missing", "left", "cstart", "cwords")
        }
        self.bits: list[int] = []
        self.checks: dict[str, list] = {"node": [], "left": [], "slot": []}
        self.slots: list[int] = []
        self.leaf_values: list[float] = []
        self.leaf_zero: list[np.ndarray] = []  # per leaf: z_k of its distinct features
        self.tree_node_start, self.tree_leaf_start = [0], [0]
        self.leaf_check_start, self.leaf_slot_start = [0], [0]
        self.max_nodes = 1
        self.local = 0  # internal nodes of the current tree so far

    def add_tree(self, root: dict[str, Any]) -> bool:
        """False when a path has more distinct features than a table can hold."""
        self.local = 0
        if "split_index" in root and not self.walk(root, []):
            return False  # (a single-leaf tree only moves the base value)
        self.max_nodes = max(self.max_nodes, self.local)
        self.tree_node_start.append(len(self.nodes["feature"]))
        self.tree_leaf_start.append(len(self.leaf_values))
        return True

    def walk(self, node: dict[str, Any], path: list[tuple[int, int, bool, float]]) -> bool:
        if "split_index" not in node:
            return self.leaf(node, path)
        index = self.local
        self.local += 1
        _add_node(node, self.nodes, self.bits)
        count = float(node["internal_count"])
        for child, left in ((node["left_child"], True), (node["right_child"], False)):
            child_count = float(child["internal_count"] if "split_index" in child else child["leaf_count"])
            if not self.walk(child, [*path, (index, node["split_feature"], left, child_count / count)]):
                return False
        return True

    def leaf(self, node: dict[str, Any], path: list[tuple[int, int, bool, float]]) -> bool:
        """A leaf: its distinct path features (slots), their cover fractions and its conditions."""
        order: list[int] = []
        zero: dict[int, float] = {}
        for _, feature, _, fraction in path:
            if feature not in zero:
                order.append(feature)
                zero[feature] = 1.0
            zero[feature] *= fraction
        if len(order) > MAX_TABLE_DEPTH:
            return False
        slot_of = {f: i for i, f in enumerate(order)}
        for local_node, feature, left, _ in path:
            self.checks["node"].append(local_node)
            self.checks["left"].append(left)
            self.checks["slot"].append(slot_of[feature])
        self.slots.extend(order)
        self.leaf_values.append(float(node["leaf_value"]))
        self.leaf_zero.append(np.array([zero[f] for f in order], dtype=np.float64))
        self.leaf_check_start.append(len(self.checks["node"]))
        self.leaf_slot_start.append(len(self.slots))
        return True


def _compile(dump: dict[str, Any]) -> _Ensemble | None:
    built = _Builder()
    if not all(built.add_tree(tree["tree_structure"]) for tree in dump["tree_info"]):
        return None
    slot_start = np.asarray(built.leaf_slot_start, dtype=np.int64)
    depths = np.diff(slot_start)
    table_start = np.zeros(len(depths) + 1, dtype=np.int64)
    table_start[1:] = np.cumsum((1 << depths) * depths)
    table = np.zeros(int(table_start[-1]), dtype=np.float64)
    zeros = np.concatenate(built.leaf_zero) if built.leaf_zero else np.zeros(0)
    kernels.fill_tables(np.asarray(built.leaf_values, dtype=np.float64), zeros, slot_start, table_start, table)
    nodes, checks = built.nodes, built.checks
    return _Ensemble(
        n_features=len(dump["feature_names"]),
        tree_node_start=np.asarray(built.tree_node_start, dtype=np.int64),
        tree_leaf_start=np.asarray(built.tree_leaf_start, dtype=np.int64),
        node_feature=np.asarray(nodes["feature"], dtype=np.int64),
        node_threshold=np.asarray(nodes["threshold"], dtype=np.float64),
        node_categorical=np.asarray(nodes["cat"], dtype=np.bool_),
        node_missing=np.asarray(nodes["missing"], dtype=np.int64),
        node_default_left=np.asarray(nodes["left"], dtype=np.bool_),
        node_cat_start=np.asarray(nodes["cstart"], dtype=np.int64),
        node_cat_words=np.asarray(nodes["cwords"], dtype=np.int64),
        cat_bits=np.asarray(built.bits, dtype=np.uint32),
        leaf_check_start=np.asarray(built.leaf_check_start, dtype=np.int64),
        check_node=np.asarray(checks["node"], dtype=np.int64),
        check_left=np.asarray(checks["left"], dtype=np.bool_),
        check_slot=np.asarray(checks["slot"], dtype=np.int64),
        leaf_slot_start=slot_start,
        slot_feature=np.asarray(built.slots, dtype=np.int64),
        leaf_table_start=table_start,
        table=table,
        max_nodes=built.max_nodes,
    )


def _add_node(node: dict[str, Any], nodes: dict[str, list], bits: list[int]) -> None:
    categorical = node["decision_type"] == "=="
    nodes["feature"].append(int(node["split_feature"]))
    nodes["cat"].append(categorical)
    nodes["missing"].append(_MISSING[node.get("missing_type", "None")])
    nodes["left"].append(bool(node["default_left"]))
    if categorical:  # "1||3||5": the categories that go left, as a bitset
        categories = [int(c) for c in str(node["threshold"]).split("||")]
        words = np.zeros(max(categories) // 32 + 1, dtype=np.uint64)
        for c in categories:
            words[c // 32] |= np.uint64(1) << np.uint64(c % 32)
        nodes["threshold"].append(0.0)
        nodes["cstart"].append(len(bits))
        nodes["cwords"].append(len(words))
        bits.extend(int(w) for w in words)
    else:
        nodes["threshold"].append(float(node["threshold"]))
        nodes["cstart"].append(0)
        nodes["cwords"].append(0)
