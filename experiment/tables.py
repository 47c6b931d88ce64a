"""The accuracy, comparison, diversity and per-agent tables of results.md, and how they read
the state's phases.

Methods that never train (Base, Majority, Debate) are measured once, at iteration 0, and stand
for every iteration. Trained methods at iteration 0 are their un-finetuned selves.
"""

from __future__ import annotations

from typing import Any

from experiment.config import ExperimentConfig
from experiment.methods import SPECS
from experiment.state import State

DIVERSITY = (("consensus_round1", "round-1 consensus"),
             ("consensus_final", "final-round consensus"),
             ("embedding_dissimilarity", "embedding dissim. (round 1)"),
             ("cross_nll", "cross-agent NLL"), ("self_nll", "self NLL"),
             ("kl_to_base", "KL to base"))


def iterations(state: State, method: str) -> list[int]:
    """The iterations at which a method was evaluated."""
    found = [int(k.split("/")[2]) for k in state.data["phases"]
             if k.startswith(f"eval/{method}/")]
    return sorted(found)


def phase(state: State, kind: str, method: str, iteration: int) -> Any:
    """What a finished phase recorded (None: not finished)."""
    name = f"{kind}/{method}/{iteration}"
    return state.result(name) if state.done(name) else None


def eval_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """An evaluation with its consensus named for its round: runs before the rename stored the
    play's last-round consensus as "consensus"."""
    out = dict(payload)
    if "consensus" in out:
        out["consensus_final"] = out.pop("consensus")
    return out


def eval_of(state: State, method: str, iteration: int) -> dict[str, Any] | None:
    """A method's evaluation at an iteration (constant methods: their iteration 0)."""
    found = phase(state, "eval", method, iteration if SPECS[method].trains else 0)
    return eval_payload(found) if found else None


def _pct(e: dict[str, Any] | None) -> str:
    if not e:
        return "–"
    return f"{100 * e['accuracy']:.1f} ± {100 * (e['stderr'] or 0):.1f}"


def num(value: Any, digits: int = 3) -> str:
    """A number for a table cell ("–": none)."""
    return "–" if value is None else f"{value:.{digits}f}"


def task_label(config: ExperimentConfig) -> str:
    """A short description of the task."""
    o = config.task_options
    if config.task == "arithmetic":
        ops = o.get("pattern") or o.get("operators", "")
        return f"arithmetic ({o.get('terms')} terms, '{ops}', operands {o.get('low')}–" \
               f"{int(o.get('high', 0)) - 1})"
    return config.task


def paper_table(state: State, model: str, iteration: int) -> list[str]:
    """Methods as columns, one row per task (the paper's layout) at one iteration."""
    specs = state.config.specs()
    head = "| model, task | " + " | ".join(s.label for s in specs) + " |"
    row = f"| {model}, {task_label(state.config)} | " + " | ".join(
        _pct(eval_of(state, s.key, iteration)) for s in specs) + " |"
    return [head, "|---" * (len(specs) + 1) + "|", row]


def iteration_table(state: State) -> list[str]:
    """Accuracy per method (rows) and iteration (columns)."""
    its = range(state.config.iterations + 1)
    lines = ["| method | " + " | ".join(f"it {i}" for i in its) + " |",
             "|---" * (len(its) + 1) + "|"]
    for spec in state.config.specs():
        cells = [_pct(eval_of(state, spec.key, i)) for i in its]
        note = "" if spec.trains else " (not trained)"
        lines.append(f"| {spec.label}{note} | " + " | ".join(cells) + " |")
    return lines


def comparison_table(comparisons: dict[str, Any]) -> list[str]:
    """Paired differences in accuracy points with their standard errors."""
    lines = ["| comparison | iteration | difference (points) | within noise (≤ 2 SE) |",
             "|---|---|---|---|"]
    for name, rows in comparisons.items():
        a, b = name.split("-")
        for it, r in rows.items():
            lines.append(f"| {SPECS[a].label} − {SPECS[b].label} | {it} | "
                         f"{100 * r['diff']:+.1f} ± {100 * r['stderr']:.1f} | "
                         f"{'yes' if r['within_noise'] else 'no'} |")
    return lines


def diversity_table(state: State) -> list[str]:
    """Diversity per method and iteration (multi-agent plays only): round-1 consensus (the
    independent answers), final-round consensus (the play's last round: the debate's final
    round, round 1 for Majority), and the round-1 responses' dissimilarity and likelihoods."""
    lines = ["| method | iteration | " + " | ".join(t for _, t in DIVERSITY) + " |",
             "|---" * (len(DIVERSITY) + 2) + "|"]
    for spec in state.config.specs():
        for it in iterations(state, spec.key):
            d = phase(state, "diversity", spec.key, it)
            if not d:
                continue
            values = {**d, **eval_payload(state.result(f"eval/{spec.key}/{it}"))}
            lines.append(f"| {spec.label} | {it} | " + " | ".join(
                num(values.get(k)) for k, _ in DIVERSITY) + " |")
    return lines


def agent_table(tables: dict[str, dict[str, list[list[float]]]]) -> list[str]:
    """Each agent's accuracy per round (`per_agent`'s tables): generators answer round 1,
    critics the later rounds."""
    if not tables:
        return ["(no debates: neither collections/ nor digest.jsonl.gz is present)"]
    rounds = max(len(t) for m in tables.values() for t in m.values())
    lines = ["| method | iteration | " + " | ".join(
        f"round {k} ({'generators' if k == 1 else 'critics'})" for k in range(1, rounds + 1))
        + " |", "|---" * (rounds + 2) + "|"]
    for method, its in tables.items():
        for it, table in its.items():
            cells = [" / ".join(f"{100 * a:.0f}" for a in row) for row in table]
            lines.append(f"| {SPECS[method].label} | {it} | " + " | ".join(cells) + " |")
    return lines
