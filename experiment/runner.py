"""The protocol (issue 4 / method.md): iteration 0 evaluates every method with un-finetuned
agents; then, L times: debate (or answer) on the train questions with each method's current
agents -> build each method's data -> train its adapters -> evaluate every method on the test
questions, with diversity. Every finished phase is checkpointed in state.json."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from experiment import datasets as data
from experiment.adapters import Trainer, society_version, train_method
from experiment.collect import Need, collect, plan
from experiment.config import ExperimentConfig, Runtime
from experiment.diversity import cross_nll, embedding_dissimilarity
from experiment.likelihood import Scorer
from experiment.methods import MethodSpec, Play
from experiment.progress import Bars
from experiment.report import write_report
from experiment.server import Endpoint, inference
from experiment.state import Society, State
from experiment.views import consensus, score_play
from maft.inference_client import InferenceClient
from maft.tasks import Problem, Task, get_task


@dataclass
class Run:
    """One experiment in progress."""

    config: ExperimentConfig
    runtime: Runtime
    state: State
    endpoint: Endpoint
    bars: Bars
    client: InferenceClient
    task: Task
    scorer: Scorer
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    measured: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = field(
        default_factory=dict)

    @property
    def base(self) -> Society:
        """Every agent the un-finetuned base model."""
        names = (self.endpoint.base_name,) * self.config.agents
        return Society(names, names)

    def need(self, spec: MethodSpec, split: str, play: Play, society: Society) -> Need:
        """What `spec` asks for with `society` on `split`."""
        return Need(split, play, society.generators, society.critics,
                    spec.summarizes(self.config.summarize) and play == "debate")

    def register(self, need: Need) -> dict[str, Any]:
        """The state's entry of a collection, created if new (with the society that debates)."""
        entry = self.state.data["collections"].setdefault(need.key(self.config),
                                                          {"need": need.to_json()})
        entry.setdefault("society_version", society_version(need.players(self.config)))
        return entry

    def known(self) -> list[Need]:
        """Every collection registered so far (finished or not)."""
        return [Need.from_json(c["need"]) for c in self.state.data["collections"].values()]

    async def records(self, need: Need, problems: list[Problem] | None = None,
                      task: Task | None = None) -> list[dict[str, Any]]:
        """The debates of a registered collection, running the missing ones."""
        key, entry = need.key(self.config), self.register(need)
        problems = problems if problems is not None else self.problems[need.split]
        start = time.monotonic()
        with self.bars.bar(f"debates {key}", len(problems)) as bar:
            out = await collect(need, problems=problems, task=task or self.task,
                                config=self.config, backend=self.client,
                                path=self.runtime.out_dir / "collections" / f"{key}.jsonl",
                                base_name=self.endpoint.base_name,
                                concurrency=self.runtime.concurrency, progress=bar)
        if "stats" not in entry:
            turns = [t for r in out for t in r["turns"]]
            entry["stats"] = {"debates": len(out), "calls": len(turns),
                              "completion_tokens": sum(t["completion_tokens"] for t in turns),
                              "truncated": sum(t["finish_reason"] == "length" for t in turns),
                              "seconds": round(time.monotonic() - start, 1)}
        self.state.save()
        return out

    async def gather(self, wants: dict[str, Need]
                     ) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """(collection key, records) for each method's want, sharing collections wherever one
        serves another."""
        new, source = plan(list(wants.values()), self.known())
        for need in new:
            self.register(need)
        self.state.save()
        found: dict[Need, list[dict[str, Any]]] = {}
        for need in dict.fromkeys(source[w] for w in wants.values()):
            found[need] = await self.records(need)
        return {m: (source[w].key(self.config), found[source[w]]) for m, w in wants.items()}


async def evaluate(run: Run, iteration: int, specs: list[MethodSpec]) -> None:
    """Score each method's current agents on the test questions, then its diversity."""
    todo = [s for s in specs if not run.state.done(f"diversity/{s.key}/{iteration}")]
    societies = {s.key: run.state.society(s.key, iteration) or run.base for s in todo}
    wants = {s.key: run.need(s, "test", s.play, societies[s.key]) for s in todo}
    found = await run.gather(wants)
    for spec in todo:
        key, records = found[spec.key]
        result = score_play(records, spec.play, 1 if spec.play == "single" else run.config.agents,
                            run.task)
        result["collection"] = key
        run.state.finish(f"eval/{spec.key}/{iteration}", result)
        run.bars.log(f"it{iteration} {spec.label}: {result['accuracy']:.3f} "
                     f"± {result['stderr']:.3f}")
        shared = (key, spec.play, societies[spec.key].generators)  # same debates and agents
        if shared not in run.measured:
            run.measured[shared] = await diversity(run, spec, records, societies[spec.key])
        run.state.finish(f"diversity/{spec.key}/{iteration}", run.measured[shared])


