"""The course in a real browser: JupyterLab in headless Chromium, the race explorer used by hand.

Starts ``jupyter lab`` on 127.0.0.1 (tests/_jupyterlab.py: its own Jupyter dirs, a random
token, port 0) on a copy of notebooks/03 with its outputs cleared, opens it in Chromium
driven by Playwright (the system's Chromium: Playwright downloads no browser here), runs
all cells from the Run menu, and checks that no cell shows an error.  Then it uses the race
explorer as a student would: presses Run, moves the "processes" slider with the keyboard,
ticks "use the Mutex", presses Run again and waits for the new result line.  The screenshot
is saved under pytest's tmp_path (the path is printed) and copied to $IPCLAB_ARTIFACTS if set.
A small notebook that raises is run too, to show that the error check does see errors.

Skipped when Chromium or Playwright is missing, except under CI (the CI variable set):
CI must install them (tools/install_browser.sh, and playwright from the dev extras).
"""

from __future__ import annotations

import os
import re
import shutil

import nbformat
import pytest
from _jupyterlab import LabServer

pytestmark = pytest.mark.timeout(240)

NOTEBOOK = "03_semaphores_and_mutex.ipynb"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = re.compile(r"run (\d+): (\d+) process(?:es)? x ([\d,]+) increments?, "
                    r"(no lock|with the Mutex): expected ([\d,]+), got ([\d,]+) \(([\d,]+) lost\)")
STEP = 60_000  # ms: the longest a single browser step may take on a loaded 2-CPU machine

# Errors shown by the notebook: error outputs in the notebook's model, and any stderr text in
# the page that holds a traceback (IPython shows a SyntaxError without the word Traceback).
ERRORS_JS = """() => {
  const found = [];
  const panel = window.jupyterapp.shell.currentWidget;
  const model = panel.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== 'code') continue;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error') found.push(`cell ${i + 1}: ${out.ename}: ${out.evalue}`);
    }
  }
  const stderr = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]';
  for (const el of panel.node.querySelectorAll(stderr)) {
    if (/Traceback|^[\\w.]*(Error|Exception)\\b/m.test(el.textContent)) found.push(el.textContent);
  }
  return found;
}"""

# True once no cell of the notebook in front is waiting or running ("[*]:") and `executed`
# cells show a count.
DONE_JS = """(executed) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const prompts = [...panel.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                  .map(p => p.textContent);
  return !prompts.some(t => t.includes('*')) &&
         prompts.filter(t => /\\[\\d+\\]/.test(t)).length >= executed;
}"""

# True once the notebook `path` is in front and its kernel is idle (ready for Run All).
KERNEL_IDLE_JS = """(path) => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.context && panel.context.path === path &&
                 panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle';
}"""


def chromium_path() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome-stable", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


def missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must install it (tools/install_browser.sh, pip install "
                    "-e '.[dev]')", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def chromium():
    """(Chromium's path, Playwright's sync_playwright); checked before any server starts."""
    path = chromium_path()
    if path is None:
        missing("no Chromium found (apt-get install chromium, or set CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright; no browser download needed)")
    return path, sync_playwright


@pytest.fixture
def lab(chromium, tmp_path):
    """A JupyterLab server serving cleared copies of notebook 03 and of a notebook that raises."""
    server = LabServer(tmp_path / "jupyter")
    server.root.mkdir(parents=True)
    nb = nbformat.read(os.path.join(REPO, "notebooks", NOTEBOOK), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":  # outputs come from this run only, none from the file
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, str(server.root / NOTEBOOK))
    broken = nbformat.v4.new_notebook(metadata=nb.metadata, cells=[
        nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell("print('never runs')")])
    nbformat.write(broken, str(server.root / "broken.ipynb"))
    try:
        server.start()
        yield server
    finally:
        killed = server.stop()
        assert not killed, f"processes had to be killed after the server stopped: {killed}"


@pytest.fixture
def page(chromium, lab, tmp_path):
    path, sync_playwright = chromium
    # Chromium keeps crash reports under $XDG_CONFIG_HOME/chromium even with Playwright's
    # temporary profile: give it its own, so the user's ~/.config is not touched.
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "browser" / "config"),
               XDG_CACHE_HOME=str(tmp_path / "browser" / "cache"))
    with sync_playwright() as p:
        # Chromium's sandbox cannot start as root without a suid helper: only as root is it
        # turned off (--no-sandbox).  The page is the test's own server on 127.0.0.1.
        browser = p.chromium.launch(executable_path=path, headless=True,
                                    chromium_sandbox=os.geteuid() != 0, env=env, timeout=STEP)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(STEP)
            yield page
        finally:
            browser.close()


