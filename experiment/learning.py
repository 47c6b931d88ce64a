"""What the trained methods learned from, per iteration: the labels of their train debates
(by final-round consensus, by source, the drops), each adapter's dataset and loss per epoch,
the responses cut at the token limit, and the same debates curated under the old rules
(plurality vote, truncated responses kept) and the run's.

Label verdicts and the before/after curation are recomputed from the debates (collections/ or
the digest: the same numbers) with the product's curation; sources, drops and compositions of
what was actually trained come from the state's train phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiment.adapters import society_version
from experiment.collect import Need
from experiment.datasets import COMPOSITION, Curated, composition, curation
from experiment.digest import Labels, Records
from experiment.labels import Verdict
from experiment.methods import SPECS, Play
from experiment.state import State
from experiment.tables import iterations, phase
from experiment.views import final_vote, truncated_share
from maft.curation import DROP_REASONS
from maft.enums import LabelSource
from maft.tasks import Task

CURATED = ("majority", "pooled", "per_agent")  # the learners whose labels curation gives


@dataclass
class Relabelled:
    """One trained method's train debates of one iteration, curated under both rule sets."""

    method: str
    iteration: int
    key: str
    records: list[dict[str, Any]]
    after: Curated  # the run's rules (what it trained on)
    before: Curated  # majority="plurality", truncated responses kept


def collection_society(state: State, key: str) -> int:
    """The society version of the agents that held a collection's debates (computed from its
    agents for runs that did not record it)."""
    entry = state.data["collections"].get(key, {})
    if "society_version" in entry or "need" not in entry:
        return int(entry.get("society_version", 0))
    return society_version(Need.from_json(entry["need"]).players(state.config))


def relabel(state: State, debates: Records, task: Task) -> list[Relabelled]:
    """Each curated method's train debates of each iteration under both rule sets."""
    config, out = state.config, []
    for spec in config.specs():
        for it in range(1, config.iterations + 1):
            train = phase(state, "train", spec.key, it)
            key = train["data"].get("collection") if train else None
            if spec.learn not in CURATED or key not in debates:
                continue
            records, version = debates[key], collection_society(state, key)
            both = [curation(records, spec, config, task, key, version, old_rules=old)
                    for old in (False, True)]
            out.append(Relabelled(spec.key, it, key, records, *both))
    return out


def digest_labels(relabelled: list[Relabelled]) -> Labels:
    """Each train collection's verdicts per method (the run's rules), for the digest."""
    out: Labels = {}
    for r in relabelled:
        out.setdefault(r.key, {})[r.method] = r.after.verdicts
    return out


def by_consensus(records: list[dict[str, Any]], found: list[Verdict], play: Play, agents: int,
                 task: Task) -> dict[str, dict[str, int]]:
    """Per final-round consensus level k/N: debates, labelled ones, labels equal to the
    reference."""
    levels: dict[int, dict[str, int]] = {}
    for record, verdict in zip(records, found, strict=True):
        vote = final_vote(record, play, agents, task)
        cell = levels.setdefault(vote.votes if vote else 0,
                                 {"debates": 0, "labelled": 0, "right": 0})
        cell["debates"] += 1
        if "label" in verdict:
            cell["labelled"] += 1
            cell["right"] += task.is_correct(verdict["label"], record["reference"])
    return {f"{k}/{agents}": levels[k] for k in sorted(levels)}


def _summary(found: Curated) -> dict[str, Any]:
    truncated = sum(c["truncated"] for c in found.stats["composition"].values())
    return {**found.stats["labels"], "sizes": found.stats["sizes"],
            "dropped": found.stats["curation"]["dropped"], "truncated": truncated}


def curation_results(relabelled: list[Relabelled], agents: int,
                     task: Task) -> dict[str, dict[str, Any]]:
    """results.json's "curation": per method and iteration, label accuracy by consensus level
    and the before/after summaries."""
    out: dict[str, dict[str, Any]] = {}
    for r in relabelled:
        play = SPECS[r.method].learn_play
        out.setdefault(r.method, {})[str(r.iteration)] = {
            "collection": r.key, "society_version": r.after.stats["society_version"],
            "by_consensus": by_consensus(r.records, r.after.verdicts, play, agents, task),
            "before": _summary(r.before), "after": _summary(r.after)}
    return out


def _cut(debates: Records, key: str | None, play: Play, agents: int) -> float | None:
    if key not in debates:
        return None
    return truncated_share(debates[key], play, 1 if play == "single" else agents)


def truncation(state: State, debates: Records) -> dict[str, dict[str, Any]]:
    """Per method and iteration: the share of its model calls cut at the token limit, on its
    train debates (what it learned from) and its test debates."""
    config, out = state.config, dict[str, dict[str, Any]]()
    for spec in config.specs():
        for it in iterations(state, spec.key):
            train, test = phase(state, "train", spec.key, it), phase(state, "eval", spec.key, it)
            row = {"train": _cut(debates, train and train["data"].get("collection"),
                                 spec.learn_play, config.agents),
                   "test": _cut(debates, test.get("collection"), spec.play, config.agents)}
            if any(v is not None for v in row.values()):
                out.setdefault(spec.key, {})[str(it)] = row
    return out


def _pct(part: float | None, digits: int = 0) -> str:
    return "–" if part is None else f"{100 * part:.{digits}f} %"


