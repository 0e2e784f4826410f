"""The web console in a real browser (Debian's Chromium) against the real server with a
real store and its live workload: every role opens every page it may, at a desktop and a
phone size; nothing reaches the page from another host; no JavaScript error; a tenant
never receives a rival's job ids or names; the table follows submissions; give-notice
goes through to the contract and the audit log; keyboard reaches every control.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import Watch, chromium
from live import LiveServer

pytestmark = pytest.mark.slow

A, B = "owner-lab", "lessee-lab"
TENANTS = (A, B)
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


@dataclass
class World:
    server: LiveServer
    browser: Any
    own_job: dict[str, str]  # tenant -> id of a job it submitted through the API
    secret: dict[str, str]  # tenant -> that job's (unique) name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir: Path = tmp_path_factory.mktemp("console")
    server = LiveServer(
        f"sqlite:///{workdir / 'console.db'}", workdir, speed=600, extra=("--workload",)
    )
    with chromium() as browser, server as s:
        own, secret = {}, {}
        for t in TENANTS:
            name = f"{t}-secret-{int(time.time())}"
            with s.client(t) as c:
                r = c.post("/v1/jobs", json={"gpus": 8, "duration_s": 86_400, "name": name})
                assert r.status_code == 201, r.text
                own[t], secret[t] = r.json()["id"], name
        deadline = time.monotonic() + 20  # the live workload has started both tenants' jobs
        while time.monotonic() < deadline:
            with s.client("operator") as c:
                tenants = c.get("/v1/cluster").json()["tenants"]
            if all(x["running_jobs"] > 1 for x in tenants):
                break
            time.sleep(0.2)
        yield World(s, browser, own, secret)


def sign_in(w: World, who: str, viewport: str = "desktop") -> tuple[Any, Any, Watch]:
    width, height = VIEWPORTS[viewport]
    ctx = w.browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    watch = Watch(w.server.url)
    watch.attach(page)
    page.goto(w.server.url + "/signin")
    page.fill("#key", w.server.keys[who])
    page.click("button[type=submit]")
    page.wait_for_url(w.server.url + "/")
    return ctx, page, watch


def job_ids(w: World, tenant: str) -> set[str]:
    out: set[str] = set()
    cursor = None
    with w.server.client("operator") as c:
        while True:
            params: dict[str, Any] = {"tenant": tenant, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/jobs", params=params).json()
            out |= {j["id"] for j in page["items"]}
            cursor = page["next_cursor"]
            if not cursor:
                return out


def pages_of(w: World, who: str) -> dict[str, str]:
    """Path -> a selector that only matches when the page shows its real data."""
    if who == "operator":
        return {
            "/": "#gpu-states tbody tr >> nth=1",
            "/tenants": "table.data tbody tr >> nth=1",
            f"/tenants/{B}": "dl.facts",
            "/jobs": "tr[data-job]",
            f"/jobs/{w.own_job[A]}": "#job-state",
            "/nodes": "#rackmap .rack",
            "/services": "main h1",
            "/usage": "#usage tbody tr >> nth=1",
            "/audit": "table.audit tbody tr",
        }
    if who == "auditor":
        return {
            "/": "#gpu-states tbody tr >> nth=1",
            "/tenants": "table.data tbody tr >> nth=1",
            f"/tenants/{A}": "dl.facts",
            "/nodes": "#rackmap .rack",
            "/usage": "#usage tbody tr >> nth=1",
            "/audit": "table.audit tbody tr",
        }
    return {
        "/": "#gpu-states tbody tr",
        f"/tenants/{who}": "dl.facts",
        "/jobs": f'tr[data-job="{w.own_job[who]}"]',
        f"/jobs/{w.own_job[who]}": "#job-state",
        "/nodes": "#rackmap .rack",
        "/services": "main h1",
        "/usage": "#usage tbody tr",
    }


def open_page(page: Any, url: str, ready: str) -> None:
    resp = page.goto(url)
    assert resp is not None and resp.status == 200, f"{url}: {resp and resp.status}"
    page.wait_for_selector(ready, state="attached", timeout=10_000)
    charts = page.locator("[data-chart]").count()
    if charts:  # uPlot drew every chart from the server's series
        # A function, not an expression string: Playwright evaluates a bare
        # expression with eval(), which the console's CSP (rightly) forbids.
        page.wait_for_function(
            "n => document.querySelectorAll('[data-chart] .u-wrap').length >= n",
            arg=charts,
            timeout=10_000,
        )


def no_page_scroll(page: Any) -> None:
    """The page itself never scrolls sideways; wide tables scroll in their own box."""
    over = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth,"
        " Array.from(document.querySelectorAll('.chart, .cards, .rackmap, h1'))"
        "  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).length]"
    )
    assert over[0] <= over[1], f"page is {over[0]} px wide in a {over[1]} px window"
    assert over[2] == 0, "a chart, card row, rack map or title overflows the window"


@pytest.mark.parametrize("who", ["operator", A, B, "auditor"])
def test_each_role_opens_every_page_it_may(world: World, who: str, tmp_path: Path) -> None:
    w = world
    rivals = [t for t in TENANTS if t != who] if who in TENANTS else []
    for viewport in VIEWPORTS:
        ctx, page, watch = sign_in(w, who, viewport)
        try:
            cookie = next(c for c in ctx.cookies() if c["name"] == "cotenant_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            dom: list[str] = []
            for path, ready in pages_of(w, who).items():
                open_page(page, w.server.url + path, ready)
                no_page_scroll(page)
                dom.append(page.content())
                name = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "overview"
                page.screenshot(path=str(tmp_path / f"{who}-{name}-{viewport}.png"), full_page=True)
            assert not watch.errors, watch.errors
            assert not watch.foreign, f"loaded from another host: {watch.foreign}"
            bad = [(u, s) for u, s in watch.statuses if s >= 500]
            assert not bad, bad
            if who == "auditor":
                assert "/jobs" not in page.locator("header nav").inner_html()
                assert page.goto(w.server.url + "/jobs").status == 403
            for rival in rivals:
                forbidden = job_ids(w, rival) | {w.secret[rival]}
                texts = dom + [b for _, b in watch.bodies]
                leaked = sorted(x for x in forbidden for t in texts if x in t)
                assert not leaked, f"{who} received {rival}'s jobs: {leaked[:5]}"
            assert watch.bodies, "no response was checked"
        finally:
            ctx.close()
    assert len(list(tmp_path.glob("*.png"))) == 2 * len(pages_of(w, who))


def test_rival_job_url_is_not_found_like_a_missing_one(world: World) -> None:
    ctx, page, _ = sign_in(world, B)
    try:
        rival = world.own_job[A]
        r1 = page.goto(f"{world.server.url}/jobs/{rival}")
        t1 = page.locator("main").inner_text().replace(rival, "ID")
        r2 = page.goto(f"{world.server.url}/jobs/job-0000-nonexistent")
        t2 = page.locator("main").inner_text().replace("job-0000-nonexistent", "ID")
        assert r1.status == r2.status == 404
        assert t1 == t2 and "no job" in t1
        assert world.secret[A] not in page.content()
    finally:
        ctx.close()


def test_a_job_submitted_through_the_api_shows_in_the_table_within_5s(world: World) -> None:
    ctx, page, watch = sign_in(world, "operator")
    try:
        open_page(page, world.server.url + "/jobs", "tr[data-job]")
        with world.server.client(A) as c:
            job = c.post("/v1/jobs", json={"gpus": 1, "duration_s": 600, "name": "late"}).json()
        t0 = time.monotonic()
        page.wait_for_selector(f'tr[data-job="{job["id"]}"]', timeout=5_000)
        assert time.monotonic() - t0 < 5
        assert not watch.errors, watch.errors
    finally:
        ctx.close()


def test_every_control_is_reachable_by_keyboard(world: World) -> None:
    ctx, page, watch = sign_in(world, "operator")
    try:
        for path in ("/", "/jobs", "/audit", f"/tenants/{B}", "/usage"):
            open_page(page, world.server.url + path, "main h1")
            want = page.evaluate(
                "() => Array.from(document.querySelectorAll("
                "'a[href], button, input:not([type=hidden]), select'))"
                ".filter(e => e.offsetParent !== null).map(e => e.outerHTML)"
            )
            seen: set[str] = set()
            page.locator("body").focus()
            for _ in range(len(want) + 5):
                page.keyboard.press("Tab")
                seen.add(page.evaluate("() => document.activeElement.outerHTML"))
            missed = [x for x in want if x not in seen]
            assert not missed, f"{path}: not reachable by Tab: {missed[:3]}"
        assert not watch.errors, watch.errors
    finally:
        ctx.close()


def test_wrong_and_revoked_keys_return_to_sign_in_with_a_message(world: World) -> None:
    s = world.server
    ctx = world.browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(s.url + "/signin")
        page.fill("#key", "ctk_not-a-key")
        page.click("button[type=submit]")
        assert "unknown or revoked API key" in page.locator(".msg").inner_text()
        with s.client("operator") as c:
            k = c.post("/v1/keys", json={"role": "auditor", "name": "short-lived"}).json()
        page.fill("#key", k["token"])
        page.click("button[type=submit]")
        page.wait_for_url(s.url + "/")
        with s.client("operator") as c:
            assert c.delete(f"/v1/keys/{k['key_id']}").status_code == 200
        page.goto(s.url + "/usage")
        assert page.url.startswith(s.url + "/signin")
        assert "revoked" in page.locator(".msg").inner_text()
        page.goto(s.url + "/")
        assert page.url.startswith(s.url + "/signin")
    finally:
        ctx.close()


def test_bad_values_show_the_error_text_not_a_5xx(world: World) -> None:
    ctx, page, _ = sign_in(world, "operator")
    try:
        r = page.goto(f"{world.server.url}/tenants/{A}/notice?at=next-tuesday")
        assert r.status == 400
        assert "at_s" in page.locator(".msg").inner_text()
        r = page.goto(f"{world.server.url}/jobs?size=100000")
        assert r.status == 400
        assert "size: must be between 1 and 200" in page.locator(".msg").inner_text()
        r = page.goto(f"{world.server.url}/usage?month=2026-13")
        assert r.status == 400 and "month" in page.locator(".msg").inner_text()
    finally:
        ctx.close()


def test_docs_load_with_no_other_host(world: World) -> None:
    ctx = world.browser.new_context()
    page = ctx.new_page()
    watch = Watch(world.server.url)
    watch.attach(page)
    try:
        page.goto(world.server.url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
        assert "cotenant" in page.locator(".swagger-ui .info .title").inner_text()
        page.goto(world.server.url + "/openapi.json")
        assert not watch.foreign, f"loaded from another host: {watch.foreign}"
        assert not watch.errors, watch.errors
    finally:
        ctx.close()


def test_sign_out_ends_the_session(world: World) -> None:
    ctx, page, watch = sign_in(world, A)
    try:
        page.click("header button[type=submit]")
        page.wait_for_url(re.compile(r".*/signin.*"))
        page.goto(world.server.url + "/jobs")
        assert page.url.startswith(world.server.url + "/signin")
        assert not watch.errors, watch.errors
    finally:
        ctx.close()


def test_give_notice_in_the_console_changes_the_contract_and_is_audited(world: World) -> None:
    s = world.server
    with s.client("operator") as c:
        assert c.get(f"/v1/tenants/{B}/contract").json()["notice"]["given_at"] is None
    ctx, page, watch = sign_in(world, "operator")
    try:
        page.goto(f"{s.url}/tenants/{B}")
        page.click("text=Give notice…")
        assert page.locator("table.ramp tbody tr").count() >= 2  # the implied ramp-down
        page.click("#confirm-notice")
        page.wait_for_url(re.compile(rf".*/tenants/{B}\?m=.*"))
        assert "given" in page.locator("#notice-status").inner_text()
        with s.client("operator") as c:
            contract = c.get(f"/v1/tenants/{B}/contract").json()
        assert contract["notice"]["given_at"] is not None
        page.goto(f"{s.url}/audit?kind=contract-notice")
        row = page.locator("table.audit tbody tr").first
        assert "contract-notice" in row.inner_text() and B in row.inner_text()
        page.click("#verify")
        page.wait_for_selector("#verdict .ok", timeout=10_000)
        assert "Chain intact" in page.locator("#verdict").inner_text()
        assert not watch.errors, watch.errors
    finally:
        ctx.close()


def test_console_pages_answer_plain_http_without_a_session(world: World) -> None:
    """No session: every page sends the browser to sign in (never a 5xx or data)."""
    for path in ("/", "/jobs", "/audit", "/console/series", f"/jobs/{world.own_job[A]}"):
        r = httpx.get(world.server.url + path, follow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin"), path
