"""What the CLI prints when something is wrong: readable, no literal markup, runnable hints."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from rich.console import Console

from maft.cli import client, up
from maft.cli.settings import CliSettings


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> Console:
    """The CLI's console, recording instead of writing to the terminal."""
    console = Console(record=True, width=300, color_system=None)
    monkeypatch.setattr(up, "console", console)
    monkeypatch.setattr(client, "console", console)
    return console


def test_a_dead_child_is_reported_with_its_log_and_no_markup(printed: Console,
                                                             tmp_path: Path) -> None:
    log = tmp_path / "inference.log"
    log.write_text("starting\n[red]ValueError: [bold] not markup[/bold]\n")
    up.report_exit(up.Child("inference", ["x"], {}, log))
    text = printed.export_text()
    assert "inference exited; last lines of" in text and "[red]inference" not in text
    assert "[red]ValueError: [bold] not markup[/bold]" in text  # the log, verbatim


def test_the_banner_names_a_maft_command_that_runs_from_any_shell(
        printed: Console, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / ".venv" / "bin" / "maft"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "up"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv is not active
    up.banner("http://127.0.0.1:8000", "k")
    assert f"{script} ask 'What is 12+7?'" in printed.export_text()
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin")
    assert up.maft_command() == "maft"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers (a gateway stuck on inference)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(sock.accept()[0]), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    for conn in accepted:
        conn.close()
    sock.close()


def test_a_gateway_that_does_not_answer_is_not_called_unreachable(
        printed: Console, silent_server: str) -> None:
    settings = CliSettings(gateway_url=silent_server, api_key="k")
    with pytest.raises(typer.Exit):
        client.call(settings, "GET", "/v1/debates", timeout=0.5)
    text = printed.export_text()
    assert "did not answer within 0 s" in text or "did not answer within 1 s" in text
    assert "/readyz" in text and "maft up" not in text


def test_an_unreachable_gateway_says_how_to_start_it(printed: Console) -> None:
    settings = CliSettings(gateway_url="http://127.0.0.1:9", api_key="k")
    with pytest.raises(typer.Exit):
        client.call(settings, "GET", "/v1/debates", timeout=2)
    assert "start it with `maft up`" in printed.export_text()
