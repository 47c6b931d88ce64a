"""`digest.jsonl.gz`: a compact copy of every debate of a run, committed with its results, from
which `report` rebuilds every table where `collections/` (the full transcripts) is absent.

Line 1: {"format": FORMAT, "run_id": ...}. Then one line per debate, collection by collection
(in state.json's order: by key), by question index; compact JSON keys:
- c: collection key; s, p: its split and play (null if the state does not register it);
  i: question index in the split.
- q, r: question and reference answer, only where they differ from the previous line of the
  same split and index (a question recurs in every collection of its split).
- a: parsed answers, one row per round, one column per agent (null: unparseable).
- t: [round, agent] of each response cut at the token limit (finish_reason "length"); absent
  when none was.
- v: the debate's final answer (its final-round vote); c1, cf: round-1 and final-round
  consensus (share of agents giving the vote), 3 decimals, for readers (the report recounts).
- l (train collections): per training method, [label, source] or the reason curation dropped
  the debate (no_majority, low_consensus, no_label, duplicate).
Texts, prompts and summaries are left out: no table needs them. Read back, each line becomes a
collection record whose turns carry the answers and finish reasons, empty texts, and critic
prompts that repeat the agent's own (empty) earlier answers, so every view and the product's
curation read it as they read the full record.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from experiment.collect import read_records
from experiment.state import State
from experiment.views import consensus, round_turns
from maft.enums import Role
from maft.tasks import Task, get_task

DIGEST_FILE = "digest.jsonl.gz"
FORMAT = "maft-experiment-digest/1"
Records = dict[str, list[dict[str, Any]]]  # collection key -> its debates, by question index
Labels = dict[str, dict[str, list[Any]]]  # collection key -> method -> verdict per debate


def _agents(record: dict[str, Any]) -> int:
    return 1 + max(t["agent_index"] for t in record["turns"] if t["role"] != Role.SUMMARIZER)


def _share(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def encode(key: str, need: dict[str, Any] | None, record: dict[str, Any], task: Task,
           labels: dict[str, Any]) -> dict[str, Any]:
    """One debate's digest line (without the question delta: see write_digest)."""
    n = _agents(record)
    rounds = max(t["round"] for t in record["turns"])
    turns = [round_turns(record, k, n) for k in range(1, rounds + 1)]
    line: dict[str, Any] = {
        "c": key, "s": need and need["split"], "p": need and need["play"], "i": record["index"],
        "q": record["question"], "r": record["reference"],
        "a": [[t["answer"] for t in row] for row in turns]}
    cut = [[t["round"], t["agent_index"]] for row in turns for t in row
           if t.get("finish_reason") == "length"]
    if cut:
        line["t"] = cut
    line.update(v=record["final_answer"], c1=_share(consensus(record, "majority", n, task)),
                cf=_share(consensus(record, "debate", n, task)))
    if labels:
        line["l"] = labels
    return line


def _turn(round_no: int, agent: int, answer: str | None, cut: bool) -> dict[str, Any]:
    role = Role.GENERATOR if round_no == 1 else Role.CRITIC
    own = [{"role": "assistant", "content": ""}] * (round_no - 1)  # its earlier answers
    return {"round": round_no, "agent_index": agent, "role": str(role), "lora_name": "",
            "messages": own, "text": "", "answer": answer, "completion_tokens": 0,
            "finish_reason": "length" if cut else "stop"}


def decode(line: dict[str, Any]) -> dict[str, Any]:
    """A collection record from a digest line (its question and reference filled in)."""
    cut = {tuple(x) for x in line.get("t", [])}
    turns = [_turn(k, n, answer, (k, n) in cut) for k, row in enumerate(line["a"], start=1)
             for n, answer in enumerate(row)]
    return {"index": line["i"], "question": line["q"], "reference": line["r"],
            "final_answer": line["v"], "consensus": line["cf"], "turns": turns}


def _verdict(found: dict[str, str]) -> Any:
    return found.get("drop") or [found["label"], found["source"]]


def _lines(state: State, debates: Records, labels: Labels) -> Iterator[dict[str, Any]]:
    task = get_task(state.config.task, **state.config.task_options)
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for key, records in debates.items():
        need = state.data["collections"].get(key, {}).get("need")
        by_method = labels.get(key, {})
        for pos, record in enumerate(records):
            line = encode(key, need, record, task,
                          {m: _verdict(v[pos]) for m, v in by_method.items()})
            slot = (line["s"] or key, line["i"])
            if seen.get(slot) == (line["q"], line["r"]):
                del line["q"], line["r"]
            seen[slot] = (record["question"], record["reference"])
            yield line


def write_digest(state: State, debates: Records, labels: Labels) -> Path:
    """Write `digest.jsonl.gz` next to state.json (atomically, byte-stable for git)."""
    path = state.path.parent / DIGEST_FILE
    head = {"format": FORMAT, "run_id": state.run_id}
    text = "".join(json.dumps(x, separators=(",", ":"), ensure_ascii=False) + "\n"
                   for x in [head, *_lines(state, debates, labels)])
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    tmp.replace(path)
    return path


def read_digest(path: Path) -> Records:
    """Every collection's records from a digest (question deltas resolved)."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    if not lines or json.loads(lines[0]).get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    out: Records = {}
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for text in lines[1:]:
        line = json.loads(text)
        slot = (line["s"] or line["c"], line["i"])
        if "q" in line:
            seen[slot] = (line["q"], line["r"])
        line["q"], line["r"] = seen[slot]
        out.setdefault(line["c"], []).append(decode(line))
    return out


def collection_keys(state: State) -> list[str]:
    """Every collection the run registered or a phase refers to, in state order."""
    found = list(state.data["collections"])
    for payload in state.data["phases"].values():
        if isinstance(payload, dict):
            found.append(payload.get("collection") or payload.get("data", {}).get("collection"))
    found = [key for key in found if key]
    return list(dict.fromkeys(found))


def load_debates(state: State, keys: Iterable[str] | None = None) -> Records:
    """The debates of each collection: from collections/ where its file is, else from the
    digest (where there is one); collections found in neither are left out."""
    folder = state.path.parent / "collections"
    digest = state.path.parent / DIGEST_FILE
    stored: Records | None = None
    out: Records = {}
    for key in collection_keys(state) if keys is None else keys:
        path = folder / f"{key}.jsonl"
        if path.is_file():
            out[key] = [r for _, r in sorted(read_records(path).items())]
            continue
        if stored is None:
            stored = read_digest(digest) if digest.is_file() else {}
        if key in stored:
            out[key] = stored[key]
    return out
