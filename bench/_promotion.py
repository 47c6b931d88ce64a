"""Metric 2 of bench/train_throughput.py: seconds from society promotion to the first debate
served by the new society, on the embedded default (`maft up`: gateway + vLLM CPU, SQLite).

Per repetition: publish a new society of 2N adapters (never loaded by vLLM before: new
lora_names), warm debate on the old society, then flip the active-society pointer (what a
training run's publish step does) and immediately POST a debate. Reported: flip -> that debate's
response (it must carry the new lora_names), beside the warm debate's latency on the old
society, so the switching cost (vLLM loading 2N adapters on first use) is their difference.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import _harness as h
import httpx

QUESTION = "Sara has 48 stickers. She gives 12 to her brother. How many stickers are left?"


def _debate(client: httpx.Client, agents: int, max_tokens: int) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    response = client.post("/v1/debates", json={
        "question": QUESTION, "task": "numeric", "agents": agents, "rounds": 2,
        "temperature": 0.0, "max_tokens": max_tokens})
    response.raise_for_status()
    return time.perf_counter() - start, response.json()


def _lora_names(debate: dict[str, Any]) -> set[str]:
    return {r["lora_name"] for rnd in debate["transcript"] for r in rnd["responses"]}


def _one(product: h.Product, client: httpx.Client, src: Path, base: tuple[str, str],
         agents: int, max_tokens: int) -> dict[str, Any]:
    roster = h.install_noop_society(product.home_dir(), src, base_name=base[0], model_root=base[1],
                                    agents=agents, activate=False)
    warm_s, _ = _debate(client, agents, max_tokens)
    flipped = time.perf_counter()
    h.activate(product.home_dir(), roster.society_version, "bench/train_throughput.py")
    debate_s, debate = _debate(client, agents, max_tokens)
    total = time.perf_counter() - flipped
    expected = set(roster.generators) | set(roster.critics)
    if debate["society_version"] != roster.society_version or not _lora_names(debate) <= expected:
        raise RuntimeError(f"first debate after the flip did not use v{roster.society_version}")
    return {"version": roster.society_version, "flip_to_first_debate_s": total,
            "first_debate_s": debate_s, "warm_debate_s": warm_s}


def promotion_to_first_debate(model: Path, *, repeats: int = 3, agents: int = 3,
                              max_tokens: int = 16) -> dict[str, Any]:
    """Start `maft up`, promote `repeats` fresh societies in turn; timings and medians."""
    product = h.Product.start(model)
    try:
        base, src = product.base_model(), h.noop_lora(model)
        first = h.install_noop_society(product.home_dir(), src, base_name=base[0],
                                       model_root=base[1], agents=agents)
        with httpx.Client(base_url=product.gateway_url, timeout=600) as client:
            for _ in range(2):  # load the first society's adapters and compile
                _debate(client, agents, max_tokens)
            runs = [_one(product, client, src, base, agents, max_tokens)
                    for _ in range(repeats)]
    finally:
        product.stop()
    product.remove_home()
    median = {k: statistics.median(r[k] for r in runs)
              for k in ("flip_to_first_debate_s", "first_debate_s", "warm_debate_s")}
    return {"settings": {"agents": agents, "rounds": 2, "max_tokens": max_tokens,
                         "repeats": repeats, "first_version": first.society_version},
            "runs": runs, "median": median, "target_s": 5.0,
            "switch_cost_s": median["first_debate_s"] - median["warm_debate_s"]}


def promotion_table(result: dict[str, Any]) -> str:
    """Metric 2's printed line."""
    m = result["median"]
    ok = "ok" if m["flip_to_first_debate_s"] <= result["target_s"] else "MISS"
    return (f"promotion -> first debate on the new society: {m['flip_to_first_debate_s']:.2f} s "
            f"(target <= {result['target_s']:.0f} s: {ok}); that debate {m['first_debate_s']:.2f} s"
            f" vs a warm debate {m['warm_debate_s']:.2f} s (switching cost "
            f"{result['switch_cost_s']:+.2f} s); median of {len(result['runs'])}")
