"""The Argilla web UI in headless Debian Chromium (Playwright): a reviewer signs in, sees ICM's suggestion and
its score, submits a different label, and `icm pull` returns it. Saves screenshots as test artefacts
(`test-artifacts/`, or $ICM_TEST_ARTIFACTS) and, when missing or with ICM_UPDATE_DOCS=1, as
docs/argilla-review.png for the README."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from icm_plugin.cli.main import main
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.integrations.argilla.client import find_dataset
from icm_plugin.integrations.argilla.review import push_run

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.argilla, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ICM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
REVIEW_ROWS = [
    ("capital-fr", "What is the capital of France?", "Paris", 1, 0.93),
    ("capital-fr", "What is the capital of France?", "Marseille", 0, 0.88),
    ("spider-legs", "How many legs does a spider have?", "Six", 1, 0.57),
    ("spider-legs", "How many legs does a spider have?", "Eight", 0, 0.54),
]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("ICM_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (.ci/argilla.sh) or set ICM_CHROMIUM")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def _sign_in(browser, url: str, password: str):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.set_default_timeout(30_000)
    page.goto(f"{url}/sign-in")
    page.get_by_label("Username").fill("argilla")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda u: "sign-in" not in u)
    return page


def _open_dataset(page, url: str, dataset_id) -> None:
    page.goto(f"{url}/dataset/{dataset_id}/annotation-mode")
    page.locator("label.label-active").wait_for()  # the suggested label is pre-selected


def _field_texts(page) -> list[str]:
    """What the record's fields show (Argilla puts a field that holds markup into an iframe)."""
    areas = page.locator(".content-area")
    areas.first.wait_for()
    texts = []
    for i in range(areas.count()):
        area = areas.nth(i)
        if area.locator("iframe").count():
            texts.append(area.frame_locator("iframe").locator("body").inner_text())
        else:
            texts.append(area.inner_text())
    return texts


def test_reviewer_sees_suggestion_submits_other_label_and_pull_returns_it(
        browser, argilla_stack, client, make_run, tmp_path, server_args, artifacts):
    stack, _ = argilla_stack
    info = stack.status()
    run = RunFolder.read(make_run(tmp_path / "run", rows=REVIEW_ROWS, model="gemma-3-270m", conflicts=[]))
    name = "facts-review"
    push_run(client, run, name, echo=lambda _m: None)
    ds = find_dataset(client, name, "argilla")

    page = _sign_in(browser, info.url, info.credentials.password)
    _open_dataset(page, info.url, ds.id)
    question, claim = _field_texts(page)
    shown = next(e for e in run.examples if e.question == question.strip() and e.choice == claim.strip())
    icm_label = ["False", "True"][run.labels[shown.id]]

    suggested = page.locator("label.label-active")
    assert suggested.get_attribute("title") == icm_label
    score = float(suggested.locator(".label-text__suggestion__score").inner_text())
    assert abs(score - run.confidence[shown.id]) <= 0.05  # the UI rounds to one decimal
    assert page.locator(".tooltip__text", has_text="icm/gemma-3-270m").count() == 1
    suggested.hover()  # shows the suggestion's agent, for the screenshot
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "argilla-review.png"))
    docs = REPO / "docs" / "argilla-review.png"
    if os.environ.get("ICM_UPDATE_DOCS") == "1" or not docs.exists():
        docs.parent.mkdir(exist_ok=True)
        shutil.copyfile(artifacts / "argilla-review.png", docs)

    other = ["False", "True"][1 - run.labels[shown.id]]
    page.locator(f'label[for="label_{other}"]').click()
    assert page.locator("label.label-active").get_attribute("title") == other
    page.locator("button.button--submit").click()
    page.get_by_text("Submitted", exact=False).first.wait_for()
    page.wait_for_function("() => !document.querySelector('button.button--submit[disabled]')")
    page.screenshot(path=str(artifacts / "argilla-after-submit.png"))

    # the answer reached the server as a submitted response
    out = tmp_path / "human.jsonl"
    for _ in range(50):
        assert main(["pull", "--dataset", name, "--out", str(out), *server_args]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        if rows:
            break
        page.wait_for_timeout(200)
    assert rows == [{"id": shown.id, "label": 1 - run.labels[shown.id]}]


def test_record_text_with_html_is_shown_as_text_and_never_runs(browser, argilla_stack, client, make_run, tmp_path):
    stack, _ = argilla_stack
    info = stack.status()
    payload = 'Paris <img src=x onerror="parent.document.title=\'PWNED\'"> <b>bold</b>'
    rows = [("xss", "What is the capital of France?", payload, 1, 0.9)]
    run = RunFolder.read(make_run(tmp_path / "run", rows=rows, conflicts=[]))
    push_run(client, run, "html-escape-check", echo=lambda _m: None)
    page = _sign_in(browser, info.url, info.credentials.password)
    _open_dataset(page, info.url, find_dataset(client, "html-escape-check", "argilla").id)
    _, claim = _field_texts(page)
    assert claim.strip() == payload  # shown literally
    page.wait_for_timeout(500)
    assert page.title() != "PWNED"
