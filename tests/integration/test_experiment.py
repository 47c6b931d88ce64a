"""`maft experiment` end to end on real parts: the tiny vLLM server (adapters resolved from its
store), real PEFT training, real curation, embeddings and likelihoods, on a few questions.

The tiny model is random, so its answers are forced into the task's format with vLLM's
structured outputs (a regex): products of six 0/1 operands, answered `\\boxed{0}` or `\\boxed{1}`,
right about half of the time, so every method gets some data to learn from.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from experiment import adapters as adapters_module
from experiment.collect import read_records
from experiment.config import ExperimentConfig, Runtime, TrainingConfig
from experiment.digest import DIGEST_FILE
from experiment.labels import feedback_questions
from experiment.methods import ALL_METHODS
from experiment.report import write_report
from experiment.runner import run_experiment
from experiment.state import State
from tests.fixtures.vllm import TEST_MAX_RANK, VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.training]
TASK = {"terms": 6, "pattern": "*****", "low": 0, "high": 2}
FORCE = {"structured_outputs": {"regex": r"\\boxed\{[01]\}"}}


def config(**changes: Any) -> ExperimentConfig:
    """Tiny everything: 2 agents, 2 rounds, 8-token answers, one optimizer step per adapter;
    12 train questions, so that (with strict majorities: a 1-1 split labels nothing) every
    adapter the tests name gets data."""
    base: dict[str, Any] = dict(
        task="arithmetic", task_options=TASK, train_size=12, test_size=2, iterations=1,
        methods=ALL_METHODS, agents=2, rounds=2, summarize=True, temperature=1.0, top_p=1.0,
        max_tokens=8, sampling_extra=FORCE, w=0.0, diversity_questions=2,
        training=TrainingConfig(max_steps=1, batch_size=2, max_seq_len=512, dtype="float32"))
    return ExperimentConfig(**{**base, **changes})


def runtime(out: Path, server: VllmServer) -> Runtime:
    """Use the fixture's running server and its store."""
    return Runtime(out_dir=out, model_path=server.model_dir, base_model_name=server.served_name,
                   inference_url=server.url, adapter_store=server.store.root,
                   max_lora_rank=TEST_MAX_RANK, concurrency=8)


def turns_of(out: Path, collection: str) -> list[dict[str, Any]]:
    """Every turn of a collection."""
    records = read_records(out / "collections" / f"{collection}.jsonl")
    return [t for r in records.values() for t in r["turns"]]


def _check_labels_and_digest(out: Path, results: dict[str, Any], tmp_path: Path) -> None:
    """Feedback on half the train questions labels them; the digest holds every debate and
    rebuilds the same report without collections/."""
    fed = feedback_questions(12, 0.5, seed=0)
    for name in ("single_ft", "maft", "maft_wo_critic", "maft_wo_summary"):
        data = results["methods"][name]["iterations"]["1"]["train"]["data"]
        assert data["curation"]["label_sources"]["feedback"] == len(fed) == 6
        assert data["society_version"] == 0 and data["labels"]["debates"] == 12
    majority = results["methods"]["majority_ft"]["iterations"]["1"]["train"]["data"]
    assert majority["curation"]["label_sources"]["feedback"] == 0  # its own vote
    maft_eval = results["methods"]["maft"]["iterations"]["1"]["eval"]["collection"]
    assert results["collections"][maft_eval]["society_version"] == 1
    assert results["curation"]["maft"]["1"]["after"]["labelled"] >= 6  # feedback always labels
    lines = [json.loads(x) for x in gzip.decompress((out / DIGEST_FILE).read_bytes())
             .decode().splitlines()[1:]]
    assert len(lines) == sum(c["stats"]["debates"] for c in results["collections"].values())
    maft_train = results["methods"]["maft"]["iterations"]["1"]["train"]["data"]["collection"]
    verdicts = {x["i"]: x["l"]["maft"] for x in lines if x["c"] == maft_train}
    assert len(verdicts) == 12 and {i for i, v in verdicts.items()
                                    if isinstance(v, list) and v[1] == "feedback"} == fed
    print(f"digest: {(out / DIGEST_FILE).stat().st_size} bytes, {len(lines)} debates; "
          f"collections: {sum(p.stat().st_size for p in (out / 'collections').iterdir())} bytes")
    committed = tmp_path / "committed"
    shutil.copytree(out, committed, ignore=shutil.ignore_patterns(
        "collections", "adapters", "datasets", "store"))
    assert write_report(committed) == results
    assert (committed / "results.md").read_text() == (out / "results.md").read_text()


