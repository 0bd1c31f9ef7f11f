"""The compiled parts of :mod:`models.treeshap`: the per-leaf tables and the
kernel that adds every leaf's table entry to each account's contributions."""

from __future__ import annotations

import numba
import numpy as np

#: |x| <= this is zero to LightGBM (kZeroThreshold)
ZERO_THRESHOLD = 1e-35
#: accounts per parallel block
_BLOCK = 256


@numba.njit(cache=True)
def fill_tables(values, zeros, slot_start, table_start, table):  # pragma: no cover - compiled
    """Every leaf's contributions for every pattern of met conditions."""
    for leaf in range(len(values)):
        d = slot_start[leaf + 1] - slot_start[leaf]
        if d == 0:
            continue
        z = zeros[slot_start[leaf] : slot_start[leaf + 1]]
        weight = np.empty(d)  # |S|! (d - |S| - 1)! / d!
        for s in range(d):
            w = 1.0 / d
            for i in range(1, s + 1):
                w *= i / (d - i)
            weight[s] = w
        e = np.empty(d + 1)
        for pattern in range(1 << d):
            for j in range(d):
                # elementary symmetric sums of z over the met conditions B (j excluded)
                # and the product of z over the unmet ones
                e[:] = 0.0
                e[0] = 1.0
                size = 0
                unmet = 1.0
                for k in range(d):
                    if k == j:
                        continue
                    if pattern >> k & 1:
                        size += 1
                        for m in range(size, 0, -1):
                            e[m] += z[k] * e[m - 1]
                    else:
                        unmet *= z[k]
                # sum over S in B: weight(|S|) prod_{B \ S} z = sum_s weight(s) e_{|B| - s}
                total = 0.0
                for s in range(size + 1):
                    total += weight[s] * e[size - s]
                met = 1.0 if pattern >> j & 1 else 0.0
                table[table_start[leaf] + pattern * d + j] = values[leaf] * (met - z[j]) * unmet * total


@numba.njit(inline="always")
def _goes_left(value, node, feature_threshold, categorical, missing, default_left, cat_start, cat_words, bits):
    """LightGBM's Decision(): True when ``value`` takes the left child."""
    if categorical[node]:
        if np.isnan(value):
            return False
        code = int(value)
        if code < 0:
            return False
        word = code // 32
        if word >= cat_words[node]:
            return False
        return ((bits[cat_start[node] + word] >> np.uint32(code % 32)) & np.uint32(1)) == 1
    kind = missing[node]
    if np.isnan(value) and kind != 2:
        value = 0.0
    if (kind == 1 and value >= -ZERO_THRESHOLD and value <= ZERO_THRESHOLD) or (kind == 2 and np.isnan(value)):
        return default_left[node]
    return value <= feature_threshold[node]


@numba.njit(parallel=True, cache=True)
def shap_values(  # pragma: no cover - compiled
    x,
    phi,
    tree_node_start,
    tree_leaf_start,
    node_feature,
    node_threshold,
    node_categorical,
    node_missing,
    node_default_left,
    node_cat_start,
    node_cat_words,
    cat_bits,
    leaf_check_start,
    check_node,
    check_left,
    check_slot,
    leaf_slot_start,
    slot_feature,
    leaf_table_start,
    table,
    max_nodes,
):
    # tree by tree over a block of accounts: one tree's splits and tables stay
    # in cache while the block goes through it
    n, width = x.shape
    blocks = (n + _BLOCK - 1) // _BLOCK
    for b in numba.prange(blocks):
        lo = b * _BLOCK
        m = min(n, lo + _BLOCK) - lo
        xt = np.empty((width, m))  # the block, feature-major
        for i in range(m):
            for f in range(width):
                xt[f, i] = x[lo + i, f]
        acc = np.zeros((width, m))
        left = np.empty((max_nodes, m), dtype=np.bool_)
        pattern = np.empty(m, dtype=np.int64)
        for t in range(len(tree_node_start) - 1):
            first = tree_node_start[t]
            for k in range(tree_node_start[t + 1] - first):
                node = first + k
                column = xt[node_feature[node]]
                for i in range(m):
                    left[k, i] = _goes_left(
                        column[i],
                        node,
                        node_threshold,
                        node_categorical,
                        node_missing,
                        node_default_left,
                        node_cat_start,
                        node_cat_words,
                        cat_bits,
                    )
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                d = leaf_slot_start[leaf + 1] - leaf_slot_start[leaf]
                pattern[:] = (1 << d) - 1
                for c in range(leaf_check_start[leaf], leaf_check_start[leaf + 1]):
                    went = left[check_node[c]]
                    want = check_left[c]
                    clear = ~(1 << check_slot[c])
                    for i in range(m):
                        if went[i] != want:
                            pattern[i] &= clear
                at = leaf_table_start[leaf]
                s0 = leaf_slot_start[leaf]
                for s in range(d):
                    row = acc[slot_feature[s0 + s]]
                    for i in range(m):
                        row[i] += table[at + pattern[i] * d + s]
        for i in range(m):
            for f in range(width):
                phi[lo + i, f] = acc[f, i]
