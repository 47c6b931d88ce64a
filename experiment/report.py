"""results.json, results.md, the plots and the debates' digest, rebuilt from state.json and
the debates (`report <dir>` reruns it): the debates come from collections/ where it is, else
from digest.jsonl.gz, which is rewritten from collections/ whenever that folder is present.

Methods that never train (Base, Majority, Debate) are measured once, at iteration 0, and stand
for every iteration. Trained methods at iteration 0 are their un-finetuned selves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiment import learning
from experiment import tables as t
from experiment.digest import Records, load_debates, write_digest
from experiment.state import State
from experiment.views import agent_accuracy, paired
from maft.tasks import get_task

COMPARE = (("maft", "debate"), ("maft", "single_ft"))


def per_agent(state: State, debates: Records) -> dict[str, dict[str, list[list[float]]]]:
    """Per debate method and iteration (trained methods from iteration 1): each agent's accuracy
    per round on the test questions (methods whose debates are not at hand are skipped)."""
    config = state.config
    task = get_task(config.task, **config.task_options)
    out: dict[str, dict[str, list[list[float]]]] = {}
    for spec in config.specs():
        if spec.play != "debate":
            continue
        for it in t.iterations(state, spec.key):
            if spec.trains != (it > 0):  # iteration 0 of a trained method is plain Debate
                continue
            key = state.result(f"eval/{spec.key}/{it}")["collection"]
            table = agent_accuracy(debates.get(key, []), config.agents, task)
            if table:
                out.setdefault(spec.key, {})[str(it)] = table
    return out


def comparisons(state: State) -> dict[str, Any]:
    """Paired accuracy differences (same test questions) MAFT - Debate, MAFT - single-agent FT."""
    out: dict[str, Any] = {}
    for a, b in COMPARE:
        if a not in state.config.methods or b not in state.config.methods:
            continue
        rows = {}
        for it in range(state.config.iterations + 1):
            ea, eb = t.eval_of(state, a, it), t.eval_of(state, b, it)
            if ea and eb:
                rows[str(it)] = paired(ea["per_question"], eb["per_question"])
        out[f"{a}-{b}"] = rows
    return out


def _methods(state: State) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for spec in state.config.specs():
        its: dict[str, Any] = {}
        for it in t.iterations(state, spec.key):
            entry = {"eval": t.eval_payload(state.result(f"eval/{spec.key}/{it}"))}
            for kind in ("diversity", "train"):
                if state.done(f"{kind}/{spec.key}/{it}"):
                    entry[kind] = state.result(f"{kind}/{spec.key}/{it}")
            its[str(it)] = entry
        methods[spec.key] = {"label": spec.label, "trains": spec.trains, "iterations": its}
    return methods


def collect_results(state: State, debates: Records | None = None,
                    relabelled: list[learning.Relabelled] | None = None) -> dict[str, Any]:
    """Every number of the run, per method and iteration, plus the paired comparisons and what
    the debates tell (per-agent accuracy, labels, truncation, the rules before/after)."""
    config = state.config
    task = get_task(config.task, **config.task_options)
    debates = load_debates(state) if debates is None else debates
    if relabelled is None:
        relabelled = learning.relabel(state, debates, task)
    return {"run_id": state.run_id, "command": state.data["command"],
            "config": config.to_json(), "runtime": state.data["runtime"],
            "environment": state.data["environment"], "resumes": state.data["resumes"],
            "collections": state.data["collections"], "methods": _methods(state),
            "comparisons": comparisons(state), "per_agent": per_agent(state, debates),
            "curation": learning.curation_results(relabelled, config.agents, task),
            "truncation": learning.truncation(state, debates)}


def _setup(state: State, model: str) -> str:
    c = state.config
    labels = c.labels + (f" (share {c.feedback_share:g})" if c.labels == "feedback" else "")
    return (f"{model}; {c.agents} agents, {c.rounds} rounds, summarize={c.summarize}, "
            f"T={c.temperature}, top_p={c.top_p}, max_tokens={c.max_tokens}; "
            f"{c.train_size} train / {c.test_size} test questions (disjoint); "
            f"{c.iterations} finetuning iteration(s); labels {labels}, majority={c.majority}, "
            f"min_consensus={c.min_consensus:g}, critic_loss={c.critic_loss}, w={c.w:.3g}, "
            f"min_steps={c.training.min_steps}. Accuracy % ± standard error.")


def markdown(state: State, results: dict[str, Any] | None = None) -> str:
    """results.md; `results` is `collect_results(state)` when the caller has it already."""
    c, results = state.config, collect_results(state) if results is None else results
    model = Path(state.data["runtime"]["model_path"]).name
    first = min(1, c.iterations)
    parts = [f"# MAFT experiment {state.run_id}", "", _setup(state, model), "",
             f"## Paper layout (after iteration {first})", *t.paper_table(state, model, first),
             ""]
    if c.iterations > 1:
        parts += [f"## After iteration {c.iterations}",
                  *t.paper_table(state, model, c.iterations), ""]
    parts += [
        "## Accuracy per iteration", *t.iteration_table(state), "",
        "## Paired differences (same test questions)", *t.comparison_table(results["comparisons"]),
        "", "## Each agent's accuracy per round (test questions, %, agent 0 / 1 / ...)",
        *t.agent_table(results["per_agent"]), "",
        "## Diversity (test questions)", *t.diversity_table(state), "",
        "## Train labels: sources and drops (what each method trained on)",
        *learning.labels_table(state), "",
        "## Label accuracy by final-round consensus (train debates: labels equal to the "
        "reference, right/labelled, of all debates at that level)",
        *learning.consensus_table(results["curation"]), "",
        "## Curation rules on the same train debates: before (plurality vote, truncated "
        "responses kept) → this run's", *learning.rules_table(results["curation"]), "",
        "## Datasets per adapter (G, C−, C+ examples; truncated targets dropped) and mean "
        "loss per epoch", *learning.composition_table(state), "",
        "## Responses cut at the token limit (share of each play's model calls)",
        *learning.truncation_table(results["truncation"]), "",
        "## Command", "```", " ".join(state.data["command"]), "```", ""]
    return "\n".join(parts)


def write_report(out_dir: Path) -> dict[str, Any]:
    """Write results.json, results.md and the PNG plots into `out_dir`, and the digest of its
    debates where collections/ is present."""
    from experiment.plots import plot_accuracy, plot_diversity

    state = State.load(out_dir)
    config, debates = state.config, load_debates(state)
    relabelled = learning.relabel(state, debates, get_task(config.task, **config.task_options))
    if (out_dir / "collections").is_dir():
        write_digest(state, debates, learning.digest_labels(relabelled))
    results = collect_results(state, debates, relabelled)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out_dir / "results.md").write_text(markdown(state, results))
    plot_accuracy(results, out_dir / "accuracy_vs_iteration.png")
    plot_diversity(results, out_dir / "diversity_vs_iteration.png")
    return results