def test_every_method_trains_its_own_adapters_and_is_evaluated(
        vllm_tiny: VllmServer, tmp_path: Path) -> None:
    out = tmp_path / "xp"
    cfg = config(nll=False, embeddings=False, labels="feedback", feedback_share=0.5)
    state = run_experiment(cfg, runtime(out, vllm_tiny), ["test"])
    results = json.loads((out / "results.json").read_text())
    methods = results["methods"]
    for name in ALL_METHODS:
        its = methods[name]["iterations"]
        assert its["0"]["eval"]["n"] == 2
        assert ("1" in its) == methods[name]["trains"]
    base = {m: methods[m]["iterations"]["0"]["eval"]["collection"] for m in ALL_METHODS}
    assert base["base"] == base["majority"] == base["debate"] == base["maft"]  # shared debates
    assert base["maft_wo_summary"] != base["maft"]  # that one debates without summaries
    summaries = [t for t in turns_of(out, base["debate"]) if t["role"] == "summarizer"]
    assert summaries and not [t for t in turns_of(out, base["maft_wo_summary"])
                              if t["role"] == "summarizer"]

    _check_labels_and_digest(out, results, tmp_path)

    run_id = state.run_id
    maft = state.society("maft", 1)
    assert maft is not None and maft.generators[0] == f"xp-{run_id}-maft-gen0-it1"
    single = state.society("single_ft", 1)
    assert single is not None and set(single.generators + single.critics) == {
        f"xp-{run_id}-single-ft-all-it1"}
    no_critic = state.society("maft_wo_critic", 1)
    assert no_critic is not None and set(no_critic.critics) == {vllm_tiny.served_name}
    star = state.society("star", 1)
    assert star is not None and star.generators[0] == f"xp-{run_id}-star-all-it1"
    for name in state.data["societies"]:
        society = state.society(name, 1)
        assert society is not None
        for adapter in {*society.generators, *society.critics} - {vllm_tiny.served_name}:
            assert vllm_tiny.store.exists(adapter) and not adapter.startswith(("gen-", "crit-"))
    # The finetuned agents answered the test questions at iteration 1.
    maft_eval = methods["maft"]["iterations"]["1"]["eval"]["collection"]
    served = {(t["role"], t["agent_index"]): t["lora_name"] for t in turns_of(out, maft_eval)}
    assert served["generator", 0] == maft.generators[0]
    assert served["critic", 1] == maft.critics[1]
    # Each MAFT generator learned only from its own first-round answers (a 1-1 split of two
    # agents has no strict majority, so a generator may have no data: then it is not trained).
    train = methods["maft"]["iterations"]["1"]["train"]
    train_turns = [t for name in results["collections"] if name.startswith("train-debate")
                   for t in turns_of(out, name) if t["round"] == 1]
    for n in range(2):
        examples = [json.loads(line) for line in
                    (out / "datasets" / f"maft-it1-gen{n}.jsonl").read_text().splitlines()]
        assert train["adapters"][f"gen{n}"]["trained"] == bool(examples)
        assert len(examples) == train["data"]["curation"][f"generator-{n}"]["size"]
        own = {t["text"] for t in train_turns if t["agent_index"] == n}
        assert all(e["messages"][-1]["content"] in own for e in examples)
    assert "| MAFT |" in (out / "results.md").read_text()
    assert (out / "accuracy_vs_iteration.png").stat().st_size > 0


def test_an_interrupted_run_resumes_without_redoing_finished_work(
        vllm_tiny: VllmServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, cfg = tmp_path / "xp", config(methods=("base", "debate", "maft"), summarize=False)
    real_train, trained = adapters_module.Trainer._train, []

    def train_then_die(self: Any, name: str, *args: Any) -> dict[str, Any]:
        real_train(self, name, *args)  # the adapter is complete on disk ...
        trained.append(name)
        raise RuntimeError("killed")  # ... but the run dies before recording the phase

    monkeypatch.setattr(adapters_module.Trainer, "_train", train_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        run_experiment(cfg, runtime(out, vllm_tiny), ["first"])
    state = State.load(out)
    assert state.done("eval/debate/0") and not state.done("train/maft/1")
    first_adapter = out / "adapters" / trained[0]
    stamp = first_adapter.stat().st_mtime_ns
    lines = {p.name: len(p.read_text().splitlines()) for p in (out / "collections").iterdir()}

    monkeypatch.setattr(adapters_module.Trainer, "_train", real_train)
    state = run_experiment(cfg, runtime(out, vllm_tiny), ["again"])
    assert state.done("diversity/maft/1") and state.data["resumes"][0]["command"] == ["again"]
    report = state.result("train/maft/1")["adapters"]
    first = next(r for r in report.values() if r["adapter"] == trained[0])
    assert first["resumed"]
    assert first_adapter.stat().st_mtime_ns == stamp  # not trained again
    for name, count in lines.items():  # finished debates were not run again
        assert len((out / "collections" / name).read_text().splitlines()) == count
    diversity = state.result("diversity/maft/1")
    assert 0 <= diversity["embedding_dissimilarity"] <= 2 and diversity["cross_nll"] > 0
    assert diversity["kl_to_base"] != 0  # the trained generator is not the base model
