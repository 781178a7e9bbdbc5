"""The web approvals page in a real headless Chromium against a real ``smithers serve`` on
127.0.0.1: sign in, the inbox, approving and denying, live updates, signed links, escaping,
viewers, double clicks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from smithers.runtime.links import sign
from tests.integration.helpers import HANG_GUARD
from tests.service.helpers import opened_store
from tests.service.web_helpers import XSS, Site, csrf_of, screenshot, site

pytestmark = pytest.mark.slow

WAIT = HANG_GUARD * 1000  # ms: Playwright's bound, reached only when something hangs
RELEASE_RUNS = [
    "a",
    "approve",
    "deny",
    "live",
    "link",
    "tamper",
    "viewer",
    "double",
    "keys",
    "watched",
]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server for the module over parked release runs and one hotfix run."""
    with site(tmp_path_factory.mktemp("web"), RELEASE_RUNS, ["b"]) as served:
        yield served


@pytest.fixture
def context(web: Site, chromium: Any) -> Iterator[Any]:
    """A fresh browser context (its own cookies); any alert() fails the test."""
    ctx = chromium.new_context(viewport={"width": 1100, "height": 900}, timezone_id="Asia/Tokyo")
    ctx.set_default_timeout(WAIT)
    dialogs: list[str] = []
    ctx.on("page", lambda p: p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss())))
    yield ctx
    ctx.close()
    assert dialogs == []


def sign_in(context: Any, web: Site, name: str = "alice", path: str = "/") -> Any:
    """A page signed in as ``name`` through the sign-in form, at ``path``."""
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(web.served.url + path)
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    page.get_by_label("Token").fill(web.tokens[name])
    page.get_by_label("Token").press("Enter")
    expect(page.locator("header .who")).to_contain_text(name)
    return page


def gate_url(web: Site, run_id: str) -> str:
    """The gate page of a release run's approval."""
    return f"{web.served.url}/runs/{run_id}/gates/approve-deploy"


def decisions(web: Site, run_id: str) -> list[Any]:
    """The run's approval.decided events."""
    with opened_store(web.served.store) as s:
        return [e for e in s.events(run_id=run_id) if e.type == "approval.decided"]


