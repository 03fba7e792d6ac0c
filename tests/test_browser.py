"""JupyterLab in a real browser (Debian's Chromium, driven by Playwright): a ThanoSQL notebook
from the launcher runs the tutorial's cells, and what a user sees is checked. Screenshots go to
``tests/out/browser/`` (the last one of a failing step is named after it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "tests" / "out" / "browser"
CHROMIUM = "/usr/bin/chromium"
NOTEBOOK = ROOT / "notebooks" / "image_search.ipynb"
IDLE = "#jp-main-statusbar :text('ThanoSQL | Idle')"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab on a free port, no token, in a fresh folder with fresh settings."""
    folder = tmp_path_factory.mktemp("lab")
    settings = folder / ".settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # every cell stays in the page, so the checks can look at any of them
    windowing = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    windowing.parent.mkdir(parents=True)
    windowing.write_text(json.dumps({"windowingMode": "none"}))
    port = _free_port()
    log = (folder / "lab.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root",
         f"--ServerApp.root_dir={folder}", f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={folder / '.workspaces'}"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"})
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.25)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(lab: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.set_default_timeout(60_000)
        tab.goto(f"{lab}/lab")
        tab.click(".jp-LauncherCard:has-text('ThanoSQL')")   # a new ThanoSQL notebook
        tab.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content")
        tab.wait_for_selector(IDLE)
        try:
            yield tab
        finally:
            tab.screenshot(path=str(SHOTS / "last.png"))
            browser.close()


def shoot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def last_cell(page) -> object:
    """The notebook's last cell, as it is now (a locator that stays on that cell)."""
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    return cells.nth(cells.count() - 1)


def run_cell(page, source: str, timeout_ms: int = 120_000) -> object:
    """Type ``source`` into the notebook's last cell, run it with Shift+Enter, wait for the
    kernel; the cell's element."""
    cell = last_cell(page)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text(source)
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "cell => !cell.querySelector('.jp-InputArea-prompt').textContent.includes('*')",
        arg=cell.element_handle(), timeout=timeout_ms)
    page.wait_for_selector(IDLE)
    return cell


def empty(page) -> None:
    """Clear the last cell's editor (Escape may have left edit mode)."""
    last_cell(page).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    assert last_cell(page).locator(".cm-content").inner_text().strip() == ""


def tutorial_cells() -> list[str]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_the_tutorial_in_jupyterlab(page) -> None:
    cells = {}
    for source in tutorial_cells():
        cell = run_cell(page, source)
        assert not cell.locator(".jp-OutputArea-output[data-mime-type*='error']").count(), \
            (source, cell.inner_text())
        cells[source] = cell
    shoot(page, "tutorial")
    head = next(c for s, c in cells.items() if "LIMIT 5" in s)
    table = head.locator(".jp-OutputArea-output table")
    assert table.locator("th").all_inner_texts() == ["image_path", "filename", "label"]
    assert table.locator("tbody tr").count() == 5
    printed = next(c for s, c in cells.items() if "PRINT IMAGE" in s)
    # each image (image/png: a 28-px digit enlarged pixel for pixel to 112), its caption under it
    images = printed.locator(".jp-OutputArea-output[data-mime-type='image/png'] img")
    assert images.count() == 4
    assert all(img.evaluate("i => i.complete && i.naturalWidth == 112")
               for img in images.all())
    stdout = "application/vnd.jupyter.stdout"
    captions = printed.locator(f".jp-OutputArea-output[data-mime-type='{stdout}']")
    assert captions.count() == 4
    assert captions.first.inner_text().startswith("tutorial_data/mnist_data/test/923.jpg")
    below = printed.evaluate("""c => {
        const img = c.querySelector(".jp-OutputArea-output[data-mime-type='image/png'] img");
        const text = c.querySelector(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']");
        return text.getBoundingClientRect().top >= img.getBoundingClientRect().bottom - 1; }""")
    assert below
    printed.scroll_into_view_if_needed()
    printed.screenshot(path=str(SHOTS / "print_image.png"))
    # the map of the column: one image at its size, its caption under it
    mapped = next(c for s, c in cells.items() if s.startswith("PRINT EMBEDDING"))
    [image] = mapped.locator(".jp-OutputArea-output[data-mime-type='image/png'] img").all()
    assert image.evaluate("i => i.complete && i.naturalWidth == 900 && i.naturalHeight == 648")
    caption = mapped.locator(f".jp-OutputArea-output[data-mime-type='{stdout}']")
    assert caption.inner_text().startswith("PRINT EMBEDDING: 200 rows of mnist_test")
    mapped.scroll_into_view_if_needed()
    mapped.screenshot(path=str(SHOTS / "print_embedding.png"))
    # ThanoSQL's words are highlighted as SQL's keywords are, and a name is not
    search = next(c for s, c in cells.items() if s.startswith("%%thanosql\nSEARCH IMAGE"))
    colour = {span.inner_text(): span.evaluate("s => getComputedStyle(s).color")
              for span in search.locator(".cm-content span").all()}
    assert colour["SEARCH"] == colour["IMAGE"] == colour["USING"] == colour["SELECT"]
    plain = search.locator(".cm-line").filter(has_text="mnist_test").evaluate(
        "line => getComputedStyle(line).color")
    assert colour["SEARCH"] != plain


def test_completion_after_from_lists_tables(page) -> None:
    cell = last_cell(page)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text("SELECT * FROM mn")
    page.keyboard.press("Tab")
    page.wait_for_selector(".jp-Completer-item")
    shoot(page, "completion")
    items = page.locator(".jp-Completer-item .jp-Completer-match").all_inner_texts()
    assert items == ["mnist_test", "mnist_train"]
    kinds = page.locator(".jp-Completer-item .jp-Completer-typeExtended").all_inner_texts()
    assert kinds == ["table", "table"]
    page.keyboard.press("Escape")
    empty(page)


def test_shift_tab_shows_a_tables_columns(page) -> None:
    cell = last_cell(page)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text("SELECT * FROM mnist_train")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Shift+Tab")
    tooltip = page.wait_for_selector(".jp-Tooltip")
    shoot(page, "tooltip")
    text = tooltip.inner_text()
    assert "table mnist_train" in text and "1,000 rows" in text
    for column in ("image_path", "filename", "label"):
        assert column in text
    page.keyboard.press("Escape")
    empty(page)


def test_the_stop_button_ends_a_long_build_and_marks_its_bar(page) -> None:
    cell = last_cell(page)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text("BUILD MODEL long USING SimCLR OPTIONS (max_epochs=1000) "
                              "AS SELECT * FROM mnist_train")
    page.keyboard.press("Shift+Enter")
    bar = cell.locator(".thanosql-progress")
    page.wait_for_function(
        "cell => /steps/.test(cell.querySelector('.thanosql-progress')?.textContent ?? '')",
        arg=cell.element_handle())
    time.sleep(1.0)
    started = time.monotonic()
    page.click("jp-button[title='Interrupt the kernel']")
    page.wait_for_function(
        "cell => !cell.querySelector('.jp-InputArea-prompt').textContent.includes('*')",
        arg=cell.element_handle(), timeout=30_000)
    took = time.monotonic() - started
    page.wait_for_selector(IDLE)
    shoot(page, "stopped")
    assert took < 2.0, f"the stop button took {took:.1f} s"
    assert "stopped at " in bar.inner_text()
    assert "KeyboardInterrupt" in cell.locator(".jp-OutputArea").inner_text()
