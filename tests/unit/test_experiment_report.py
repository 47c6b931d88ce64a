"""The experiment harness's pure logic: collection sharing and resume, checkpoint state, the
per-method data wiring, and the report (tables, JSON, plots). No server, no training."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from experiment.collect import Need, collect, plan, read_records
from experiment.config import ExperimentConfig, Runtime
from experiment.datasets import curated
from experiment.exceptions import ConfigMismatchError
from experiment.methods import SPECS
from experiment.report import markdown, write_report
from experiment.state import Society, State
from experiment.views import paired, prediction, score_play
from maft.inference_client import Completion, Sampling
from maft.tasks import Message, get_task

TASK = get_task("arithmetic", terms=2, pattern="+", low=0, high=30)
BASE = ("base",) * 3


class Scripted:
    """A ChatBackend that answers `\\boxed{<n>}` from a script keyed by (model, round)."""

    def __init__(self, answers: dict[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.answers = answers or {}

    async def chat(self, *, model: str, messages: list[Message], sampling: Sampling
                   ) -> Completion:
        self.calls.append(model)
        value = self.answers.get(model, 7)
        return Completion(f"So it is \\boxed{{{value}}}", 5, 4, "stop", 1.0)


def config(**changes: Any) -> ExperimentConfig:
    """A small config."""
    base: dict[str, Any] = {"train_size": 4, "test_size": 4, "iterations": 2,
                            "methods": ("base", "majority", "debate", "single_ft", "maft")}
    return ExperimentConfig(**{**base, **changes})


def test_a_debate_collection_serves_majority_and_base_of_the_same_generators() -> None:
    debate = Need("test", "debate", BASE, BASE)
    wants = [Need("test", "single", BASE, BASE), Need("test", "majority", BASE, BASE), debate]
    new, source = plan(wants, [])
    assert new == [debate] and set(source.values()) == {debate}
    other = Need("test", "majority", ("a", "b", "c"), BASE)
    summarised = Need("test", "debate", BASE, BASE, summarize=True)
    new, _ = plan([other, summarised], [debate])
    assert set(new) == {other, summarised}  # other agents, or another debate shape: new debates
    assert plan([Need("train", "single", BASE, BASE)], [debate])[0]  # another split: new


def test_collect_resumes_after_a_torn_line_without_repeating_finished_debates(
        tmp_path: Path) -> None:
    cfg = config(agents=2, rounds=2)
    need = Need("test", "debate", ("g0", "g1"), ("c0", "c1"))
    problems = TASK.problems(4, seed=2, split="test")
    path = tmp_path / "c.jsonl"
    first = Scripted()
    asyncio.run(collect(need, problems=problems[:2], task=TASK, config=cfg, backend=first,
                        path=path, base_name="base", concurrency=2))
    assert len(first.calls) == 2 * 4  # 2 debates x (2 generators + 2 critics)
    with path.open("a") as out:
        out.write('{"index": 2, "quest')  # killed mid-write
    again = Scripted()
    records = asyncio.run(collect(need, problems=problems, task=TASK, config=cfg, backend=again,
                                  path=path, base_name="base", concurrency=2))
    assert len(again.calls) == 2 * 4  # only questions 2 and 3
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert sorted(read_records(path)) == [0, 1, 2, 3]
    assert {t["lora_name"] for t in records[3]["turns"]} == {"g0", "g1", "c0", "c1"}


def test_state_resumes_only_with_the_same_config(tmp_path: Path) -> None:
    runtime = Runtime(out_dir=tmp_path, model_path=tmp_path / "model")
    state = State.open(tmp_path, config(), runtime, ["run"])
    state.set_society("maft", 1, Society(("a", "b", "c"), ("d", "e", "f")))
    state.finish("train/maft/1", {"ok": True})
    again = State.open(tmp_path, config(), runtime, ["run", "again"])
    assert again.run_id == state.run_id and again.done("train/maft/1")
    assert again.society("maft", 1) == Society(("a", "b", "c"), ("d", "e", "f"))
    assert again.data["resumes"][0]["command"] == ["run", "again"]
    with pytest.raises(ConfigMismatchError, match="test_size"):
        State.open(tmp_path, config(test_size=5), runtime, ["run"])


def test_maft_without_summary_needs_a_summarising_main_debate() -> None:
    with pytest.raises(ValueError, match="summarize"):
        config(methods=("maft", "maft_wo_summary"))
    assert config(methods=("maft", "maft_wo_summary"), summarize=True).methods


def _turn(rnd: int, agent: int, answer: int, messages: list[Message],
          cut: bool = False) -> dict[str, Any]:
    role = "generator" if rnd == 1 else "critic"
    text = f"agent {agent} round {rnd}: \\boxed{{{answer}}}"
    return {"round": rnd, "agent_index": agent, "role": role, "lora_name": f"{role}{agent}",
            "messages": messages, "text": text, "answer": str(answer),
            "completion_tokens": 3, "finish_reason": "length" if cut else "stop"}


def record(index: int, first: list[int], last: list[int], reference: int,
           cut: frozenset[tuple[int, int]] = frozenset()) -> dict[str, Any]:
    """A 2-round debate whose agents answered `first` then `last`; `cut`: the (round, agent)
    responses that stopped at the token limit."""
    question = f"What is the result of {index}+0?"
    prompt = TASK.generation_messages(question)
    turns = [_turn(1, n, a, prompt, (1, n) in cut) for n, a in enumerate(first)]
    for n, a in enumerate(last):
        others = [t["text"] for t in turns[:len(first)] if t["agent_index"] != n]
        convo = [*prompt, {"role": "assistant", "content": turns[n]["text"]},
                 TASK.critic_message(others)]
        turns.append(_turn(2, n, a, convo, (2, n) in cut))
    votes = sorted(set(last), key=lambda v: (-last.count(v), last.index(v)))
    return {"index": index, "question": question, "reference": str(reference),
            "final_answer": str(votes[0]), "consensus": last.count(votes[0]) / len(last),
            "turns": turns}


RECORDS = [record(0, [1, 2, 2], [2, 2, 2], 2), record(1, [5, 5, 6], [5, 5, 5], 9),
           record(2, [3, 4, 5], [4, 4, 3], 4)]


def test_each_play_reads_its_own_answer_from_one_debate() -> None:
    r = RECORDS[2]
    assert [prediction(r, p, 3, TASK) for p in ("single", "majority", "debate")] == \
        ["3", "3", "4"]  # agent 0 alone; round-1 tie -> first agent; round-2 majority
    scored = score_play(RECORDS, "debate", 3, TASK)
    assert scored["per_question"] == [1, 0, 1] and scored["correct"] == 2
    assert scored["stderr"] == pytest.approx((2 / 3 * 1 / 3 / 3) ** 0.5)


def test_paired_difference_and_its_standard_error() -> None:
    result = paired([1, 1, 0, 1], [0, 1, 0, 0])
    assert result["diff"] == pytest.approx(0.5)
    assert result["stderr"] == pytest.approx((1 / 3 / 4) ** 0.5)
    assert result["within_noise"]


def test_maft_gives_each_agent_only_its_own_responses() -> None:
    cfg = config(w=0.0)
    slots, stats = curated(RECORDS, SPECS["maft"], cfg, TASK, "k")
    gen1 = [e["messages"][-1]["content"] for e in slots["gen1"]]
    assert gen1 and all(text.startswith("agent 1 round 1") for text in gen1)
    assert all(e["messages"][-1]["content"].startswith("agent 2 round 2") for e in slots["crit2"])
    assert stats["label_accuracy"] == pytest.approx(2 / 3)  # vote labels: 2 right, 5 wrong
    pooled, _ = curated(RECORDS, SPECS["single_ft"], cfg, TASK, "k")
    assert set(pooled) == {"all"}
    assert len(pooled["all"]) == sum(len(v) for v in slots.values())
    no_critic, _ = curated(RECORDS, SPECS["maft_wo_critic"], cfg, TASK, "k")
    assert set(no_critic) == {"gen0", "gen1", "gen2"}
    majority, _ = curated(RECORDS, SPECS["majority_ft"], cfg, TASK, "k")
    texts = [e["messages"][-1]["content"] for e in majority["all"]]
    assert texts and all("round 1" in t for t in texts)  # plain vote of round 1, no critics


def _eval(correct: list[int], collection: str = "c") -> dict[str, Any]:
    p = sum(correct) / len(correct)
    return {"accuracy": p, "stderr": (p * (1 - p) / len(correct)) ** 0.5, "n": len(correct),
            "correct": sum(correct), "per_question": correct, "consensus_final": 0.8,
            "unparsed": 0.0, "collection": collection}


def finished_state(tmp_path: Path) -> State:
    """A run whose phases are all recorded (as the runner would), without running anything."""
    cfg = config(test_size=5)
    state = State.open(tmp_path, cfg, Runtime(out_dir=tmp_path, model_path=Path("/m/Smol")),
                       ["python", "-m", "experiment", "run", "--out", "x"])
    scores = {"base": [[1, 0, 0, 0, 0]], "majority": [[1, 1, 0, 0, 0]],
              "debate": [[1, 1, 0, 0, 0]], "single_ft": [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0],
                                                         [1, 1, 1, 0, 0]],
              "maft": [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]}
    for method, rows in scores.items():
        for it, row in enumerate(rows):
            state.finish(f"eval/{method}/{it}", _eval(row))
            state.finish(f"diversity/{method}/{it}", {"embedding_dissimilarity": 0.1 * it,
                                                     "cross_nll": 1.0 + it})
            if it:
                state.finish(f"train/{method}/{it}", {"data": {"sizes": {"gen0": 3},
                                                               "label_accuracy": 0.5},
                                                      "adapters": {}})
    return state


def test_markdown_has_the_papers_layout_and_per_iteration_rows(tmp_path: Path) -> None:
    text = markdown(finished_state(tmp_path))
    lines = text.splitlines()
    head = lines.index("## Paper layout (after iteration 1)")
    assert lines[head + 1] == "| model, task | Base | Majority | Debate | Single-agent FT | MAFT |"
    assert lines[head + 3].startswith("| Smol, arithmetic (2 terms, '+', operands 0–29) | "
                                      "20.0 ± 17.9 | 40.0 ± 21.9 | 40.0 ± 21.9 | "
                                      "20.0 ± 17.9 | 60.0 ± 21.9 |")
    assert "| Debate (not trained) | 40.0 ± 21.9 | 40.0 ± 21.9 | 40.0 ± 21.9 |" in lines
    assert "| MAFT | 40.0 ± 21.9 | 60.0 ± 21.9 | 80.0 ± 17.9 |" in lines
    assert any(line.startswith("| MAFT − Debate | 2 | +40.0 ± 24.5 | yes |") for line in lines)
    assert any(line.startswith("| MAFT − Single-agent FT | 1 | +40.0 ± 24.5 |") for line in lines)
    assert "| MAFT | 2 | – | 0.800 | 0.200 | 3.000 | – | – |" in lines  # final-round consensus
    head = lines.index("## Diversity (test questions)") + 1
    assert lines[head].startswith("| method | iteration | round-1 consensus | "
                                  "final-round consensus |")
    assert "python -m experiment run --out x" in text


def test_write_report_writes_json_and_plots(tmp_path: Path) -> None:
    finished_state(tmp_path)
    results = write_report(tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["comparisons"] == results["comparisons"]
    assert saved["comparisons"]["maft-debate"]["2"]["diff"] == pytest.approx(0.4)
    assert saved["methods"]["maft"]["iterations"]["2"]["eval"]["per_question"] == [1, 1, 1, 1, 0]
    assert saved["config"]["test_size"] == 5 and saved["environment"]["python"]
    for name in ("accuracy_vs_iteration.png", "diversity_vs_iteration.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def _agent_turn(round_no: int, agent: int, answer: str | None) -> dict[str, Any]:
    return {"round": round_no, "agent_index": agent, "answer": answer,
            "role": "generator" if round_no == 1 else "critic"}


def test_per_agent_accuracy_shows_where_the_critics_lose_answers(tmp_path: Path) -> None:
    state = finished_state(tmp_path)
    (tmp_path / "collections").mkdir()
    debates = [  # reference 5: round 1 has 2 of 3 agents right, the critics 1 of 3
        {"index": 0, "question": "q0", "reference": "5", "final_answer": "4", "turns": [
            _agent_turn(1, 0, "5"), _agent_turn(1, 1, "5"), _agent_turn(1, 2, "4"),
            _agent_turn(2, 0, "4"), _agent_turn(2, 1, "5"), _agent_turn(2, 2, None)]},
        {"index": 1, "question": "q1", "reference": "5", "final_answer": "4", "turns": [
            _agent_turn(1, 0, "5"), _agent_turn(1, 1, "3"), _agent_turn(1, 2, "5"),
            _agent_turn(2, 0, "4"), _agent_turn(2, 1, "5"), _agent_turn(2, 2, "3")]}]
    (tmp_path / "collections" / "c.jsonl").write_text(
        "\n".join(json.dumps(d) for d in debates) + "\n")
    lines = markdown(state).splitlines()
    assert "| Debate | 0 | 100 / 50 / 50 | 0 / 100 / 0 |" in lines
    assert "| MAFT | 2 | 100 / 50 / 50 | 0 / 100 / 0 |" in lines
    assert not any(line.startswith("| MAFT | 0 |") and "/" in line for line in lines)
    saved = write_report(tmp_path)["per_agent"]
    assert saved["maft"]["1"] == [[1.0, 0.5, 0.5], [0.0, 1.0, 0.0]]
    assert "base" not in saved and "majority" not in saved  # not debates


def test_per_agent_table_says_when_no_debates_are_at_hand(tmp_path: Path) -> None:
    assert "(no debates: neither collections/ nor digest.jsonl.gz is present)" in markdown(
        finished_state(tmp_path))
