"""The dashboard in a real headless Chromium (Debian's, driven by Playwright; no browser download)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import FAST, upload, wait_for

pytestmark = pytest.mark.slow  # real servers and subprocesses; `make test-fast` leaves them to `make test`

SHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"
"""Where the screenshots are kept after a run, to look at (the repo's test output; not committed)."""
NARROW = {"width": 390, "height": 844}


def chromium() -> str:
    path = os.environ.get("IMITAUDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed (apt-get install chromium; `make test` does this)")
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def second_version(service, inputs):
    """A second upload named like the first: version 2 of the same imitator, audited."""
    a = service["clients"]["a_submit"]
    sha = upload(a, "imitators", inputs["second"], "unbounded").json()["sha256"]
    resp = a.post("/v1/audits", json={"imitator": sha, "demonstrations": service["demos"]["sha256"], "settings": FAST})
    assert wait_for(a, resp.json()["id"])["state"] == "succeeded"
    return sha


def test_dashboard_pages_replay_slider_and_filters(service, second_version, browser):
    url, token = service["url"], service["tokens"]["a_read"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    shots = []

    SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        path = SHOTS / f"desktop-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5000
        shots.append(path)

    page.goto(f"{url}/dashboard")
    assert page.url.endswith("/login")  # no cookie yet
    page.fill("#token", "ia_wrong")
    page.click("#signin")
    assert "not valid" in page.inner_text("#error")
    errors.clear()  # the refused sign-in answered 401 on purpose; from here on, no errors at all
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_url(f"{url}/dashboard")
    cookie = next(c for c in context.cookies() if c["name"] == "imitaudit_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.locator("#audits tbody tr").count() >= 2
    assert "unbounded" in page.inner_text("#imitators") and page.locator("#imitators svg.spark").count() >= 2
    shot("audits")

    page.click(f"a[href='/dashboard/audits/{service['audit']}']")
    page.wait_for_selector("#checks")
    for artifact in ("report.json", "report.html", "junit.xml", "summary.md"):
        assert page.locator(f".artifacts a:text('{artifact}')").count() == 1
    rows = page.locator("#flagged tbody tr a")
    assert rows.count() >= 1
    assert page.inner_text("#before").startswith("flagged before departing: ")  # the built-in env records departures
    assert page.inner_text("#imitator-name").startswith("unbounded")  # named as in the list, not by hash alone
    shot("audit")

    rows.first.click()
    page.wait_for_selector("#frame")
    assert page.locator("svg.plot").count() == 1 and page.locator("svg.heat").count() == 1
    assert page.locator("svg.plot text.tick").count() >= 4  # labelled axes: score values and steps
    first = page.inner_text("#frame")
    assert "A" in first and "step 0" in page.inner_text("#step-label")
    assert "B button" in page.inner_text("#legend") and "A agent" in page.inner_text("#legend")  # what the letters mean
    page.focus("#slider")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert "step 3" in page.inner_text("#step-label")
    assert page.inner_text("#frame") != first  # the agent moved
    shot("trajectory")

    response = page.goto(f"{url}/v1/audits/{service['audit']}/report.html")  # artifacts open with the cookie
    assert response.status == 200 and "imitaudit" in page.title()

    page.goto(f"{url}/dashboard/flagged")
    total = page.locator("#flags tbody tr").count()
    assert "the most significant first (lowest p-value, then highest strength" in page.inner_text("#order")
    pvalues = [float(x) for x in page.locator("#flags tbody tr td:nth-child(6)").all_inner_texts()]
    assert pvalues == sorted(pvalues)  # one audit here: its most significant flags first
    page.select_option("select[name=severity]", "likely-incorrigible")
    page.click("#filters button")
    page.wait_for_url("**severity=likely-incorrigible**")
    cells = page.locator("#flags tbody td.sev-likely-incorrigible").count()
    assert cells == page.locator("#flags tbody tr").count() or page.inner_text("#flags tbody") == "nothing flagged"
    assert cells <= total
    shot("flagged")

    page.goto(f"{url}/dashboard/imitators/{second_version}")
    assert page.locator("#versions tbody tr").count() == 2
    shot("imitator")

    assert errors == []
    page.goto(f"{url}/dashboard/audits/{'0' * 32}")
    assert "Not found" in page.inner_text("h1")
    assert len(shots) == 5
    context.close()


def test_dashboard_pages_fit_a_phone_screen(service, second_version, browser):
    """At 390 px wide no page scrolls sideways as a whole: wide tables and the heatmap scroll inside their own boxes."""
    context = browser.new_context(viewport=NARROW)
    page = context.new_page()
    page.goto(f"{service['url']}/dashboard")
    page.fill("#token", service["tokens"]["a_read"])
    page.click("#signin")
    page.wait_for_url(f"{service['url']}/dashboard")
    first_flag = page.locator("a[href*='/trajectories/']")
    pages = {
        "audits": "/dashboard",
        "audit": f"/dashboard/audits/{service['audit']}",
        "flagged": "/dashboard/flagged",
        "imitator": f"/dashboard/imitators/{second_version}",
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in [*pages.items(), ("trajectory", None)]:
        if path is None:
            page.goto(f"{service['url']}{pages['audit']}")
            first_flag.first.click()
            page.wait_for_selector("#frame")
        else:
            page.goto(f"{service['url']}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        page.screenshot(path=str(SHOTS / f"narrow-{name}.png"), full_page=True)
        assert overflow <= 1, f"{name} page is {overflow} px wider than a {NARROW['width']} px screen"
        # a table that scrolls inside its box shows it: a shadow at the edge that has more (the verdict column)
        cues = page.evaluate(
            "[...document.querySelectorAll('table')].filter(t => t.scrollWidth > t.clientWidth + 1)"
            ".map(t => getComputedStyle(t).backgroundImage.includes('radial-gradient'))"
        )
        assert all(cues), f"{name}: a table scrolls sideways with no cue"
    assert page.locator("svg.plot").bounding_box()["width"] <= NARROW["width"]
    context.close()


def test_a_sparkline_of_one_version_is_its_figure_and_of_two_a_line():
    from service.dashboard import sparkline

    assert "0.500" in sparkline([0.5]) and "<svg" not in sparkline([0.5])
    assert "<polyline" in sparkline([0.5, 0.25])


def test_a_cartpole_audit_with_a_hostile_feature_name_renders_every_section_in_both_viewers(tmp_path, launch, browser):
    """A non-grid env whose first feature is named ``<!--<script>``: report.html shows every flagged section, every
    heatmap and the replay's text frames; the dashboard's trajectory page steps through them; no console error."""
    from audit.data.demonstrations import record
    from models.checkpoint import save_imitator
    from models.imitator import ImitatorConfig
    from models.registry import build
    from tests.policies import balance

    from .conftest import make_token

    names = ("<!--<script>", "cart velocity", "pole angle", "pole velocity")
    demos = record("CartPole-v1", balance, episodes=240, seed=0, feature_names=names).save(
        tmp_path / "demos.safetensors"
    )
    imitator = save_imitator(
        build("mlp", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8)),
        tmp_path / "random.safetensors",
        env_id="CartPole-v1",
    )
    url_db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = make_token(url_db, "p", "submit")
    api = launch("serve", database_url=url_db, extra_env={"IMITAUDIT_ENVS": "CartPole-v1"})
    import httpx

    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    imi = upload(client, "imitators", imitator).json()["sha256"]
    dem = upload(client, "demonstrations", demos).json()["sha256"]
    resp = client.post("/v1/audits", json={"imitator": imi, "demonstrations": dem, "settings": FAST})
    assert resp.status_code == 202, resp.text
    audit_id = resp.json()["id"]
    assert wait_for(client, audit_id)["state"] == "succeeded"
    report = client.get(f"/v1/audits/{audit_id}/report").json()
    flagged = [r for r in report["trajectories"] if r["flagged"]]
    assert flagged, "a random imitator of a balancing controller is flagged"

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{api.url}/login")
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_url(f"{api.url}/dashboard")

    page.goto(f"{api.url}/v1/audits/{audit_id}/report.html")
    assert page.locator(".traj").count() == min(len(flagged), 50)
    assert page.locator("svg.heat").count() == sum(1 for r in flagged[:50] if r["explanation"])
    replays = page.locator(".replay pre")
    assert replays.count() == sum(1 for r in flagged[:50] if r["replay"]) >= 1
    assert "<!--<script>" in replays.first.inner_text() and "action" in replays.first.inner_text()

    shown = next(r for r in flagged if r["replay"])
    page.goto(f"{api.url}/dashboard/audits/{audit_id}/trajectories/{shown['index']}")
    page.wait_for_selector("#frame")
    first = page.inner_text("#frame")
    assert first.startswith("action ") and "<!--<script>" in first and "pole angle" in first
    page.focus("#slider")
    page.keyboard.press("ArrowRight")
    assert "step 1" in page.inner_text("#step-label") and page.inner_text("#frame") != first
    assert errors == []
    context.close()
