"""results.json, results.md and the plots, rebuilt from state.json (`report <dir>` reruns it).

Methods that never train (Base, Majority, Debate) are measured once, at iteration 0, and stand
for every iteration. Trained methods at iteration 0 are their un-finetuned selves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiment.collect import read_records
from experiment.config import ExperimentConfig
from experiment.methods import SPECS
from experiment.state import State
from experiment.views import agent_accuracy, paired
from maft.tasks import get_task

COMPARE = (("maft", "debate"), ("maft", "single_ft"))
DIVERSITY = (("consensus", "consensus"), ("embedding_dissimilarity", "embedding dissim."),
             ("cross_nll", "cross-agent NLL"), ("self_nll", "self NLL"),
             ("kl_to_base", "KL to base"))


def _iterations(state: State, method: str) -> list[int]:
    found = [int(k.split("/")[2]) for k in state.data["phases"]
             if k.startswith(f"eval/{method}/")]
    return sorted(found)


def _eval(state: State, method: str, iteration: int) -> dict[str, Any] | None:
    """A method's evaluation at an iteration (constant methods: their iteration 0)."""
    if not SPECS[method].trains:
        iteration = 0
    phase = f"eval/{method}/{iteration}"
    return state.result(phase) if state.done(phase) else None


def collect_results(state: State) -> dict[str, Any]:
    """Every number of the run, per method and iteration, plus the paired comparisons."""
    config = state.config
    methods: dict[str, Any] = {}
    for spec in config.specs():
        its: dict[str, Any] = {}
        for it in _iterations(state, spec.key):
            entry = {"eval": state.result(f"eval/{spec.key}/{it}")}
            for kind in ("diversity", "train"):
                if state.done(f"{kind}/{spec.key}/{it}"):
                    entry[kind] = state.result(f"{kind}/{spec.key}/{it}")
            its[str(it)] = entry
        methods[spec.key] = {"label": spec.label, "trains": spec.trains, "iterations": its}
    return {"run_id": state.run_id, "command": state.data["command"],
            "config": state.data["config"], "runtime": state.data["runtime"],
            "environment": state.data["environment"], "resumes": state.data["resumes"],
            "collections": state.data["collections"], "methods": methods,
            "comparisons": comparisons(state), "per_agent": per_agent(state)}


def per_agent(state: State) -> dict[str, dict[str, list[list[float]]]]:
    """Per debate method and iteration (trained methods from iteration 1): each agent's accuracy
    per round, read from the collection files next to state.json (skipped where they are not)."""
    config, folder = state.config, state.path.parent / "collections"
    task = get_task(config.task, **config.task_options)
    out: dict[str, dict[str, list[list[float]]]] = {}
    for spec in config.specs():
        if spec.play != "debate":
            continue
        for it in _iterations(state, spec.key):
            if spec.trains != (it > 0):  # iteration 0 of a trained method is plain Debate
                continue
            path = folder / f"{state.result(f'eval/{spec.key}/{it}')['collection']}.jsonl"
            table = agent_accuracy(list(read_records(path).values()), config.agents, task)
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
            ea, eb = _eval(state, a, it), _eval(state, b, it)
            if ea and eb:
                rows[str(it)] = paired(ea["per_question"], eb["per_question"])
        out[f"{a}-{b}"] = rows
    return out


def _pct(e: dict[str, Any] | None) -> str:
    if not e:
        return "–"
    return f"{100 * e['accuracy']:.1f} ± {100 * (e['stderr'] or 0):.1f}"


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
        _pct(_eval(state, s.key, iteration)) for s in specs) + " |"
    return [head, "|---" * (len(specs) + 1) + "|", row]


def iteration_table(state: State) -> list[str]:
    """Accuracy per method (rows) and iteration (columns)."""
    its = range(state.config.iterations + 1)
    lines = ["| method | " + " | ".join(f"it {i}" for i in its) + " |",
             "|---" * (len(its) + 1) + "|"]
    for spec in state.config.specs():
        cells = [_pct(_eval(state, spec.key, i)) for i in its]
        note = "" if spec.trains else " (not trained)"
        lines.append(f"| {spec.label}{note} | " + " | ".join(cells) + " |")
    return lines


