"""Majority vote (maft/voting.py): tie rule, None handling, consensus, equivalence classes."""

from __future__ import annotations

import itertools

import pytest

from maft.parsing import numbers_equal
from maft.voting import Vote, group_answers, majority_vote


def exact(a: str, b: str) -> bool:
    return a == b


def test_clear_majority() -> None:
    vote = majority_vote(["3", "5", "5"], exact)
    assert vote.answer == "5"
    assert vote.votes == 2
    assert vote.total == 3
    assert vote.consensus == pytest.approx(2 / 3)


def test_unanimous() -> None:
    vote = majority_vote(["7", "7", "7", "7"], exact)
    assert (vote.answer, vote.votes, vote.consensus) == ("7", 4, 1.0)
    assert vote.tally == [("7", 4)]


def test_majority_wins_even_when_given_last() -> None:
    assert majority_vote(["1", "2", "3", "3"], exact).answer == "3"


def test_tie_goes_to_lowest_agent_index() -> None:
    # 2-2 tie: "b" is first given by agent 0, "a" first by agent 1.
    assert majority_vote(["b", "a", "a", "b"], exact).answer == "b"
    assert majority_vote(["a", "b", "b", "a"], exact).answer == "a"
    # all different: agent 0's answer
    assert majority_vote(["x", "y", "z"], exact).answer == "x"


def test_tie_rule_ignores_unparseable_leading_agents() -> None:
    # agent 0 did not parse, so the tie is between agent 1's "q" and agent 2's "p"
    assert majority_vote([None, "q", "p"], exact).answer == "q"


def test_tie_rule_is_deterministic_over_all_orders() -> None:
    # For every ordering of a 2-2-1 split, the winner is the tied answer that appears first.
    for order in set(itertools.permutations(["a", "a", "b", "b", "c"])):
        vote = majority_vote(list(order), exact)
        tied_first = next(x for x in order if x in ("a", "b"))
        assert vote.answer == tied_first, order
        assert vote.votes == 2


def test_none_never_votes_or_wins() -> None:
    vote = majority_vote([None, None, "4"], exact)
    assert vote.answer == "4"
    assert vote.votes == 1
    assert vote.total == 3
    assert vote.consensus == pytest.approx(1 / 3)
    assert vote.tally == [("4", 1)]


def test_all_unparseable() -> None:
    vote = majority_vote([None, None, None], exact)
    assert vote.answer is None
    assert vote.votes == 0
    assert vote.total == 3
    assert vote.consensus == 0.0
    assert vote.tally == []


def test_no_agents() -> None:
    vote = majority_vote([], exact)
    assert vote.answer is None
    assert vote.consensus == 0.0


def test_consensus_counts_unparseable_agents() -> None:
    vote = majority_vote(["5", None, "5", None], exact)
    assert vote.votes == 2
    assert vote.consensus == 0.5


def test_equivalence_classes_merge_numeric_forms() -> None:
    answers = ["1,000", "1000.0", "999", "1000"]
    vote = majority_vote(answers, numbers_equal)
    assert vote.votes == 3
    assert numbers_equal(vote.answer or "", "1000")
    # the winning class is represented by the form its lowest agent gave
    assert vote.answer == "1,000"
    assert vote.tally == [("1,000", 3), ("999", 1)]
    assert vote.consensus == 0.75


def test_equivalence_matters_for_the_winner() -> None:
    answers = ["0.5", "7", "1/2", "7", "\\frac{1}{2}"]
    assert majority_vote(answers, exact).answer == "7"
    assert majority_vote(answers, numbers_equal).answer == "0.5"


def test_unparseable_strings_form_no_class_under_numbers_equal() -> None:
    # strings numbers_equal cannot parse are never equal, even to themselves
    groups = group_answers(["abc", "abc", "1"], numbers_equal)
    assert groups == [[0], [1], [2]]


def test_group_answers_first_occurrence_order() -> None:
    groups = group_answers(["b", None, "a", "b", "a", None, "c"], exact)
    assert groups == [[0, 3], [2, 4], [6]]


def test_vote_is_frozen() -> None:
    vote = Vote(answer="1", votes=1, total=1, tally=[("1", 1)])
    with pytest.raises(AttributeError):
        vote.answer = "2"  # type: ignore[misc]
