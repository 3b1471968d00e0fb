"""A cost model learned online from the measurements of one workload: small gradient-boosted regression trees
(numpy only) predicting log(time) from a candidate's features, used to rank candidates so that most of them are
never measured. Until enough measurements exist it ranks nothing (the search then explores at random)."""
from __future__ import annotations

import numpy as np

MIN_SAMPLES = 6


class _Tree:
    """A depth-limited regression tree grown on squared error; split thresholds halfway between sorted values."""

    def __init__(self, depth: int, min_leaf: int) -> None:
        self.depth, self.min_leaf = depth, min_leaf
        self.nodes: list[tuple[int, float, int, int, float]] = []  # feature, threshold, left, right, value

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_Tree":
        self.nodes = []
        self._grow(x, y, np.arange(len(y)), self.depth)
        return self

    def _grow(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray, depth: int) -> int:
        me = len(self.nodes)
        self.nodes.append((-1, 0.0, -1, -1, float(y[rows].mean())))
        if depth == 0 or len(rows) < 2 * self.min_leaf:
            return me
        best = (0.0, -1, 0.0)
        yr = y[rows]
        total, count = yr.sum(), len(rows)
        base = total * total / count
        for f in range(x.shape[1]):
            order = np.argsort(x[rows, f], kind="stable")
            xs, ys = x[rows, f][order], yr[order]
            csum = np.cumsum(ys)[:-1]
            n_left = np.arange(1, count)
            valid = (xs[1:] != xs[:-1]) & (n_left >= self.min_leaf) & (count - n_left >= self.min_leaf)
            if not valid.any():
                continue
            gain = csum ** 2 / n_left + (total - csum) ** 2 / (count - n_left) - base
            gain[~valid] = -np.inf
            i = int(np.argmax(gain))
            if gain[i] > best[0]:
                best = (float(gain[i]), f, float((xs[i] + xs[i + 1]) / 2))
        if best[1] < 0:
            return me
        _, f, thr = best
        left = self._grow(x, y, rows[x[rows, f] <= thr], depth - 1)
        right = self._grow(x, y, rows[x[rows, f] > thr], depth - 1)
        self.nodes[me] = (f, thr, left, right, self.nodes[me][4])
        return me

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(len(x))
        for r in range(len(x)):
            n = 0
            while self.nodes[n][0] >= 0:
                f, thr, left, right, _ = self.nodes[n]
                n = left if x[r, f] <= thr else right
            out[r] = self.nodes[n][4]
        return out


class CostModel:
    """Gradient boosting on log(time): `trees` shallow trees, each fitted to the residuals of the ones before."""

    def __init__(self, trees: int = 40, depth: int = 3, rate: float = 0.3, min_leaf: int = 2) -> None:
        self.n_trees, self.depth, self.rate, self.min_leaf = trees, depth, rate, min_leaf
        self.base = 0.0
        self.trees: list[_Tree] = []

    @property
    def trained(self) -> bool:
        return bool(self.trees)

    def fit(self, x: np.ndarray, times: np.ndarray) -> None:
        """Fit on measured candidates (features, seconds); fewer than MIN_SAMPLES leaves the model untrained."""
        if len(times) < MIN_SAMPLES:
            self.trees = []
            return
        y = np.log(np.asarray(times, dtype=np.float64))
        self.base = float(y.mean())
        pred = np.full(len(y), self.base)
        self.trees = []
        for _ in range(self.n_trees):
            tree = _Tree(self.depth, self.min_leaf).fit(x, y - pred)
            self.trees.append(tree)
            pred += self.rate * tree.predict(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted log(time); lower is better."""
        out = np.full(len(x), self.base)
        for tree in self.trees:
            out += self.rate * tree.predict(x)
        return out