def comparison_table(state: State) -> list[str]:
    """Paired differences in accuracy points with their standard errors."""
    lines = ["| comparison | iteration | difference (points) | within noise (≤ 2 SE) |",
             "|---|---|---|---|"]
    for name, rows in comparisons(state).items():
        a, b = name.split("-")
        for it, r in rows.items():
            lines.append(f"| {SPECS[a].label} − {SPECS[b].label} | {it} | "
                         f"{100 * r['diff']:+.1f} ± {100 * r['stderr']:.1f} | "
                         f"{'yes' if r['within_noise'] else 'no'} |")
    return lines


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def diversity_table(state: State) -> list[str]:
    """Diversity per method and iteration (multi-agent plays only)."""
    lines = ["| method | iteration | " + " | ".join(t for _, t in DIVERSITY) + " |",
             "|---" * (len(DIVERSITY) + 2) + "|"]
    for spec in state.config.specs():
        for it in _iterations(state, spec.key):
            d = state.result(f"diversity/{spec.key}/{it}") if state.done(
                f"diversity/{spec.key}/{it}") else {}
            if not d:
                continue
            values = {**d, "consensus": state.result(f"eval/{spec.key}/{it}").get("consensus")}
            lines.append(f"| {spec.label} | {it} | " + " | ".join(
                _num(values.get(k)) for k, _ in DIVERSITY) + " |")
    return lines


def training_table(state: State) -> list[str]:
    """Per trained method and iteration: examples per adapter and how often labels were right."""
    lines = ["| method | iteration | examples per adapter | label accuracy |", "|---|---|---|---|"]
    for spec in state.config.specs():
        for it in range(1, state.config.iterations + 1):
            if state.done(f"train/{spec.key}/{it}"):
                d = state.result(f"train/{spec.key}/{it}")["data"]
                sizes = ", ".join(f"{k} {v}" for k, v in d["sizes"].items())
                lines.append(f"| {spec.label} | {it} | {sizes} | "
                             f"{100 * d['label_accuracy']:.0f} % |")
    return lines


def agent_table(tables: dict[str, dict[str, list[list[float]]]]) -> list[str]:
    """Each agent's accuracy per round (`per_agent`'s tables): generators answer round 1,
    critics the later rounds."""
    if not tables:
        return ["(collection files not present)"]
    rounds = max(len(t) for m in tables.values() for t in m.values())
    lines = ["| method | iteration | " + " | ".join(
        f"round {k} ({'generators' if k == 1 else 'critics'})" for k in range(1, rounds + 1))
        + " |", "|---" * (rounds + 2) + "|"]
    for method, its in tables.items():
        for it, table in its.items():
            cells = [" / ".join(f"{100 * a:.0f}" for a in row) for row in table]
            lines.append(f"| {SPECS[method].label} | {it} | " + " | ".join(cells) + " |")
    return lines


def markdown(state: State, agents: dict[str, dict[str, list[list[float]]]] | None = None) -> str:
    """results.md; `agents` is `per_agent(state)` when the caller has it already."""
    c = state.config
    model = Path(state.data["runtime"]["model_path"]).name
    first = min(1, c.iterations)
    parts = [f"# MAFT experiment {state.run_id}", "",
             f"{model}; {c.agents} agents, {c.rounds} rounds, summarize={c.summarize}, "
             f"T={c.temperature}, top_p={c.top_p}, max_tokens={c.max_tokens}; "
             f"{c.train_size} train / {c.test_size} test questions (disjoint); "
             f"{c.iterations} finetuning iteration(s). Accuracy % ± standard error.", "",
             f"## Paper layout (after iteration {first})", *paper_table(state, model, first), ""]
    if c.iterations > 1:
        parts += [f"## After iteration {c.iterations}", *paper_table(state, model, c.iterations),
                  ""]
    parts += ["## Accuracy per iteration", *iteration_table(state), "",
              "## Paired differences (same test questions)", *comparison_table(state), "",
              "## Each agent's accuracy per round (test questions, %, agent 0 / 1 / ...)",
              *agent_table(per_agent(state) if agents is None else agents), "",
              "## Diversity (test questions, round-1 responses)", *diversity_table(state), "",
              "## Training data", *training_table(state), "",
              "## Command", "```", " ".join(state.data["command"]), "```", ""]
    return "\n".join(parts)


def write_report(out_dir: Path) -> dict[str, Any]:
    """Write results.json, results.md and the PNG plots into `out_dir`."""
    from experiment.plots import plot_accuracy, plot_diversity

    state = State.load(out_dir)
    results = collect_results(state)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out_dir / "results.md").write_text(markdown(state, results["per_agent"]))
    plot_accuracy(results, out_dir / "accuracy_vs_iteration.png")
    plot_diversity(results, out_dir / "diversity_vs_iteration.png")
    return results
