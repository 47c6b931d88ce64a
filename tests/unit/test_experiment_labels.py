"""The harness's label knobs (vote / reference / feedback share, majority rule, critic loss,
training budget), their validation and resume compatibility, the society a collection records,
and the report's label tables: accuracy by consensus level, the rules before/after, truncation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiment.adapters import society_version
from experiment.collect import Need
from experiment.config import ExperimentConfig, Runtime, TrainingConfig
from experiment.datasets import composition, curated, star
from experiment.exceptions import ConfigMismatchError
from experiment.labels import curation_config, feedback_questions
from experiment.methods import SPECS
from experiment.report import markdown, write_report
from experiment.state import State
from tests.unit.test_experiment_digest import TRAIN, simulated_run
from tests.unit.test_experiment_report import BASE, TASK, config, record

NEW_KEYS = ("labels", "feedback_share", "majority", "critic_loss")


@pytest.mark.parametrize("changes", [
    {"labels": "gold"}, {"feedback_share": 0.5}, {"labels": "feedback", "feedback_share": 1.5},
    {"majority": "most"}, {"critic_loss": "all"}, {"min_consensus": 2.0}])
def test_label_knobs_are_validated(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        config(**changes)


def test_training_budget_is_validated_and_reaches_the_trainer() -> None:
    with pytest.raises(ValueError, match="min_steps"):
        TrainingConfig(min_steps=-1)
    with pytest.raises(ValueError, match="max_epochs"):
        TrainingConfig(epochs=3, max_epochs=2)
    trainer = TrainingConfig(min_steps=40, max_epochs=5).train_config(seed=7)
    assert (trainer.min_steps, trainer.max_epochs, trainer.seed) == (40, 5, 7)


def _old_state(out: Path) -> Runtime:
    """A state.json written before the label knobs and the training budget existed."""
    runtime = Runtime(out_dir=out, model_path=out / "model")
    State.open(out, config(), runtime, ["run"])
    path = out / "state.json"
    data = json.loads(path.read_text())
    for key in NEW_KEYS:
        del data["config"][key]
    for key in ("min_steps", "max_epochs"):
        del data["config"]["training"][key]
    path.write_text(json.dumps(data))
    return runtime


def test_an_old_state_resumes_with_the_defaults_and_records_the_new_keys(
        tmp_path: Path) -> None:
    runtime = _old_state(tmp_path)
    old = State.load(tmp_path)
    assert old.config == config()  # missing keys read as their defaults
    resumed = State.open(tmp_path, config(), runtime, ["run", "again"])
    assert all(k in resumed.data["config"] for k in NEW_KEYS)
    assert resumed.data["config"]["training"]["min_steps"] == 0


@pytest.mark.parametrize("changes", [{"majority": "plurality"},
                                     {"training": TrainingConfig(min_steps=10)}])
def test_an_old_state_refuses_other_values_of_the_new_keys(tmp_path: Path,
                                                           changes: dict[str, Any]) -> None:
    runtime = _old_state(tmp_path)
    with pytest.raises(ConfigMismatchError, match=r"majority|training"):
        State.open(tmp_path, config(**changes), runtime, ["run"])


def test_the_feedback_share_is_a_seeded_draw_of_the_right_size() -> None:
    drawn = feedback_questions(100, 0.3, seed=0)
    assert len(drawn) == 30 and drawn <= set(range(100))
    assert drawn == feedback_questions(100, 0.3, seed=0) != feedback_questions(100, 0.3, seed=1)
    assert feedback_questions(7, 0.5, seed=0) <= set(range(7))
    assert len(feedback_questions(7, 0.5, seed=0)) == 4  # rounded half up
    assert feedback_questions(5, 0.0, seed=0) == frozenset()
    assert feedback_questions(5, 1.0, seed=0) == frozenset(range(5))


def _sources(changes: dict[str, Any], method: str = "maft") -> dict[str, int]:
    cfg = config(train_size=len(TRAIN), **changes)
    _, stats = curated(TRAIN, SPECS[method], cfg, TASK, "k")
    return stats["curation"]["label_sources"]


def test_labels_come_from_the_vote_the_reference_or_a_share_of_feedback() -> None:
    assert _sources({}) == {"feedback": 0, "reference": 0, "vote": 5}  # one 1/3 debate dropped
    assert _sources({"labels": "reference"}) == {"feedback": 0, "reference": 6, "vote": 0}
    fed = feedback_questions(len(TRAIN), 0.5, ExperimentConfig().seed)
    split = _sources({"labels": "feedback", "feedback_share": 0.5})
    assert split["feedback"] == 3 and split["reference"] == 0
    assert split["vote"] == 3 - (3 not in fed)  # question 3 has no majority: dropped unless fed
    # Majority FT keeps its plain round-1 vote whatever the labels are.
    assert _sources({"labels": "reference"}, "majority_ft") == \
        {"feedback": 0, "reference": 0, "vote": 4}


def test_reference_labels_are_always_right() -> None:
    _, stats = curated(TRAIN, SPECS["maft"], config(train_size=6, labels="reference"), TASK, "k")
    assert stats["labels"] == {"debates": 6, "labelled": 6, "right": 6, "accuracy": 1.0}


def test_the_old_rules_label_every_vote_and_keep_truncated_targets() -> None:
    spec, cfg = SPECS["maft"], config(critic_loss="final")
    old, new = curation_config(cfg, spec, old_rules=True), curation_config(cfg, spec)
    assert (old.majority, old.drop_truncated, new.majority, new.drop_truncated) == \
        ("plurality", False, "strict", True)
    assert old.critic_loss == new.critic_loss == "final" and not new.use_ground_truth
    assert curation_config(config(labels="reference"), SPECS["majority_ft"]).use_ground_truth \
        is False


def test_star_never_learns_a_response_cut_at_the_token_limit() -> None:
    cut = record(0, [2, 2, 2], [2, 2, 2], 2, cut=frozenset({(1, 0)}))
    slots, stats = star([cut, record(1, [3, 3, 3], [3, 3, 3], 3)], [], TASK)
    assert len(slots["all"]) == 1 and stats["composition"]["all"]["truncated"] == 1


def test_a_collection_records_the_society_that_debated() -> None:
    assert society_version(["base"] * 3) == 0
    assert society_version(["xp-ab12-maft-gen0-it2", "xp-ab12-maft-crit0-it1", "base"]) == 2
    need = Need("train", "majority", ("xp-r-maft-gen0-it1",) * 3, ("xp-r-maft-crit0-it3",) * 3)
    assert society_version(need.players(config())) == 1  # a round-1 play: critics do not play
    assert Need("test", "debate", BASE, BASE).players(config()) == BASE + BASE


def test_label_accuracy_by_final_round_consensus(tmp_path: Path) -> None:
    simulated_run(tmp_path)
    results = write_report(tmp_path)["curation"]
    assert results["maft"]["1"]["by_consensus"] == {
        "1/3": {"debates": 1, "labelled": 0, "right": 0},  # a 3-way split: no majority
        "2/3": {"debates": 2, "labelled": 2, "right": 2},
        "3/3": {"debates": 3, "labelled": 3, "right": 2}}
    assert results["majority_ft"]["1"]["by_consensus"]["1/3"]["debates"] == 2  # round 1
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "| MAFT | 1 | none labelled (1 debate) | 100 % (2/2; 2 debates) | " \
        "67 % (2/3; 3 debates) | 80 % (4/5; 6 debates) |" in lines


def test_the_rules_before_and_after_on_the_same_debates(tmp_path: Path) -> None:
    simulated_run(tmp_path)
    results = write_report(tmp_path)["curation"]["maft"]["1"]
    before, after = results["before"], results["after"]
    assert (before["labelled"], before["right"], after["labelled"], after["right"]) == \
        (6, 4, 5, 4)
    assert before["sizes"]["gen0"] == 5 and after["sizes"]["gen0"] == 3  # 1/3 vote, cut answer
    assert after["dropped"]["no_majority"] == 1 and before["truncated"] == 0
    assert after["truncated"] == 3
    text = markdown(State.load(tmp_path))
    assert "| MAFT | 1 | 6 → 5 | 67 % → 80 % | 0 → 1 | 3 | gen0 5 → 3, gen1 5, gen2 1, " \
        "crit0 2, crit1 0, crit2 3 |" in text.splitlines()


def test_truncation_loss_per_epoch_and_composition_are_reported(tmp_path: Path) -> None:
    simulated_run(tmp_path)
    results = write_report(tmp_path)
    assert results["truncation"]["maft"]["1"] == {"train": 2 / 36, "test": 0.0}
    assert results["truncation"]["majority_ft"]["1"]["train"] == 1 / 18  # round 1 only
    assert results["truncation"]["base"]["0"] == {"train": None, "test": 0.0}
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "| MAFT | 1 | 5.6 % | 0.0 % |" in lines
    assert "| MAFT | 1 | gen0 | 3 | 0 | 0 | 1 | 3 | 2 | 2.000 → 1.250 (2 ep.) |" in lines


def test_old_evaluations_name_their_consensus_by_round(tmp_path: Path) -> None:
    state = simulated_run(tmp_path)
    payload = state.result("eval/debate/0")
    payload["consensus"] = payload.pop("consensus_final")  # as runs before the rename stored it
    state.finish("eval/debate/0", payload)
    evaluated = write_report(tmp_path)["methods"]["debate"]["iterations"]["0"]["eval"]
    assert "consensus" not in evaluated and evaluated["consensus_final"] == pytest.approx(8 / 9)


def test_adapter_composition_follows_whose_data_each_slot_learns() -> None:
    stats = {f"{role}-{n}": {"counts": {"G": 2 * (role == "generator"), "C-": 1, "C+": 0},
                             "truncated": n} for role in ("generator", "critic") for n in (0, 1)}
    assert composition(stats, SPECS["maft"], 2)["crit1"] == {"G": 0, "C-": 1, "C+": 0,
                                                             "truncated": 1}
    assert set(composition(stats, SPECS["maft_wo_critic"], 2)) == {"gen0", "gen1"}
    assert composition(stats, SPECS["single_ft"], 2) == {"all": {"G": 4, "C-": 4, "C+": 0,
                                                                 "truncated": 2}}
    assert composition(stats, SPECS["majority_ft"], 2)["all"]["C-"] == 2  # generators only
    del stats["critic-1"]["truncated"]  # a run from before truncation counted
    assert composition(stats, SPECS["maft"], 2)["crit1"]["truncated"] == 0