def _slots(*groups: Any) -> list[str]:
    """Adapter slots in training order (all, gen0.., crit0..), whatever order they came in."""
    def order(slot: str) -> tuple[bool, int]:
        number = slot.removeprefix("gen").removeprefix("crit")
        return slot.startswith("crit"), int(number) if number.isdigit() else -1

    return sorted({s for group in groups for s in group}, key=order)


def _labels(c: dict[str, int]) -> str:
    debates = f"{c['debates']} debate{'s' * (c['debates'] != 1)}"
    if not c["labelled"]:
        return f"none labelled ({debates})"
    return f"{_pct(c['right'] / c['labelled'])} ({c['right']}/{c['labelled']}; {debates})"


def labels_table(state: State) -> list[str]:
    """Label sources and drops of what each method trained on (from the train phases)."""
    sources, drops = [str(s) for s in LabelSource], [d for d in DROP_REASONS if d != "other_task"]
    lines = ["| method | iteration | society | debates | " + " | ".join(sources + drops)
             + " | label accuracy (labelled) | vote accuracy (all) |",
             "|---" * (len(sources) + len(drops) + 6) + "|"]
    for spec in state.config.specs():
        for it in range(1, state.config.iterations + 1):
            train = phase(state, "train", spec.key, it)
            c = train["data"].get("curation") if train else None
            if c:
                d = train["data"]
                cells = [c["label_sources"].get(s, 0) for s in sources] + \
                    [c["dropped"].get(r, 0) for r in drops]
                lines.append(f"| {spec.label} | {it} | {d.get('society_version', '–')} | "
                             f"{c['debates_seen']} | " + " | ".join(map(str, cells)) + " | "
                             f"{_pct(d.get('label_accuracy'))} | "
                             f"{_pct(d.get('vote_accuracy'))} |")
    return lines


def consensus_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Label accuracy per final-round consensus level: % right (right / labelled; debates)."""
    levels = sorted({k for its in results.values() for r in its.values()
                     for k in r["by_consensus"]}, key=lambda k: int(k.split("/")[0]))
    heads = ["method", "iteration", *(f"consensus {k}" for k in levels), "all"]
    lines = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for method, its in results.items():
        for it, r in its.items():
            cells = [r["by_consensus"].get(k) for k in levels]
            text = [_labels(c) if c else "–" for c in [*cells, r["after"]]]
            lines.append(f"| {SPECS[method].label} | {it} | " + " | ".join(text) + " |")
    return lines


def _losses(metrics: dict[str, Any]) -> str:
    losses = metrics.get("epoch_losses") or []
    if not losses:
        return "–"
    tail = f" → {losses[-1]:.3f}" if len(losses) > 1 else ""
    return f"{losses[0]:.3f}{tail} ({len(losses)} ep.)"


def composition_table(state: State) -> list[str]:
    """Each trained adapter's dataset (G, C−, C+, truncated targets dropped), steps and mean
    loss per epoch (first → last)."""
    lines = ["| method | iteration | adapter | " + " | ".join(COMPOSITION)
             + " | examples | steps | loss per epoch |", "|---" * (len(COMPOSITION) + 6) + "|"]
    for spec in state.config.specs():
        for it in range(1, state.config.iterations + 1):
            train = phase(state, "train", spec.key, it)
            if not train:
                continue
            data, adapters = train["data"], train.get("adapters", {})
            kinds_of = data.get("composition") or composition(
                data.get("curation", {}), spec, state.config.agents)
            for slot in _slots(data.get("sizes", {}), adapters):
                kinds = kinds_of.get(slot, {})
                m = adapters.get(slot, {})
                lines.append(f"| {spec.label} | {it} | {slot} | " + " | ".join(
                    str(kinds.get(k, "–")) for k in COMPOSITION) + f" | "
                    f"{data.get('sizes', {}).get(slot, 0)} | {m.get('steps', '–')} | "
                    f"{_losses(m)} |")
    return lines


def truncation_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Share of model calls cut at max_tokens, per method and iteration."""
    lines = ["| method | iteration | train debates | test debates |", "|---|---|---|---|"]
    for method, its in results.items():
        for it, r in its.items():
            lines.append(f"| {SPECS[method].label} | {it} | {_pct(r.get('train'), 1)} | "
                         f"{_pct(r.get('test'), 1)} |")
    return lines


def _change(before: Any, after: Any) -> str:
    return str(after) if before == after else f"{before} → {after}"


def rules_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The same train debates curated under the old rules (plurality vote, truncated responses
    kept) and the run's: labelled debates, label accuracy, examples per adapter."""
    lines = ["| method | iteration | labelled debates | label accuracy | no majority | "
             "truncated targets dropped | examples per adapter |", "|---|---|---|---|---|---|---|"]
    for method, its in results.items():
        for it, r in its.items():
            b, a = r["before"], r["after"]
            sizes = ", ".join(f"{s} {_change(b['sizes'].get(s, 0), a['sizes'].get(s, 0))}"
                              for s in _slots(a["sizes"], b["sizes"]))
            lines.append(
                f"| {SPECS[method].label} | {it} | {_change(b['labelled'], a['labelled'])} | "
                f"{_change(_pct(b['accuracy']), _pct(a['accuracy']))} | "
                f"{_change(b['dropped']['no_majority'], a['dropped']['no_majority'])} | "
                f"{a['truncated']} | {sizes} |")
    return lines
