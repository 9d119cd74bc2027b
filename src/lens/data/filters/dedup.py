"""Near-duplicate removal on L2-normalised image embeddings (cosine = inner product).

Samples are decided in order: one is dropped when its cosine to an earlier KEPT sample exceeds the
threshold (0.985, the paper's, on CLIP ViT-L/14). Its score is that largest cosine (None when nothing
came before). Search is exact (numpy) while the kept set is small, and switches to a FAISS HNSW index
(approximate, sub-linear) once it holds `faiss_above` vectors; inside a batch, pairs are compared exactly.
"""

from __future__ import annotations

import numpy as np

DEDUP_MAX = 0.985
FAISS_ABOVE = 20_000


class NearDupIndex:
    def __init__(self, threshold: float = DEDUP_MAX, faiss_above: int = FAISS_ABOVE):
        self.threshold, self.faiss_above = threshold, faiss_above
        self._exact: list[np.ndarray] = []  # kept vectors while small
        self._faiss = None
        self.size = 0

    @property
    def uses_faiss(self) -> bool:
        return self._faiss is not None

    def _search(self, e: np.ndarray) -> np.ndarray:
        """Largest inner product of each row of e (B, D) with the kept set; -inf when empty."""
        if self.size == 0:
            return np.full(len(e), -np.inf, np.float32)
        if self._faiss is not None:
            sims, _ = self._faiss.search(e, 1)  # (B, 1)
            return sims[:, 0]
        return (e @ np.concatenate(self._exact).T).max(axis=1)  # (B, N) -> (B,)

    def _add(self, e: np.ndarray) -> None:
        if len(e) == 0:
            return
        if self._faiss is None and self.size + len(e) > self.faiss_above:
            import faiss

            self._faiss = faiss.IndexHNSWFlat(e.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            self._faiss.hnsw.efSearch = 64
            if self._exact:
                self._faiss.add(np.concatenate(self._exact))
            self._exact = []
        if self._faiss is not None:
            self._faiss.add(e)
        else:
            self._exact.append(e)
        self.size += len(e)

    def add_context(self, e: np.ndarray) -> None:
        """Vectors already kept elsewhere (e.g. finished shards): later samples are compared to them."""
        self._add(np.ascontiguousarray(e, dtype=np.float32))

    def decide(self, e: np.ndarray) -> tuple[list[float | None], list[bool]]:
        """Scores and keep decisions for a batch e (B, D), in order; kept rows join the index."""
        e = np.ascontiguousarray(e, dtype=np.float32)
        prior = self._search(e)  # (B,)
        within = e @ e.T  # (B, B)
        keep: list[bool] = []
        scores: list[float | None] = []
        kept_idx: list[int] = []
        for i in range(len(e)):
            best = max([float(prior[i])] + [float(within[i, j]) for j in kept_idx])
            ok = best <= self.threshold
            scores.append(None if best == -np.inf else best)
            keep.append(ok)
            if ok:
                kept_idx.append(i)
        self._add(e[kept_idx])
        return scores, keep
