"""The console without a model: sessions, cookies, CSRF, scopes, and what each page shows of
stored data (Postgres, the real app over ASGI). The browser tests drive it end to end."""

from __future__ import annotations

import re
import stat
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from maft.db import crud
from maft.db.models import Debate
from services.gateway.settings import GatewaySettings
from tests.fixtures.gateway import Keys, gateway_client, make_keys
from tests.fixtures.trainer import seed_debate

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(offline_settings: GatewaySettings, tmp_path: Path) -> GatewaySettings:
    """Offline gateway whose home (and so its console secret) is a fresh folder."""
    return offline_settings.model_copy(update={"home": tmp_path / "home"})


@pytest.fixture
def keys(offline_db: sessionmaker[Session]) -> Keys:
    """Query, admin and revoked keys."""
    return make_keys(offline_db)


def owner(sessions: sessionmaker[Session], plaintext: str) -> uuid.UUID:
    """The id of an API key, to store debates as asked by it."""
    with sessions() as db:
        key = crud.authenticate(db, plaintext=plaintext)
    assert key is not None
    return key.id


def csrf(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = TOKEN.search(html)
    assert found, html[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str, next_url: str = "/console"
                  ) -> httpx.Response:
    """Fill the sign-in form as a browser would."""
    form = await client.get("/console/login")
    return await client.post("/console/login", data={
        "api_key": key, "csrf_token": csrf(form.text), "next": next_url})


def console_paths(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(method, path) of every console route, path parameters filled in."""
    app = client._transport.app  # type: ignore[attr-defined]
    out = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/console") and not path.startswith("/console/login"):
            filled = path.replace("{debate_id}", str(uuid.uuid4())).replace(
                "{run_id}", str(uuid.uuid4())).replace("{version}", "0")
            out.extend((m, filled) for m in sorted(route.methods))  # type: ignore[attr-defined]
    return out


async def test_nothing_without_a_session(settings: GatewaySettings) -> None:
    async with gateway_client(settings) as client:
        paths = console_paths(client)
        answers = {(m, p): await client.request(m, p) for m, p in paths}
    assert len(paths) >= 14, paths
    for (method, path), response in answers.items():
        if method == "GET":
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"].startswith("/console/login?next=")
        else:
            assert response.status_code in (401, 403), (method, path, response.status_code)
        assert "csrf_token" not in response.text and "maft_" not in response.text


async def test_sign_in_sets_a_strict_httponly_expiring_cookie(
        settings: GatewaySettings, keys: Keys) -> None:
    async with gateway_client(settings) as client:
        bad = await sign_in(client, "maft_nope_nope")
        good = await sign_in(client, keys.query, "/console/debates?status=failed")
        page = await client.get("/console/debates")
    assert bad.status_code == 401 and "Unknown or revoked" in bad.text
    assert good.status_code == 303 and good.headers["location"] == "/console/debates?status=failed"
    cookie = next(c for c in good.headers.get_list("set-cookie") if c.startswith("maft_console="))
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in cookie.lower() and "max-age=28800" in cookie.lower()
    assert keys.query not in cookie  # only the key's id, signed
    assert page.status_code == 200 and "Debates" in page.text
    secret = settings.home / "console-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


async def test_secure_cookie_setting_and_the_secret_survives_a_restart(
        settings: GatewaySettings, keys: Keys) -> None:
    secure = settings.model_copy(update={"console_secure_cookie": True})
    async with gateway_client(secure, base_url="https://gateway") as client:
        response = await sign_in(client, keys.admin)
        cookie = client.cookies.get("maft_console")
    async with gateway_client(settings) as restarted:
        restarted.cookies.set("maft_console", cookie or "")
        page = await restarted.get("/console/runs")
    assert "secure" in response.headers["set-cookie"].lower()
    assert page.status_code == 200 and "Start a training run" in page.text


async def test_forged_signed_out_and_revoked_sessions_are_refused(
        settings: GatewaySettings, keys: Keys, offline_db: sessionmaker[Session]) -> None:
    async with gateway_client(settings) as client:
        await sign_in(client, keys.admin)
        cookie = client.cookies["maft_console"]
        body, mac = cookie.split(".")
        client.cookies.set("maft_console", body[:-2] + "AA." + mac)
        forged = await client.get("/console/debates")
        client.cookies.set("maft_console", cookie)
        overview = await client.get("/console")
        out = await client.post("/console/logout", data={"csrf_token": csrf(overview.text)})
        client.cookies.set("maft_console", cookie)  # a copy of the old cookie
        after = await client.get("/console/debates")
        await sign_in(client, keys.query)
        with offline_db() as db, db.begin():
            crud.revoke_api_key(db, key=keys.query.split("_")[1])
        revoked = await client.get("/console/debates")
    assert forged.status_code == 303 and overview.status_code == 200
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert after.status_code == 303 and revoked.status_code == 303


async def test_query_keys_see_debates_only_and_every_post_needs_the_csrf_token(
        settings: GatewaySettings, keys: Keys, offline_db: sessionmaker[Session]) -> None:
    seed_debate(offline_db, a=2, b=3, answers=[[5, 5, 4], [5, 5, 5]], base="offline-base",
                api_key_id=owner(offline_db, keys.query))
    with offline_db() as db:
        debate_id = crud.debate_records(db)[0].id
    async with gateway_client(settings) as client:
        await sign_in(client, keys.query)
        page = await client.get(f"/console/debates/{debate_id}")
        runs = await client.get("/console/runs")
        societies = await client.get("/console/societies")
        url = f"/console/debates/{debate_id}/feedback"
        missing = await client.post(url, data={"correct_answer": "5"})
        wrong = await client.post(url, data={"correct_answer": "5", "csrf_token": "x"})
        header = await client.post(url, data={"correct_answer": "5"},
                                   headers={"X-CSRF-Token": csrf(page.text)})
        login_without = await client.post("/console/login", data={"api_key": keys.admin})
    assert page.status_code == 200 and "Training runs" not in page.text
    assert runs.status_code == societies.status_code == 403
    assert "admin API key" in runs.text and "<html" in runs.text
    assert missing.status_code == wrong.status_code == 403 and "CSRF" in wrong.text
    assert header.status_code == 303
    assert login_without.status_code == 403
    with offline_db() as db:
        assert [f.correct_answer for f in crud.get_debate(
            db, debate_id=uuid.UUID(debate_id)).feedback] == ["5"]


async def test_debate_page_grid_votes_and_what_training_made_of_it(
        settings: GatewaySettings, keys: Keys, offline_db: sessionmaker[Session]) -> None:
    seed_debate(offline_db, a=2, b=3, answers=[[5, 5, 4], [5, None, 5]], base="offline-base",
                feedback="5")
    with offline_db() as db, db.begin():
        debate = db.query(Debate).one()
        run = crud.queue_run(db, options={}, trigger="api")
        crud.record_outcomes(db, run_id=run.id, rows=[
            {"debate_id": debate.id, "role": "generator", "agent_index": 2, "outcome": "wrong",
             "label": "5", "label_source": "feedback"},
            {"debate_id": debate.id, "role": "critic", "agent_index": 0, "outcome": "C+",
             "label": "5", "label_source": "feedback"}])
        debate_id, run_id = debate.id, run.id
    async with gateway_client(settings) as client:
        await sign_in(client, keys.admin)
        page = (await client.get(f"/console/debates/{debate_id}")).text
    assert page.count('class="round"') == 2 and page.count("<article") == 6
    assert "5 × 2" in page and "4 × 1" in page and "unparsed × 1" in page
    assert "gen-" not in page and "offline-base" in page  # v0: the base model everywhere
    assert "dropped: answer differs from the label" in page
    assert "critic example: kept correct (C+)" in page and f"/console/runs/{run_id}" in page
    assert "Final answer" in page and "correct answer <strong>5</strong>" in page


async def test_debate_filters(settings: GatewaySettings, keys: Keys,
                              offline_db: sessionmaker[Session]) -> None:
    mine = owner(offline_db, keys.query)
    seed_debate(offline_db, a=1, b=1, answers=[[2, 2, 2], [2, 2, 2]], base="offline-base",
                feedback="2", api_key_id=mine)
    seed_debate(offline_db, a=1, b=2, answers=[[3, 3, 4], [3, 3, 4]], base="offline-base",
                api_key_id=mine)
    # Another key's debate: a query key never sees it (admin keys see every debate).
    seed_debate(offline_db, a=1, b=3, answers=[[4, 4, 4], [4, 4, 4]], base="offline-base",
                api_key_id=owner(offline_db, keys.admin))
    async with gateway_client(settings) as client:
        await sign_in(client, keys.query)

        async def questions(query: str) -> list[str]:
            html = (await client.get(f"/console/debates?{query}")).text
            return re.findall(r"What is the result of (\d\+\d)\?</a>", html)

        found = {q: await questions(q) for q in (
            "", "feedback=yes", "feedback=no", "consensus=unanimous", "consensus=split",
            "society=0", "society=3", "status=failed", "task=arithmetic&since=2000-01-01T00:00")}
    assert sorted(found[""]) == ["1+1", "1+2"]
    assert found["feedback=yes"] == found["consensus=unanimous"] == ["1+1"]
    assert found["feedback=no"] == found["consensus=split"] == ["1+2"]
    assert len(found["society=0"]) == 2 and found["society=3"] == found["status=failed"] == []
    assert len(found["task=arithmetic&since=2000-01-01T00:00"]) == 2


async def test_societies_and_overview_render_scores_and_dashes(
        settings: GatewaySettings, keys: Keys) -> None:
    async with gateway_client(settings) as client:
        await sign_in(client, keys.admin)
        societies = await client.get("/console/societies")
        overview = await client.get("/console")
        confirm = await client.get("/console/societies/0/activate")
        htmx = await client.get("/static/vendor/htmx-2.0.8/htmx.min.js")
    assert societies.status_code == 200 and 'id="v0"' in societies.text
    assert "<svg" in societies.text and "Accuracy per society version" in societies.text
    assert "–" in societies.text  # no diversity figures recorded: a dash, not a crash
    assert overview.status_code == 200 and "Needs attention" in overview.text
    assert confirm.status_code == 200 and "Yes, activate v0" in confirm.text
    assert htmx.status_code == 200 and "htmx" in htmx.text
