"""The standard recommendation baselines of `bench.quality` (issue 31), as a recall team would run them.

Each one sees the log in time order through `observe` and answers `row(user, ...)`: a score for every
item in arrival order (items not arrived yet are ignored by the protocol), or None when it cannot
serve the user (a miss). Pure apart from the `implicit` library's solver; no clocks, no I/O.

- `Popularity`: positives in a trailing window of the log's time (1, 7, 30 days) or of all time.
- `NightlyAls`: ALS for implicit feedback (Hu, Koren and Volinsky, ICDM 2008) from the `implicit`
  library, the usual production batch recommender: retrained at the start of each log day on every
  positive before that day; it serves that day from the nightly user and item factors, so a user with
  no positive before today is a miss and today's items score 0 (ties: the older item first).
- The same nightly item factors with the user folded in at request time from every positive so far,
  today's included (`NightlyAls.fold_in_row`: `implicit`'s `recalculate_user`, the closed-form
  least-squares step for one user with the item factors fixed): the hybrid a team would try next.

Knobs are chosen by `bench.quality`'s tuning pass on the part of the log before its test period only.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400


class Popularity:
    """Positive interactions per item in the last `window_s` seconds of the log (None: all time)."""

    def __init__(self, items: int, window_s: int | None) -> None:
        self.window_s = window_s
        self.counts = np.zeros(items, dtype=np.float64)
        self._recent: deque[tuple[int, int]] = deque()  # (time, item), only with a window

    def observe(self, item: int, now_s: int) -> None:
        """One positive on `item` at log time `now_s`."""
        self.counts[item] += 1.0
        if self.window_s is not None:
            self._recent.append((now_s, item))

    def row(self, now_s: int, arrived: int) -> np.ndarray:
        """Every arrived item's count in the window ending at `now_s`; equal counts rank the older item first."""
        if self.window_s is not None:
            while self._recent and self._recent[0][0] <= now_s - self.window_s:
                self.counts[self._recent.popleft()[1]] -= 1.0
        return self.counts[:arrived] - np.arange(arrived, dtype=np.float64) * 1e-9


@dataclass(frozen=True, slots=True)
class AlsParams:
    """`implicit.als.AlternatingLeastSquares`'s knobs. Each positive enters the matrix as 1 (repeats summed);
    `implicit` weighs a stored value x with confidence alpha * x against 1 for every unobserved pair."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    seed: int = 0

    def label(self) -> str:
        return f"factors={self.factors} reg={self.regularization:g} alpha={self.alpha:g} iters={self.iterations}"


class NightlyAls:
    """ALS retrained once per log day on every positive before that day, served from its factors.

    `end_of_day` marks midnight (the positives observed so far are what the nightly job sees); the
    training itself runs when the day's first query needs it, so days without a query cost nothing.
    """

    def __init__(self, users: int, items: int, params: AlsParams = AlsParams()) -> None:
        self.params = params
        self.users, self.items = users, items
        self._rows: list[int] = []  # every positive so far, as (user, item) pairs
        self._cols: list[int] = []
        self._midnight = 0  # positives observed before the current day began
        self._trained_on = 0  # positives in the matrix of the last training
        self.user_factors: np.ndarray | None = None  # users x factors, from the last training
        self.item_factors: np.ndarray | None = None
        self._trained_users: np.ndarray = np.zeros(users, dtype=bool)  # users with a positive in that matrix
        self._model: object | None = None
        self.trainings = 0

    def observe(self, user: int, item: int) -> None:
        """One positive; it reaches the factors with the first training after the next `end_of_day`."""
        self._rows.append(user)
        self._cols.append(item)

    def matrix(self, upto: int | None = None) -> object:
        """The user x item matrix of the first `upto` positives (default all), repeats summed (scipy CSR)."""
        from scipy.sparse import csr_matrix

        n = len(self._rows) if upto is None else upto
        data = np.ones(n, dtype=np.float32)
        return csr_matrix((data, (self._rows[:n], self._cols[:n])), shape=(self.users, self.items), dtype=np.float32)

    def end_of_day(self) -> None:
        """Midnight: every positive observed so far belongs to the next nightly training."""
        self._midnight = len(self._rows)

    def _train(self) -> None:
        """The nightly job, if positives arrived before midnight since the last training."""
        if self._midnight == self._trained_on:
            return
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        p = self.params
        # `implicit` runs its own threads; BLAS threads under them only contend (as `implicit` itself warns)
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=p.factors,
                regularization=p.regularization,
                alpha=p.alpha,
                iterations=p.iterations,
                random_state=p.seed,
                num_threads=min(os.cpu_count() or 1, 2),
            )
            model.fit(self.matrix(self._midnight), show_progress=False)
        self._model = model
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        self._trained_users = np.zeros(self.users, dtype=bool)
        self._trained_users[np.unique(self._rows[: self._midnight])] = True
        self._trained_on = self._midnight
        self.trainings += 1

    def row(self, user: int, arrived: int) -> np.ndarray | None:
        """The nightly scores of every arrived item for `user`; None if the last training had no positive
        of theirs (the nightly job knows nothing of them yet)."""
        self._train()
        if self.user_factors is None or self.item_factors is None or not self._trained_users[user]:
            return None
        return self._scores(self.user_factors[user], arrived)

    def fold_in_row(self, user: int, positives: list[int], arrived: int) -> np.ndarray | None:
        """The scores with `user`'s factor recomputed now from `positives` (every positive so far, today's
        included) against the nightly item factors; None before the first training or with no positives."""
        self._train()
        if self._model is None or self.item_factors is None or not positives:
            return None
        from scipy.sparse import csr_matrix

        ones = np.ones(len(positives), dtype=np.float32)
        mine = csr_matrix((ones, ([0] * len(positives), positives)), shape=(1, self.items), dtype=np.float32)
        factor = np.asarray(self._model.recalculate_user(user, mine)).reshape(-1)  # type: ignore[attr-defined]
        return self._scores(factor, arrived)

    def _scores(self, factor: np.ndarray, arrived: int) -> np.ndarray:
        assert self.item_factors is not None
        scores = self.item_factors[:arrived] @ factor
        return scores.astype(np.float64) - np.arange(arrived, dtype=np.float64) * 1e-9