def test_sign_in_with_a_token_sets_a_strict_http_only_cookie(context: Any, web: Site) -> None:
    """Pasting a token signs in (HttpOnly, SameSite=Strict cookie); signing out ends it."""
    from playwright.sync_api import expect

    page = sign_in(context, web)
    cookie = next(c for c in context.cookies() if c["name"] == "smithers_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read either cookie
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.goto(web.served.url + "/runs")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fruns"))


def test_the_inbox_lists_the_gates_of_two_runs_and_filters(context: Any, web: Site) -> None:
    """The inbox shows title, summary, metadata and waiting since for gates of two runs, and
    filters by workflow and by run."""
    from playwright.sync_api import expect

    page = sign_in(context, web)
    rows = page.locator("li.gate-row")
    expect(rows.filter(has=page.locator("a[href='/runs/a']"))).to_have_count(1)
    expect(rows.filter(has=page.locator("a[href='/runs/b']"))).to_have_count(1)
    row = rows.filter(has=page.locator("a[href='/runs/a']"))
    expect(row.locator("h2")).to_contain_text(f"Deploy v1.4.2 to prod {XSS}")
    expect(row.locator(".summary")).to_contain_text("3 to add")
    expect(row.locator("dl.meta")).to_contain_text("9f2c1ab")
    when = row.locator("time")
    assert when.get_attribute("title") == f"{when.get_attribute('datetime')} (UTC)"
    assert "Z" not in when.inner_text()  # shown in the viewer's zone (Tokyo here)
    screenshot(page, "inbox.png")
    page.get_by_label("Workflow").select_option("hotfix")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("staging")
    page.goto(web.served.url + "/?run=a")
    expect(rows).to_have_count(1)


def test_approve_with_a_note_finishes_the_run(context: Any, web: Site) -> None:
    """Approving from the gate page records the note in the audit, shows the outcome, and
    the run page shows the run finished."""
    from playwright.sync_api import expect

    page = sign_in(context, web, path="/runs/approve/gates/approve-deploy")
    svg = page.locator("svg.graph")
    expect(svg.locator("[data-node='approve-deploy']")).to_have_attribute(
        "data-state", "waiting-approval"
    )
    expect(svg.locator("[data-node='build']")).to_have_attribute("data-state", "finished")
    assert svg.locator("[data-kind='approval'] polygon").count() == 1
    screenshot(page, "gate.png")
    page.get_by_label("Note").fill("plan looks right")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#gate-status")).to_have_text("approved")
    expect(page.locator(".decided")).to_contain_text("alice")
    expect(page.locator(".decided")).to_contain_text("plan looks right")
    page.goto(web.served.url + "/runs/approve")
    expect(page.locator("#run-status")).to_have_text("finished")  # live: the SSE refresh
    expect(page.locator("svg.graph [data-node='deploy']")).to_have_attribute(
        "data-state", "finished"
    )
    expect(page.locator("ul.decisions")).to_contain_text("plan looks right")
    [event] = decisions(web, "approve")
    assert event.data["decision"]["note"] == "plan looks right"
    assert event.data["decision"]["decided_by"] == "alice"


def test_deny_asks_for_confirmation_first(context: Any, web: Site) -> None:
    """Deny shows a confirmation that records nothing; confirming records the denial."""
    from playwright.sync_api import expect

    page = sign_in(context, web, path="/runs/deny/gates/approve-deploy")
    page.get_by_label("Note").fill("not on a Friday")
    page.get_by_role("button", name="Deny…").click()
    expect(page.get_by_role("heading", name="Deny this gate?")).to_be_visible()
    assert decisions(web, "deny") == []
    expect(page.get_by_label("Note")).to_have_value("not on a Friday")
    page.get_by_role("button", name="Yes, deny").click()
    expect(page.locator("#gate-status")).to_have_text("denied")
    expect(page.locator("#run-status")).to_have_text("failed")
    assert len(decisions(web, "deny")) == 1


def test_a_second_browser_sees_the_gate_vanish_live(web: Site, chromium: Any, context: Any) -> None:
    """A decision made in one browser removes the gate from another's open inbox and the
    decision form from its open gate page, without a reload."""
    from playwright.sync_api import expect

    other = chromium.new_context()
    try:
        watcher = sign_in(other, web, name="bob")
        row = watcher.locator("li.gate-row[data-run='live']")
        expect(row).to_have_count(1)
        expect(watcher.locator("body")).to_have_attribute("data-live", "open")
        watcher.evaluate("window.sameDocument = true")
        open_gate = other.new_page()
        open_gate.goto(gate_url(web, "live"))
        expect(open_gate.locator("body")).to_have_attribute("data-live", "open")
        page = sign_in(context, web, path="/runs/live/gates/approve-deploy")
        page.get_by_role("button", name="Approve").click()
        expect(page.locator("#gate-status")).to_have_text("approved")
        expect(row).to_have_count(0)
        assert watcher.evaluate("window.sameDocument") is True
        expect(open_gate.locator("#gate-status")).to_have_text("approved")
        expect(open_gate.get_by_role("button", name="Approve")).to_have_count(0)
    finally:
        other.close()


def test_a_signed_link_decides_without_sign_in(context: Any, web: Site) -> None:
    """A signed link's page decides as the link's name with no account; a tampered link is
    refused (404) and decides nothing."""
    from playwright.sync_api import expect

    with opened_store(web.served.store) as s:
        token = sign(s, "link", "approve-deploy", None, "approve", "carol", 3600)
        other = sign(s, "tamper", "approve-deploy", None, "approve", "carol", 3600)
    page = context.new_page()
    page.goto(f"{web.served.url}/hooks/{token}")
    expect(page.get_by_role("heading", name="Approve this gate?")).to_be_visible()
    page.get_by_label("Note").fill("via chat")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".decided")).to_contain_text("approved by carol")
    [event] = decisions(web, "link")
    assert event.data["decision"]["decided_by"] == "carol"
    body, _, mac = other.partition(".")
    bad = f"{body}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    response = page.goto(f"{web.served.url}/hooks/{bad}")
    assert response.status == 404
    assert decisions(web, "tamper") == []


