"""Per-agent finetuning data (maft/curation.py) from hand-made debate transcripts."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from maft.curation import (
    Curation,
    CurationConfig,
    Example,
    curate,
    dedupe_questions,
    label_of,
    mix_critic,
    plus_count,
)
from maft.enums import ExampleKind
from maft.records import DebateRecord, TurnRecord
from maft.tasks import NumericTask
from maft.voting import majority_vote

TASK = NumericTask()
T0 = datetime(2025, 1, 1, tzinfo=UTC)
Answers = Sequence[Sequence[str | None]]  # [round][agent]


def text_of(debate_id: str, round_no: int, agent: int, answer: str | None) -> str:
    """A response that names its author; unparseable ones carry no number."""
    tail = f"so \\boxed{{{answer}}}" if answer is not None else "I cannot tell."
    return f"<{debate_id} r{round_no} agent-{'abcdefgh'[agent]}> {tail}"


def make_debate(answers: Answers, *, id: str = "d", question: str = "What is 2+3?",
                created: int = 0, reference: str | None = None, feedback: str | None = None,
                summarize: bool = False, task: str = "numeric") -> DebateRecord:
    """A debate transcript built like maft/debate.py builds one; the vote is computed."""
    turns: list[TurnRecord] = []
    previous: list[TurnRecord] = []
    for r, row in enumerate(answers, start=1):
        current = []
        for n, answer in enumerate(row):
            if r == 1:
                messages = TASK.generation_messages(question)
            else:
                mine = previous[n]
                others = [t.text for t in previous if t is not mine]
                if summarize:
                    summary = TurnRecord(r, n, "summarizer", "base", (), f"SUMMARY {id} r{r} "
                                         f"{n} \\boxed{{{answers[-1][0]}}}", None)
                    turns.append(summary)
                    advice = TASK.critic_summary_message(summary.text)
                else:
                    advice = TASK.critic_message(others)
                messages = [*mine.messages, {"role": "assistant", "content": mine.text}, advice]
            role = "generator" if r == 1 else "critic"
            current.append(TurnRecord(r, n, role, f"{role}-{n}", tuple(messages),
                                      text_of(id, r, n, answer), answer))
        turns.extend(current)
        previous = current
    vote = majority_vote(list(answers[-1]), TASK.equivalent)
    return DebateRecord(id, question, task, T0 + timedelta(minutes=created), 1, len(answers[0]),
                        len(answers), vote.answer, vote.consensus, reference, feedback,
                        tuple(turns))


def run(debates: Sequence[DebateRecord], agents: int = 3, **config: Any) -> Curation:
    return curate(debates, task=TASK, agents=agents, config=CurationConfig(**config))


def assistant_texts(example: Example) -> list[str]:
    return [m["content"] for m in example.messages if m["role"] == "assistant"]


def targets(curation: Curation, role: str, n: int) -> list[str]:
    """The last assistant text of each example of agent (role, n)."""
    return [assistant_texts(e)[-1] for e in curation.datasets[role, n].examples]


def kinds(curation: Curation, role: str, n: int) -> list[str]:
    return [e.kind for e in curation.datasets[role, n].examples]


# Agent 0 is wrong then corrected (C-), agent 1 right throughout (C+), agent 2 right then wrong.
BASIC: Answers = [["4", "5", "5"], ["5", "5", "6"]]


def test_generators_get_only_their_own_right_first_answers() -> None:
    c = run([make_debate(BASIC)])
    assert targets(c, "generator", 0) == []
    assert targets(c, "generator", 1) == [text_of("d", 1, 1, "5")]
    assert targets(c, "generator", 2) == [text_of("d", 1, 2, "5")]
    (example,) = c.datasets["generator", 1].examples
    assert list(example.messages[:-1]) == TASK.generation_messages("What is 2+3?")
    assert (example.kind, example.label, example.label_source) == ("G", "5", "vote")


def test_critics_get_their_own_whole_conversation_split_into_c_minus_and_c_plus() -> None:
    only = {0: run([make_debate(BASIC)], w=1.0), 1: run([make_debate(BASIC)], w=0.0)}
    assert kinds(only[0], "critic", 0) == ["C-"] and kinds(only[1], "critic", 1) == ["C+"]
    assert only[0].datasets["critic", 2].examples == []  # final answer 6 is wrong
    assert only[1].datasets["critic", 2].examples == []
    for n in (0, 1):
        (example,) = only[n].datasets["critic", n].examples
        assert assistant_texts(example) == [text_of("d", 1, n, BASIC[0][n]),
                                            text_of("d", 2, n, "5")]
        assert example.messages[0] == TASK.generation_messages("What is 2+3?")[0]
        others = [text_of("d", 1, j, BASIC[0][j]) for j in range(3) if j != n]
        assert example.messages[2] == TASK.critic_message(others)
        assert example.train_on == "all_assistant"
    assert {e.train_on for e in run([make_debate(BASIC)], w=0.5, critic_loss="final")
            .datasets["critic", 0].examples} == {"final"}


def test_every_assistant_turn_is_the_agents_own_and_summaries_never_are() -> None:
    debates = []
    for i in range(6):
        first: list[str | None] = ["5"] * 3
        first[i % 3], first[(i + 1) % 3] = "4", None
        debates.append(make_debate([first, ["5"] * 3, ["5"] * 3], id=f"q{i}", question=f"Q{i}",
                                   summarize=True, created=i))
    c = run(debates)
    for (_, n), dataset in c.datasets.items():
        assert dataset.examples
        for example in dataset.examples:
            assert all(f"agent-{'abc'[n]}>" in t for t in assistant_texts(example))
            assert not any("SUMMARY" in t for t in assistant_texts(example))
    datasets = [tuple(e.messages for e in d.examples) for d in c.datasets.values()]
    assert len(set(map(repr, datasets))) == len(datasets)  # no two agents share data


def test_unparseable_first_answer_is_wrong_and_unparseable_final_answer_is_excluded() -> None:
    debate = make_debate([[None, "5", "5"], ["5", None, "5"]])
    c, plus_only = run([debate], w=0.5), run([debate], w=0.0)
    assert targets(c, "generator", 0) == []
    assert kinds(c, "critic", 0) == ["C-"]
    assert targets(c, "generator", 1) == [text_of("d", 1, 1, "5")]
    assert kinds(c, "critic", 1) == [] and kinds(plus_only, "critic", 1) == []
    assert kinds(plus_only, "critic", 2) == ["C+"]


def mixed_society(n_minus: int, n_plus: int) -> list[DebateRecord]:
    """Critic 0 corrects itself in n_minus debates and stays right in n_plus."""
    rows = [["4", "5", "5"]] * n_minus + [["5", "5", "5"]] * n_plus
    return [make_debate([row, ["5", "5", "5"]], id=f"d{i:02}", question=f"Q{i}", created=i)
            for i, row in enumerate(rows)]


@pytest.mark.parametrize(("w", "minus", "plus"), [
    (0.0, 0, 4), (0.25, 3, 4), (0.5, 3, 3), (2 / 3, 3, 2), (1.0, 3, 0)])
def test_mix_counts_follow_w(w: float, minus: int, plus: int) -> None:
    c = run(mixed_society(3, 4), w=w)
    got = kinds(c, "critic", 0)
    assert (got.count("C-"), got.count("C+")) == (minus, plus)
    assert c.stats["critic-0"]["available"] == {"C-": 3, "C+": 4}


def test_plus_count_rounds_half_up_and_never_exceeds_what_exists() -> None:
    assert [plus_count(m, 10, 2 / 3) for m in range(1, 6)] == [1, 1, 2, 2, 3]
    assert plus_count(6, 2, 2 / 3) == 2
    assert plus_count(0, 5, 0.0) == 5 and plus_count(5, 5, 1.0) == 0


def test_without_c_minus_a_critic_gets_no_data_unless_w_is_zero() -> None:
    society = mixed_society(0, 3)
    c = run(society)
    assert c.datasets["critic", 0].examples == []
    assert "no C- example" in c.stats["critic-0"]["reason"]
    assert c.stats["critic-0"]["available"] == {"C-": 0, "C+": 3}
    assert kinds(run(society, w=0.0), "critic", 0) == ["C+"] * 3


def test_feedback_overrides_the_vote_and_beats_the_reference() -> None:
    debate = make_debate(BASIC, reference="7", feedback="6")  # the vote says 5
    c = run([debate], w=0.5)
    assert targets(c, "generator", 1) == [] and targets(c, "critic", 1) == []
    assert targets(c, "critic", 2) == [text_of("d", 2, 2, "6")]
    assert {(e.label, e.label_source) for d in c.datasets.values() for e in d.examples} == {
        ("6", "feedback")}
    assert c.stats["label_sources"] == {"feedback": 1, "reference": 0, "vote": 0}
    assert label_of(debate, CurationConfig(), TASK) == ("6", "feedback")


def test_use_ground_truth_false_ignores_feedback_and_reference() -> None:
    debate = make_debate(BASIC, reference="7", feedback="6")
    config = CurationConfig(use_ground_truth=False, w=0.5)
    assert label_of(debate, config, TASK) == ("5", "vote")
    c = curate([debate], task=TASK, agents=3, config=config)
    assert kinds(c, "critic", 0) == ["C-"] and kinds(c, "critic", 2) == []
    assert targets(c, "generator", 1) == [text_of("d", 1, 1, "5")]
    assert c.datasets["critic", 0].examples[0].label_source == "vote"


def test_reference_answer_is_ground_truth_and_is_normalised() -> None:
    debate = make_debate(BASIC, reference="6.0")
    assert label_of(debate, CurationConfig(), TASK) == ("6", "reference")
    c = run([debate], w=0.5)
    assert targets(c, "critic", 2) == [text_of("d", 2, 2, "6")]
    assert targets(c, "generator", 1) == []
    assert c.stats["critic-2"]["label_sources"]["reference"] == 1


def test_a_debate_without_any_label_is_dropped() -> None:
    no_vote = make_debate([[None, None], [None, None]])
    assert no_vote.final_answer is None and no_vote.consensus == 0.0
    c = run([no_vote], agents=2)
    assert c.stats["dropped"]["no_label"] == 1 and c.stats["debates_used"] == 0
    labelled = run([replace(no_vote, reference_answer="5")], agents=2)
    assert labelled.stats["debates_used"] == 1 and labelled.stats["dropped"]["no_label"] == 0


def test_min_consensus_drops_only_vote_labelled_debates() -> None:
    weak = make_debate([["5", "4", "6"], ["5", "4", "6"]])  # consensus 1/3
    rule = {"majority": "plurality"}  # min_consensus on its own, without the majority rule
    assert run([weak], min_consensus=0.5, **rule).stats["dropped"]["low_consensus"] == 1
    assert targets(run([weak], min_consensus=0.5, **rule), "generator", 0) == []
    assert targets(run([weak], min_consensus=0.3, **rule), "generator", 0) == [
        text_of("d", 1, 0, "5")]
    two_of_three = make_debate([["5", "5", "6"], ["5", "5", "6"]])
    assert run([two_of_three], min_consensus=0.9).stats["dropped"]["low_consensus"] == 1
    with_truth = run([replace(weak, reference_answer="4")], min_consensus=0.9)
    assert with_truth.stats["dropped"]["low_consensus"] == 0
    assert targets(with_truth, "generator", 1) == [text_of("d", 1, 1, "4")]


def test_dedupe_keeps_the_newest_debate_of_a_question() -> None:
    old = make_debate(BASIC, id="old", question="What is  2+3?", created=0)
    new = make_debate(BASIC, id="new", question="what is 2+3? ", created=5)
    other = make_debate(BASIC, id="other", question="What is 3+3?", created=1)
    assert dedupe_questions([new, other, old]) == [other, new]
    c = run([old, new, other], w=0.5)
    assert {e.debate_id for e in c.datasets["generator", 1].examples} == {"new", "other"}
    assert c.stats["dropped"]["duplicate"] == 1 and c.stats["debates_used"] == 2
    assert run([old, new, other], dedupe=False).stats["generator-1"]["size"] == 3


def test_one_round_debates_give_generator_data_only() -> None:
    c = run([make_debate([["5", "5", "4"]])])
    assert targets(c, "generator", 0) == [text_of("d", 1, 0, "5")]
    assert all(c.datasets["critic", n].examples == [] for n in range(3))
    assert c.stats["critic-0"]["available"] == {"C-": 0, "C+": 0}


def test_three_round_debates_use_round_three_as_final() -> None:
    late = make_debate([["4", "5", "5"], ["4", "5", "5"], ["5", "5", "5"]], id="late")
    lost = make_debate([["4", "5", "5"], ["5", "5", "5"], ["4", "5", "5"]], id="lost",
                       question="Q2", created=1)
    c = run([late, lost], w=1.0)
    (example,) = c.datasets["critic", 0].examples
    assert (example.debate_id, example.kind) == ("late", "C-")
    assert assistant_texts(example) == [text_of("late", r, 0, a)
                                        for r, a in ((1, "4"), (2, "4"), (3, "5"))]


def test_agents_beyond_a_debates_size_get_nothing_from_it() -> None:
    c = run([make_debate([["5", "5"], ["5", "5"]])], agents=3, w=0.0)
    assert set(c.datasets) == {(r, n) for r in ("generator", "critic") for n in range(3)}
    assert c.datasets["generator", 2].examples == [] and c.datasets["critic", 2].examples == []
    small = run([make_debate(BASIC)], agents=2)
    assert set(small.datasets) == {(r, n) for r in ("generator", "critic") for n in range(2)}


def test_a_conversation_carrying_another_agents_answer_is_skipped() -> None:
    debate = make_debate(BASIC)
    forged = list(debate.turns)
    i = next(i for i, t in enumerate(forged) if (t.round, t.agent_index) == (2, 1))
    messages = list(forged[i].messages)
    messages[1] = {"role": "assistant", "content": text_of("d", 1, 2, "5")}
    forged[i] = replace(forged[i], messages=tuple(messages))
    c = run([replace(debate, turns=tuple(forged))], w=0.5)
    assert c.datasets["critic", 1].examples == [] and c.stats["critic-1"]["inconsistent"] == 1
    assert kinds(c, "critic", 0) == ["C-"]


def test_other_tasks_are_dropped() -> None:
    c = run([make_debate(BASIC, task="gsm8k")])
    assert c.stats["dropped"]["other_task"] == 1 and c.stats["debates_used"] == 0


def test_same_seed_same_datasets_any_input_order_and_seeds_change_the_c_plus_sample() -> None:
    society = mixed_society(2, 12)
    first = run(society, seed=3)
    shuffled = society[:]
    random.Random(1).shuffle(shuffled)
    assert run(shuffled, seed=3).datasets == first.datasets
    assert run(society, seed=3).stats == first.stats
    samples = {tuple(e.debate_id for e in run(society, seed=s).datasets["critic", 0].examples
                     if e.kind == "C+") for s in range(8)}
    assert len(samples) > 1 and all(len(s) == 1 for s in samples)
    assert "d00" in first.datasets["critic", 0].examples[0].debate_id


def test_mix_critic_keeps_candidate_order() -> None:
    order = [ExampleKind(k) for k in ("C+", "C-", "C+", "C+", "C-", "C+")]
    examples = [Example((), "final", f"d{i}", "5", "vote", k) for i, k in enumerate(order)]
    mixed = mix_critic(examples, 0.5, random.Random(0))
    assert [e.debate_id for e in mixed] == sorted(e.debate_id for e in mixed)
    assert [e.kind for e in mixed].count("C+") == 2


def test_stats_report_debates_drops_sources_and_per_agent_counts() -> None:
    debates = [make_debate(BASIC, id="a", question="A"),
               make_debate(BASIC, id="b", question="B", created=1, feedback="6"),
               make_debate(BASIC, id="b0", question="b", created=0),
               make_debate([[None] * 3, [None] * 3], id="c", question="C")]
    s = run(debates, w=0.5).stats
    assert (s["debates_seen"], s["debates_used"]) == (4, 2)
    assert s["dropped"] == {"other_task": 0, "duplicate": 1, "no_label": 1, "no_majority": 0,
                            "low_consensus": 0}
    assert s["label_sources"] == {"feedback": 1, "reference": 0, "vote": 1}
    assert s["generator-1"] == {"size": 1, "counts": {"G": 1, "C-": 0, "C+": 0},
                                "shares": {"G": 1.0, "C-": 0.0, "C+": 0.0},
                                "label_sources": {"feedback": 0, "reference": 0, "vote": 1},
                                "debates": 1, "truncated": 0}
    critic0 = s["critic-0"]
    assert (critic0["size"], critic0["counts"], critic0["debates"]) == (
        1, {"G": 0, "C-": 1, "C+": 0}, 1)
    assert s["critic-2"]["counts"]["C-"] == 1 and s["critic-2"]["label_sources"]["feedback"] == 1
    assert s["critic-1"]["available"] == {"C-": 0, "C+": 1} and s["critic-1"]["size"] == 0
    assert "reason" in s["generator-0"] and s["generator-0"]["size"] == 0
    json.dumps(s)  # stored as JSON with the training run


def test_config_is_validated() -> None:
    bad: list[dict[str, Any]] = [{"w": 1.5}, {"w": -0.1}, {"min_consensus": 2.0},
                                 {"critic_loss": "every"}, {"majority": "most"}]
    for options in bad:
        with pytest.raises(ValueError):
            CurationConfig(**options)
    with pytest.raises(ValueError):
        run([], agents=0)


def test_a_vote_without_a_strict_majority_labels_nothing() -> None:
    split = make_debate([["5", "4", "6"], ["5", "4", "6"]])  # the tie rule would pick "5"
    c = run([split])
    assert c.stats["dropped"]["no_majority"] == 1 and c.stats["debates_used"] == 0
    assert all(not ds.examples for ds in c.datasets.values())
    old = run([split], majority="plurality")  # the answering rule: agent 0's answer wins
    assert old.stats["debates_used"] == 1 and targets(old, "generator", 0) == [
        text_of("d", 1, 0, "5")]
    truth = run([replace(split, reference_answer="4")])  # ground truth needs no majority
    assert truth.stats["dropped"]["no_majority"] == 0 and targets(truth, "generator", 1)


@pytest.mark.parametrize(("final", "labelled"), [
    (["5", "5", None], True),  # two of three agree: more than half of the agents
    (["5", None, None], False),  # one parseable answer is not a majority of the society
    (["5", "5", "5"], True), (["5", "6", None], False)])
def test_unparseable_answers_count_against_the_majority(final: list[str | None],
                                                        labelled: bool) -> None:
    c = run([make_debate([["5", "5", "5"], final])])
    assert (c.stats["debates_used"] == 1) is labelled
    assert c.stats["dropped"]["no_majority"] == (0 if labelled else 1)


def cut(debate: DebateRecord, round_no: int, agent: int) -> DebateRecord:
    """The debate with one agent's response of one round stopped at the token limit."""
    turns = tuple(replace(t, finish_reason="length")
                  if (t.round, t.agent_index, t.role != "summarizer") == (round_no, agent, True)
                  else replace(t, finish_reason="stop") for t in debate.turns)
    return replace(debate, turns=turns)


