"""The run's digest (digest.jsonl.gz): what a line holds, and that `report` rebuilds the same
results.md and results.json from state.json and the digest alone (collections/ gone)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

from experiment.collect import Need
from experiment.config import Runtime
from experiment.datasets import curated
from experiment.digest import DIGEST_FILE, FORMAT, read_digest
from experiment.labels import feedback_questions
from experiment.report import write_report
from experiment.state import State
from experiment.views import score_play
from tests.unit.test_experiment_report import BASE, TASK, config, record

METHODS = ("base", "majority", "debate", "majority_ft", "single_ft", "maft", "maft_wo_critic")
TRAIN = [record(0, [2, 2, 2], [2, 2, 2], 2), record(1, [5, 5, 6], [5, 5, 5], 9),
         record(2, [3, 4, 5], [4, 4, 3], 4), record(3, [1, 2, 3], [1, 2, 3], 2),
         record(4, [6, 6, 7], [6, 6, 7], 6, cut=frozenset({(2, 1)})),
         record(5, [8, 8, 1], [8, 8, 8], 8, cut=frozenset({(1, 0)}))]
TEST = [{**record(i, first, last, 4), "question": f"test question {i}"}
        for i, (first, last) in enumerate([([4, 4, 1], [4, 4, 4]), ([1, 2, 3], [2, 2, 3]),
                                           ([4, 5, 5], [5, 5, 5])])]


def _store(state: State, need: Need, records: list[dict[str, Any]]) -> str:
    key = need.key(state.config)
    folder = state.path.parent / "collections"
    folder.mkdir(exist_ok=True)
    (folder / f"{key}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    state.data["collections"][key] = {"need": need.to_json(), "society_version": 0}
    return key


def simulated_run(out: Path, **changes: Any) -> State:
    """One iteration recorded as the runner records it (curation and scoring for real; no
    server, no training), with the debates in collections/."""
    cfg = config(train_size=len(TRAIN), test_size=len(TEST), iterations=1, methods=METHODS,
                 **changes)
    state = State.open(out, cfg, Runtime(out_dir=out, model_path=Path("/m/Smol")), ["run"])
    keys = {split: _store(state, Need(split, "debate", BASE, BASE), records)
            for split, records in (("train", TRAIN), ("test", TEST))}
    for spec in cfg.specs():
        for it in range(2 if spec.trains else 1):
            if it:
                slots, stats = curated(TRAIN, spec, cfg, TASK, keys["train"])
                adapters = {s: {"trained": bool(v), "steps": 2, "epoch_losses": [2.0, 1.25]}
                            for s, v in slots.items()}
                state.finish(f"train/{spec.key}/1", {"data": {**stats,
                                                              "collection": keys["train"]},
                                                     "adapters": adapters})
            agents = 1 if spec.play == "single" else 3
            state.finish(f"eval/{spec.key}/{it}", {**score_play(TEST, spec.play, agents, TASK),
                                                   "collection": keys["test"]})
    return state


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in gzip.decompress(path.read_bytes()).decode().splitlines()]


def test_report_rebuilds_every_table_from_state_and_digest_alone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    simulated_run(run, labels="feedback", feedback_share=0.5)
    results = write_report(run)
    digest = (run / DIGEST_FILE).read_bytes()
    committed = tmp_path / "committed"
    shutil.copytree(run, committed, ignore=shutil.ignore_patterns("collections"))
    again = write_report(committed)
    assert (committed / "results.md").read_text() == (run / "results.md").read_text()
    assert again == results
    assert (committed / DIGEST_FILE).read_bytes() == digest  # kept, not rewritten
    assert results["per_agent"]["maft"]["1"] and results["curation"]["maft"]["1"]
    assert results["truncation"]["maft"]["1"]["train"] == 2 / 36


def test_digest_lines_hold_answers_cuts_consensus_and_labels(tmp_path: Path) -> None:
    state = simulated_run(tmp_path, labels="feedback", feedback_share=0.5)
    write_report(tmp_path)
    head, *lines = _lines(tmp_path / DIGEST_FILE)
    assert head == {"format": FORMAT, "run_id": state.run_id}
    train = [x for x in lines if x["s"] == "train"]
    assert [x["i"] for x in train] == list(range(6)) and len(lines) == 9
    assert train[4]["a"] == [["6", "6", "7"], ["6", "6", "7"]] and train[4]["t"] == [[2, 1]]
    assert "t" not in train[0] and train[3]["c1"] == train[3]["cf"] == 0.333
    assert train[3]["q"] == "What is the result of 3+0?" and train[3]["r"] == "2"
    fed = feedback_questions(6, 0.5, state.config.seed)
    for line in train:  # Majority FT keeps its own vote labels; the others get feedback
        source = "feedback" if line["i"] in fed else "vote"
        assert set(line["l"]) == {"majority_ft", "single_ft", "maft", "maft_wo_critic"}
        assert line["l"]["maft"] in ("no_majority", [line["r"] if source == "feedback"
                                                     else line["v"], source])
    assert train[2]["l"]["majority_ft"] == "no_majority"  # round 1 was 3 / 4 / 5
    assert not any("l" in x for x in lines if x["s"] == "test")


def test_a_question_is_written_once_per_split(tmp_path: Path) -> None:
    state = simulated_run(tmp_path)
    shared = Need("train", "debate", ("g0", "g1", "g2"), BASE)  # the same questions again
    _store(state, shared, TRAIN)
    state.save()
    write_report(tmp_path)
    train = [x for x in _lines(tmp_path / DIGEST_FILE)[1:] if x["s"] == "train"]
    assert len(train) == 12 and len({x["c"] for x in train}) == 2
    assert all("q" in x and "r" in x for x in train[:6])
    assert not any("q" in x or "r" in x for x in train[6:])
    for read in read_digest(tmp_path / DIGEST_FILE).values():
        if read[0]["question"].startswith("What"):
            assert [(r["question"], r["reference"]) for r in read] == \
                [(r["question"], r["reference"]) for r in TRAIN]


def test_digest_is_compact(tmp_path: Path) -> None:
    simulated_run(tmp_path)
    write_report(tmp_path)
    collections = sum(p.stat().st_size for p in (tmp_path / "collections").iterdir())
    assert (tmp_path / DIGEST_FILE).stat().st_size < collections / 10