def test_a_script_in_a_request_stays_text(context: Any, web: Site) -> None:
    """A <script> and an onerror in a gate's title and summary are shown as text and never
    run, on the inbox and on the gate page."""
    from playwright.sync_api import expect

    page = sign_in(context, web)
    expect(page.locator("li.gate-row h2").first).to_contain_text("<script>")
    page.goto(gate_url(web, "a"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(XSS)
    expect(page.locator(".summary")).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("main script, main img").count() == 0


def test_a_viewer_sees_no_approve_button_and_cannot_post(context: Any, web: Site) -> None:
    """A viewer's gate page has no decision buttons, and a POST from a viewer is 403."""
    from playwright.sync_api import expect

    page = sign_in(context, web, name="victor", path="/runs/viewer/gates/approve-deploy")
    expect(page.locator(".viewer")).to_contain_text("viewer")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    response = page.request.post(
        gate_url(web, "viewer") + "/decide",
        form={"csrf": csrf_of(page.content()), "action": "approve", "note": ""},
    )
    assert response.status == 403
    assert decisions(web, "viewer") == []


def test_a_double_click_on_approve_records_one_decision(context: Any, web: Site) -> None:
    """Double-clicking Approve records exactly one decision."""
    from playwright.sync_api import expect

    page = sign_in(context, web, path="/runs/double/gates/approve-deploy")
    page.get_by_role("button", name="Approve").dblclick()
    expect(page.locator("#gate-status")).to_have_text("approved")
    assert len(decisions(web, "double")) == 1


def test_the_pages_fit_a_phone(web: Site, chromium: Any) -> None:
    """At a phone's width the inbox and a gate page need no sideways scrolling."""
    ctx = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = sign_in(ctx, web)
        for path in ("/", "/runs/a/gates/approve-deploy", "/runs/a"):
            page.goto(web.served.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, path
    finally:
        ctx.close()


def test_the_run_page_updates_live(web: Site, context: Any) -> None:
    """An open run page follows a decision made over the API: the status and the graph
    change without a reload."""
    import httpx
    from playwright.sync_api import expect

    page = sign_in(context, web, path="/runs/watched")
    expect(page.locator("#run-status")).to_have_text("waiting-approval")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    page.evaluate("window.sameDocument = true")
    headers = {"Authorization": f"Bearer {web.tokens['bob']}"}
    with httpx.Client(base_url=web.served.url, headers=headers, timeout=60) as client:
        url = "/api/v1/runs/watched/nodes/approve-deploy/approve"
        assert client.post(url, json={"note": "from the API"}).status_code == 200
    expect(page.locator("#run-status")).to_have_text("finished")
    expect(page.locator("svg.graph [data-node='notify']")).to_have_attribute(
        "data-state", "finished"
    )
    expect(page.locator("ul.decisions")).to_contain_text("from the API")
    assert page.evaluate("window.sameDocument") is True


def test_a_gate_can_be_approved_from_the_keyboard(web: Site, context: Any) -> None:
    """The note and the buttons are labelled and reachable with Tab; Enter approves."""
    from playwright.sync_api import expect

    page = sign_in(context, web, path="/runs/keys/gates/approve-deploy")
    page.get_by_label("Note").focus()
    page.keyboard.type("by keyboard")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Approve")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#gate-status")).to_have_text("approved")
    expect(page.locator(".decided")).to_contain_text("by keyboard")