def open_and_run_all(page, lab, name, executed):
    page.goto(lab.url(f"lab/tree/{name}?token={lab.token}"))
    page.wait_for_function(KERNEL_IDLE_JS, arg=name, timeout=2 * STEP)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(DONE_JS, arg=executed, timeout=3 * STEP)
    return page.evaluate(ERRORS_JS)


def results(explorer):
    return [RESULT.search(line).groups() for line in
            explorer.locator(".widget-output").inner_text().splitlines() if RESULT.search(line)]


def save_screenshot(page, tmp_path, name, capsys):
    path = tmp_path / name
    page.screenshot(path=str(path))
    if artifacts := os.environ.get("IPCLAB_ARTIFACTS"):
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(path, os.path.join(artifacts, name))
    with capsys.disabled():
        print(f"\nscreenshot: {path}")


def test_the_race_explorer_works_in_a_real_browser(lab, page, tmp_path, capsys):
    try:
        code_cells = sum(c.cell_type == "code"
                         for c in nbformat.read(str(lab.root / NOTEBOOK), as_version=4).cells)
        errors = open_and_run_all(page, lab, NOTEBOOK, executed=code_cells)
        assert errors == [], "cells show errors:\n" + "\n".join(errors)

        cell = page.locator(".jp-CodeCell").filter(has_text="widgets.race_explorer()")
        explorer = cell.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-vbox"))
        from playwright.sync_api import expect  # waits until true, up to STEP

        expect.set_options(timeout=STEP)
        expect(explorer.locator(".widget-slider")).to_have_count(3)  # widgets render late
        processes = explorer.locator(".widget-slider").filter(
            has=page.locator(".widget-label", has_text="processes"))
        expect(processes.locator(".widget-readout")).to_have_text("4")
        run = explorer.locator("button", has_text=re.compile(r"^Run$"))
        mutex = explorer.get_by_label("use the Mutex")
        expect(run).to_be_enabled()
        expect(mutex).not_to_be_checked()
        explorer.scroll_into_view_if_needed()
        assert results(explorer) == []  # nothing run yet

        run.click()  # 4 processes x 10,000 increments, no lock
        page.wait_for_function("el => el.innerText.includes('run 1:')",
                               arg=explorer.element_handle(), timeout=2 * STEP)
        [first] = results(explorer)
        n, procs, iters, how, expected, got, lost = first
        assert (n, procs, iters, how, expected) == ("1", "4", "10,000", "no lock", "40,000")
        assert int(got.replace(",", "")) + int(lost.replace(",", "")) == 40_000

        handle = processes.locator(".noUi-handle")
        handle.focus()
        handle.press("ArrowLeft")
        handle.press("ArrowLeft")  # 4 -> 2, one step each
        expect(processes.locator(".widget-readout")).to_have_text("2")
        mutex.check()
        run.click()
        page.wait_for_function("el => el.innerText.includes('run 2:')",
                               arg=explorer.element_handle(), timeout=2 * STEP)
        assert results(explorer) == [first, ("2", "2", "10,000", "with the Mutex",
                                             "20,000", "20,000", "0")]
        expect(explorer.locator(".widget-output img")).to_have_count(1)  # the plot of both runs
        expect(run).to_be_enabled()  # usable again
        explorer.scroll_into_view_if_needed()
        save_screenshot(page, tmp_path, "race_explorer.png", capsys)

        # The check above can fail: a notebook that raises is reported.
        errors = open_and_run_all(page, lab, "broken.ipynb", executed=2)
        assert len(errors) >= 1 and any("ZeroDivisionError" in e for e in errors), errors
    except BaseException:
        save_screenshot(page, tmp_path, "failure.png", capsys)
        raise