def test_a_truncated_response_is_never_a_training_target() -> None:
    generator_cut = run([cut(make_debate(BASIC), 1, 1)], w=0.0)
    assert targets(generator_cut, "generator", 1) == []  # right answer, but cut off
    assert generator_cut.stats["generator-1"]["truncated"] == 1
    assert targets(generator_cut, "generator", 2) == [text_of("d", 1, 2, "5")]
    critic_cut = run([cut(make_debate(BASIC), 2, 1)], w=0.0)
    assert kinds(critic_cut, "critic", 1) == [] and critic_cut.stats["critic-1"]["truncated"] == 1
    assert targets(critic_cut, "generator", 1) == [text_of("d", 1, 1, "5")]


def test_a_truncated_earlier_turn_matters_only_when_it_carries_loss() -> None:
    debate = cut(make_debate(BASIC), 1, 1)  # agent 1's round-1 answer (context for its critic)
    assert kinds(run([debate], w=0.0), "critic", 1) == []
    assert kinds(run([debate], w=0.0, critic_loss="final"), "critic", 1) == ["C+"]
    assert kinds(run([debate], w=0.0, drop_truncated=False), "critic", 1) == ["C+"]


def test_every_response_of_a_usable_debate_has_an_outcome_and_drops_a_reason() -> None:
    debates = [make_debate(BASIC, id="a", question="A"),
               make_debate([["5", "4", "6"], ["5", "4", "6"]], id="split", question="B"),
               make_debate(BASIC, id="old", question="a", created=-1)]
    c = run(debates, w=0.0)
    assert c.dropped == {"old": "duplicate", "split": "no_majority"}
    assert c.datasets["generator", 0].outcomes == {"a": "wrong"}  # said 4; the vote is 5
    assert c.datasets["generator", 1].outcomes == {"a": "G"}
    assert c.datasets["critic", 0].outcomes == {"a": "not_mixed"}  # w = 0: C+ only
    assert c.datasets["critic", 1].outcomes == {"a": "C+"}
    assert c.datasets["critic", 2].outcomes == {"a": "wrong"}  # right first, 6 at the end
    one_minus = run(debates, w=1.0)  # w = 1: C- only, so agent 1's C+ is left out
    assert one_minus.datasets["critic", 0].outcomes == {"a": "C-"}
    assert one_minus.datasets["critic", 1].outcomes == {"a": "not_mixed"}
    cut_one = run([cut(make_debate(BASIC, id="a"), 1, 1)])
    assert cut_one.datasets["generator", 1].outcomes == {"a": "truncated"}
    assert run([make_debate(BASIC, id="a")], agents=4).datasets["critic", 3].outcomes == {
        "a": "absent"}


def test_outcome_rows_cover_drops_and_every_agent_response() -> None:
    rows = run([make_debate(BASIC, id="a", question="A"),
                make_debate(BASIC, id="old", question="a", created=-1)], w=1.0).outcome_rows()
    assert {"debate_id": "old", "role": None, "agent_index": None, "outcome": "duplicate",
            "label": None, "label_source": None} in rows
    used = [r for r in rows if r["debate_id"] == "a"]
    assert len(used) == 6 and {r["label"] for r in used} == {"5"}
    assert {(r["role"], r["agent_index"], r["outcome"]) for r in used} == {
        ("generator", 0, "wrong"), ("generator", 1, "G"), ("generator", 2, "G"),
        ("critic", 0, "C-"), ("critic", 1, "not_mixed"), ("critic", 2, "wrong")}
    json.dumps(rows)