async def diversity(run: Run, spec: MethodSpec, records: list[dict[str, Any]],
                    society: Society) -> dict[str, Any]:
    """Consensus, embedding dissimilarity and cross-agent NLL of a multi-agent play."""
    if spec.play == "single":
        return {}
    c = run.config
    shares = [consensus(r, "majority", c.agents, run.task) for r in records]
    out: dict[str, Any] = {"consensus_round1": sum(s or 0 for s in shares) / len(shares)}
    if c.embeddings:
        out["embedding_dissimilarity"] = await asyncio.to_thread(
            embedding_dissimilarity, records, c.agents)
    if c.nll and c.diversity_questions:
        with run.bars.bar(f"nll {spec.key}", 1) as bar:
            out.update(await asyncio.to_thread(cross_nll, records[:c.diversity_questions],
                                               society.generators, run.scorer))
            bar(1, 1)
    return out


async def learn_data(run: Run, spec: MethodSpec, iteration: int,
                     records: list[dict[str, Any]], key: str
                     ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The method's datasets from its train-split records (STaR adds its hinted retries)."""
    if spec.learn != "star":
        version = run.state.data["collections"][key]["society_version"]  # see register
        return data.curated(records, spec, run.config, run.task, key, version)
    wrong = data.star_wrong(records, run.task)
    hinted: list[dict[str, Any]] = []
    if wrong:
        society = run.state.society(spec.key, iteration - 1) or run.base
        problems = [Problem(records[i]["question"], records[i]["reference"]) for i in wrong]
        hint_task = data.HintedTask(run.task, {p.question: p.answer for p in problems})
        need = run.need(spec, "train-hint", "single", society)
        hinted = await run.records(need, problems, hint_task)
    return data.star(records, hinted, run.task)


def _save_examples(run: Run, spec: MethodSpec, iteration: int,
                   slots: dict[str, list[dict[str, Any]]]) -> None:
    folder = run.runtime.out_dir / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    for slot, examples in slots.items():
        path = folder / f"{spec.key}-it{iteration}-{slot}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in examples))


async def train(run: Run, iteration: int, specs: list[MethodSpec], trainer: Trainer) -> None:
    """One training iteration of every trainable method."""
    todo = [s for s in specs if s.trains and not run.state.done(f"train/{s.key}/{iteration}")]
    before = {s.key: run.state.society(s.key, iteration - 1) or run.base for s in todo}
    wants = {s.key: run.need(s, "train", s.learn_play, before[s.key]) for s in todo}
    found = await run.gather(wants)
    for spec in todo:
        key, records = found[spec.key]
        slots, stats = await learn_data(run, spec, iteration, records, key)
        stats["collection"] = key
        _save_examples(run, spec, iteration, slots)
        run.bars.log(f"it{iteration} {spec.label}: training on {stats['sizes']}")
        society, report = await asyncio.to_thread(
            train_method, trainer, spec, iteration, slots, before[spec.key],
            lambda slot: run.bars.tracker(f"train {slot} it{iteration}"))
        run.state.set_society(spec.key, iteration, society)
        run.state.finish(f"train/{spec.key}/{iteration}", {"data": stats, "adapters": report})


async def execute(run: Run, trainer: Trainer) -> None:
    """Iteration 0 (every method un-finetuned), then L train/evaluate iterations."""
    specs = run.config.specs()
    await evaluate(run, 0, specs)
    write_report(run.runtime.out_dir)
    for iteration in range(1, run.config.iterations + 1):
        await train(run, iteration, specs, trainer)
        await evaluate(run, iteration, [s for s in specs if s.trains])
        write_report(run.runtime.out_dir)


def run_experiment(config: ExperimentConfig, runtime: Runtime, command: list[str],
                   bars: Bars | None = None) -> State:
    """Run (or resume) an experiment into runtime.out_dir; return its final state."""
    state = State.open(runtime.out_dir, config, runtime, command)
    task = get_task(config.task, **config.task_options)
    problems = {"train": task.problems(config.train_size, seed=config.train_seed, split="train"),
                "test": task.problems(config.test_size, seed=config.test_seed, split="test")}
    with bars or Bars() as progress, inference(runtime, config.seed) as endpoint:
        trainer = Trainer(config, runtime, state.run_id, endpoint.base_name,
                          endpoint.served_model_path)
        state.data.setdefault("servers", []).append(
            {"url": endpoint.url, "dtype": endpoint.dtype, "model": endpoint.served_model_path})
        state.save()

        async def main() -> None:
            # A busy CPU server can take long to accept a connection; an offline run can wait.
            client = InferenceClient(endpoint.url, timeout=runtime.request_timeout_s,
                                     connect_timeout=120.0, api_key=endpoint.api_key)
            try:
                scorer = Scorer(runtime.model_path, trainer.local_dir, endpoint.base_name)
                run = Run(config, runtime, state, endpoint, progress, client, task, scorer,
                          problems)
                await execute(run, trainer)
            finally:
                await client.aclose()

        asyncio.run(main())
    return state
