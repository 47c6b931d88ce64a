"""The console in a real browser (headless Chromium) against a real gateway (uvicorn), Postgres,
the tiny vLLM server and a Celery trainer worker: sign in with the keyboard, ask and watch the
rounds arrive, give feedback, start a training run and watch it, activate a version, sign out and
be refused. Every page is screenshotted; no page may request another host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys as K
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from maft.db import crud
from maft.db.session import make_session_factory
from tests.fixtures.browser import Browser
from tests.fixtures.db import reset
from tests.fixtures.gateway import Keys, LiveServer, make_keys, settings_for
from tests.fixtures.trainer import REDIS_URL, Worker, seed_training_debates, trainer_env
from tests.fixtures.vllm import VllmServer

pytestmark = [pytest.mark.browser, pytest.mark.vllm, pytest.mark.training]


@pytest.fixture
def db(pg_engine: Engine, vllm_tiny: VllmServer) -> sessionmaker[Session]:
    """Empty database, society v0 = the tiny model, six debates to learn from."""
    reset(pg_engine, vllm_tiny.served_name)
    sessions = make_session_factory(pg_engine)
    seed_training_debates(sessions, vllm_tiny.served_name)
    return sessions


@pytest.fixture
def live(pg_url: str, vllm_tiny: VllmServer, db: sessionmaker[Session], tmp_path: Path
         ) -> Iterator[LiveServer]:
    """The gateway on a real port, with the test Redis as its training queue."""
    settings = settings_for(pg_url, vllm_tiny.url, vllm_tiny.served_name, broker_url=REDIS_URL,
                            home=tmp_path / "gateway-home")
    with LiveServer(settings) as server:
        yield server


def tab_to(b: Browser, element_id: str, limit: int = 80) -> None:
    """Press Tab until the element has the focus (the keyboard path a user takes)."""
    for _ in range(limit):
        if b.driver.switch_to.active_element.get_attribute("id") == element_id:
            return
        b.driver.switch_to.active_element.send_keys(K.TAB)
    raise AssertionError(f"#{element_id} is not reachable with Tab")


def focus_ring(b: Browser) -> str:
    """The focused element's outline style (a visible focus ring is not 'none')."""
    return str(b.driver.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle"))


def sign_in_by_keyboard(b: Browser, url: str, key: str) -> None:
    """Open a console page, get sent to the sign-in form, type the key and press Enter."""
    b.driver.get(f"{url}/console/debates")
    b.wait(lambda: "/console/login" in b.driver.current_url, what="the sign-in redirect")
    assert b.driver.switch_to.active_element.get_attribute("id") == "api_key"  # autofocus
    b.driver.switch_to.active_element.send_keys(key, K.ENTER)
    b.wait(lambda: b.driver.current_url.endswith("/console/debates"), what="signed in")


def page_checks(b: Browser, name: str) -> None:
    """Screenshot the page and check its form controls are labelled."""
    b.shot(name)
    assert b.unlabelled() == [], name


def ask_and_watch(b: Browser, url: str, question: str, **fields: str
                  ) -> list[tuple[float, int, bool]]:
    """Ask a question; return (time, rounds shown, final answer shown) at each change."""
    b.driver.get(f"{url}/console/ask")
    page_checks(b, "02-ask")
    b.driver.find_element(By.ID, "question").send_keys(question)
    for field, value in fields.items():
        box = b.driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    b.driver.find_element(By.ID, "max_tokens").send_keys(K.ENTER)
    seen: list[tuple[float, int, bool]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = (len(b.driver.find_elements(By.CSS_SELECTOR, "#rounds .round")),
                 bool(b.driver.find_elements(By.ID, "final-answer")))
        if not seen or state != seen[-1][1:]:
            seen.append((time.monotonic(), *state))
            if state == (1, False):
                b.shot("03-debate-streaming")
        if state[1]:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"the debate did not finish: {seen}")


def feedback_by_keyboard(b: Browser) -> None:
    """Tab to the feedback form, type the answer, Tab to the button and press Enter."""
    tab_to(b, "correct_answer")
    assert focus_ring(b) != "none"
    b.driver.switch_to.active_element.send_keys("7")
    tab_to(b, "note")
    b.driver.switch_to.active_element.send_keys("checked by hand", K.TAB)
    assert b.driver.switch_to.active_element.text == "Save feedback"
    b.driver.switch_to.active_element.send_keys(K.ENTER)
    b.wait(lambda: "correct answer 7" in b.driver.find_element(By.ID, "feedback").text,
           what="the feedback on the page")


def start_run_and_watch(b: Browser, url: str) -> tuple[list[str], str]:
    """Start a run from the form; return the progress texts seen and the final status."""
    b.driver.get(f"{url}/console/runs")
    page_checks(b, "06-runs")
    b.driver.find_element(By.ID, "r-max_steps").send_keys("2")
    b.driver.find_element(By.ID, "r-eval_size").send_keys("4")
    b.driver.find_element(By.CSS_SELECTOR, "details.start button[type=submit]").click()
    b.wait(lambda: "/console/runs/" in b.driver.current_url, what="the run page")
    seen: list[str] = []
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        status, percent = b.texts("run-status", "run-percent")  # htmx swaps them every 2 s
        text = f"{status} {percent}"
        if not seen or text != seen[-1]:
            seen.append(text)
            if status == "running" and len(seen) == 2:
                b.shot("07-run-live")
        if status in ("succeeded", "failed", "skipped"):
            return seen, status
        time.sleep(0.2)
    raise AssertionError(f"the run did not end: {seen}")


def activate(b: Browser, url: str, version: int) -> None:
    """From the societies page, open the confirmation for `version` and confirm it."""
    b.driver.get(f"{url}/console/societies")
    page_checks(b, "08-societies")
    b.driver.find_element(By.CSS_SELECTOR, f'a[href="/console/societies/{version}/activate"]'
                          ).click()
    page_checks(b, "09-activate-confirm")
    for force in b.driver.find_elements(By.ID, "force"):  # a society the gate rejected
        force.click()
    b.driver.find_element(By.ID, "confirm").click()
    b.wait(lambda: "activated=" in b.driver.current_url, what="the activation")


def test_console_end_to_end(live: LiveServer, db: sessionmaker[Session], browser: Browser,
                            workers: list[Worker], pg_url: str, vllm_tiny: VllmServer,
                            tmp_path: Path) -> None:
    keys: Keys = make_keys(db)
    workers.append(Worker(trainer_env(pg_url, vllm_tiny, tmp_path / "home"),
                          tmp_path / "worker.log"))
    b, url = browser, live.url
    b.driver.get(f"{url}/console/login")
    page_checks(b, "00-sign-in")
    sign_in_by_keyboard(b, url, keys.admin)
    page_checks(b, "01-debates")

    seen = ask_and_watch(b, url, "What is 3+4?", rounds="2", max_tokens="48", temperature="1")
    page_checks(b, "04-debate")
    rounds = b.driver.find_elements(By.CSS_SELECTOR, "#rounds .round")
    cells = b.driver.find_elements(By.CSS_SELECTOR, "#rounds .cell")
    assert len(rounds) == 2 and len(cells) == 6, seen
    # Streamed: round 1 was on the page alone, while round 2 was still being debated (round 2
    # and the outcome arrive together: the debate ends when its last round does).
    assert any(n == 1 and not done for _, n, done in seen), seen
    assert "gen-" not in cells[0].text and vllm_tiny.served_name in cells[0].text
    feedback_by_keyboard(b)
    b.shot("05-debate-feedback")

    progress, status = start_run_and_watch(b, url)
    page_checks(b, "07-run-done")
    assert status == "succeeded", (progress, b.driver.find_element(By.ID, "run-live").text)
    assert any(p.startswith("running") for p in progress), progress
    assert "generator-0" in b.driver.find_element(By.ID, "run-live").text

    with db() as session:
        active = crud.active_society(session).version
        newest = crud.list_societies(session)[0].version
    target = 0 if active != 0 else newest  # roll back, or activate what the gate rejected
    activate(b, url, target)
    assert b.driver.find_element(By.ID, "active-version").text == f"v{target}"
    with db() as session:
        assert crud.active_society(session).version == target
    b.driver.get(f"{url}/console")
    page_checks(b, "10-overview")

    cookie = b.driver.get_cookie("maft_console")
    b.driver.find_element(By.CSS_SELECTOR, ".signout button").click()
    b.wait(lambda: b.driver.current_url.endswith("/console/login"), what="signed out")
    b.driver.get(f"{url}/console/debates")
    assert "/console/login" in b.driver.current_url  # refused without a session
    assert cookie is not None
    b.driver.add_cookie({"name": "maft_console", "value": cookie["value"], "path": "/"})
    b.driver.get(f"{url}/console/runs")
    assert "/console/login" in b.driver.current_url  # the old cookie is refused too
    b.shot("11-signed-out")

    sign_in_by_keyboard(b, url, keys.query)
    nav = b.driver.find_element(By.CSS_SELECTOR, "header nav").text
    b.driver.get(f"{url}/console/societies")
    assert "Training runs" not in nav and "admin API key" in b.driver.page_source
    assert b.foreign(url) == [], "the console requested another host"
    assert any(u.endswith("/htmx.min.js") for u in b.requests())  # the log did record requests
    assert any("/events" in u for u in b.requests())  # including the debate's stream

