"""The notebooks in a real browser: JupyterLab served on localhost, driven by headless
Chromium through Playwright.

Each test runs every cell of one notebook from the Run menu, waits for the kernel to go
idle, moves one slider with the keyboard and checks that the kernel redraws the figure and
the printed result: the batch-size slider of 01_deploy.ipynb, and the price slider ($/hour
for this machine) of 06_cost_per_million.ipynb. Screenshots of the slider cell before and
after go to pytest's tmp_path (printed in the summary); with BERTG4_BROWSER_OUT=1 they are
also copied to browser_out/ under the repository root (any other non-empty value names the
folder to use).

Needs Playwright (``pip install playwright``, part of the ``test`` extra) and a Chromium
binary: /usr/bin/chromium (Debian's ``chromium`` package, scripts/install_chromium.sh), or
the one named by BERTG4_CHROMIUM. It is skipped, saying which is missing, when either is
absent.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_deploy.ipynb"
COST_NOTEBOOK = "06_cost_per_million.ipynb"

# Flags that keep Chromium off the network and its first-run machinery; a closed network
# refuses its connections otherwise.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

# JupyterLab user settings for the run: every cell attached to the DOM (so each prompt can be
# read), no news or update checks (no request leaves localhost, no toast covers the page).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def _chromium() -> str | None:
    explicit = os.environ.get("BERTG4_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the server and its kernels), then SIGKILL."""
    if proc.poll() is None:
        _signal_and_wait(proc, signal.SIGTERM, 15)
    _signal_and_wait(proc, signal.SIGKILL, 5)  # kernels may outlive a server that was killed


def _signal_and_wait(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture
def jupyter_lab(tmp_path):
    """JupyterLab on a free localhost port over a copy of notebooks/, with BERTG4_SMOKE=1 in
    the kernels' environment; yields (base_url, token, log_path)."""
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    root = tmp_path / "notebooks"
    root.mkdir()
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]*.ipynb")):
        shutil.copy(nb, root / nb.name)
    settings = tmp_path / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))

    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ)
    env.update({
        "BERTG4_SMOKE": "1",
        "PYTHONUNBUFFERED": "1",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    })
    env.pop("JUPYTER_TOKEN", None)
    log = tmp_path / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{_log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer on {base} within 90 s:\n{_log_tail(log)}")
            time.sleep(0.25)
        yield base, token, log
    finally:
        _stop(proc)


def _prompts(page) -> list[str]:
    return page.eval_on_selector_all(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt",
        "els => els.map(e => e.textContent.trim())")


@pytest.fixture
def browser_tools():
    """(playwright.sync_api, Chromium path); skips when either is absent."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright is not installed (pip install playwright; it drives the system Chromium)")
    chromium = _chromium()
    if chromium is None:
        where = (f"BERTG4_CHROMIUM={os.environ['BERTG4_CHROMIUM']} is not executable"
                 if os.environ.get("BERTG4_CHROMIUM") else "no chromium on PATH")
        pytest.skip(f"no Chromium binary: {where} (apt-get install chromium, or set BERTG4_CHROMIUM)")
    return sync_api, chromium


def _in_browser(browser_tools, tmp_path, drive) -> Path:
    """Launch Chromium, run ``drive(page, shots)``, keep screenshots (a failure's too)."""
    sync_api, chromium = browser_tools
    shots = tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        # launch() gives Chromium a fresh temporary --user-data-dir and removes it on close.
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            try:
                drive(page, shots)
            except Exception:
                page.screenshot(path=str(shots / "failure.png"))
                print(f"screenshots: {shots}")
                raise
            finally:
                _copy_out(shots)
        finally:
            browser.close()
    return shots


def _run(browser_tools, jupyter_lab, tmp_path, measured, drive, what: str) -> None:
    base, token, log = jupyter_lab
    t0 = time.monotonic()
    try:
        shots = _in_browser(browser_tools, tmp_path, lambda page, shots: drive(page, base, token, shots))
    except Exception:
        print(f"jupyter log tail:\n{_log_tail(log)}")
        raise
    measured(f"browser test: JupyterLab + Chromium, {what}", f"{time.monotonic() - t0:.0f} s")
    measured(f"browser test screenshots ({what.split()[0]})", str(shots))


def test_batch_size_slider_redraws_in_jupyterlab(browser_tools, jupyter_lab, tmp_path, measured):
    _run(browser_tools, jupyter_lab, tmp_path, measured, _drive, "01_deploy run and slider moved")


def test_cost_price_slider_redraws_in_jupyterlab(browser_tools, jupyter_lab, tmp_path, measured):
    _run(browser_tools, jupyter_lab, tmp_path, measured, _drive_cost,
         "06_cost_per_million run and price slider moved")


def _run_all(page, base: str, token: str, notebook: str, timeout_ms: int):
    """Open ``notebook``, wait for its kernel, Run All Cells, wait until every cell ran and
    check that none failed; returns the notebook panel."""
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").first.wait_for(timeout=120_000)
    # The kernel is connected and idle once the status bar reads "Python 3 (ipykernel) | Idle"
    # (before that it reads "No Kernel | Initializing", then "... | Connecting"; the toolbar's
    # execution indicator already says idle while there is no kernel at all).
    page.locator(".jp-StatusBar-TextItem").filter(
        has_text=re.compile(r"^(?!No Kernel).*\| Idle$")).wait_for(timeout=120_000)

    # Run -> Run All Cells, from the menu bar.
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                 has_text="Run All Cells").first.click()
    # Every cell is queued at once ("[*]"). Done when the kernel is idle, nothing is pending, and
    # every cell has its execution count, or a cell failed (Run All stops there).
    try:
        page.wait_for_function(
            """() => {
                const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                const prompts = [...p.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                    .map(e => e.textContent.trim());
                const ind = p.querySelector('.jp-Notebook-ExecutionIndicator');
                const failed = [...p.querySelectorAll('.jp-OutputArea-output')]
                    .some(o => o.textContent.includes('Traceback'));
                return prompts.length > 0 && !prompts.some(t => t.includes('*'))
                       && ind && ind.dataset.status === 'idle'
                       && (failed || prompts.every(t => /\\d/.test(t)));
            }""", timeout=timeout_ms, polling=500)
    except Exception as e:
        raise AssertionError(f"Run All Cells did not finish; prompts: {_prompts(page)}") from e
    prompts = _prompts(page)
    errors = panel.locator(".jp-OutputArea-output").filter(has_text="Traceback")
    assert errors.count() == 0, errors.first.inner_text()[-3000:]
    assert all(any(ch.isdigit() for ch in t) for t in prompts), f"cells left unexecuted: {prompts}"
    return panel


def _drive(page, base: str, token: str, shots: Path) -> None:
    panel = _run_all(page, base, token, NOTEBOOK, 150_000)

    # The interact widget built by bertg4.widgets.batch_size_slider: a "batch size" slider
    # above an output that holds the latency/throughput figure and the chosen record.
    interact = panel.locator(".widget-interact").filter(
        has=page.locator(".widget-label", has_text="batch size"))
    assert interact.count() == 1, f"{interact.count()} batch-size widgets"
    slider = interact.locator(".widget-slider").first
    readout = slider.locator(".widget-readout")
    figure = interact.locator(".widget-output img")
    record = interact.locator(".widget-output").filter(has_text="per batch")
    figure.wait_for()
    record.wait_for()
    # The notebook's assertion cell moved the slider to the largest batch size.
    sizes = _batch_sizes(page)
    assert readout.inner_text().strip() == str(sizes[-1])
    text_before = record.inner_text()
    src_before = figure.get_attribute("src")
    assert f"batch {sizes[-1]}:" in text_before, text_before
    cell = panel.locator(".jp-Cell").filter(
        has=page.locator(".widget-interact .widget-label", has_text="batch size"))
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=str(shots / "01_deploy_slider_before.png"))

    # Move the handle one step down with the keyboard.
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowLeft")
    page.wait_for_function(
        "([el, v]) => el.textContent.trim() === v",
        arg=[readout.element_handle(), str(sizes[-2])], timeout=30_000)
    # The kernel redraws: a new figure and the record of the new batch size.
    page.wait_for_function(
        """([root, before]) => {
            const img = root.querySelector('.widget-output img');
            return img && img.complete && img.src !== before
                   && root.querySelector('.widget-output').textContent.includes(`batch ${%d}:`);
        }""" % sizes[-2],
        arg=[interact.element_handle(), src_before], timeout=60_000)
    src_after = figure.get_attribute("src")
    text_after = record.inner_text()
    assert src_after and src_after.startswith("data:image/png") and src_after != src_before
    assert f"batch {sizes[-2]}:" in text_after and text_after != text_before, text_after
    assert figure.evaluate("img => img.naturalWidth") > 100
    cell.screenshot(path=str(shots / "01_deploy_slider_after.png"))


def _drive_cost(page, base: str, token: str, shots: Path) -> None:
    # The smoke sweep of 06 measures a few dozen points: minutes on a busy 2-core machine.
    panel = _run_all(page, base, token, COST_NOTEBOOK, 600_000)

    # The interact widget built by bertg4.widgets.service_cost_slider: price, p99 target and
    # arrival-rate sliders above an output with the figure and the costs it printed.
    label = "$/hour (this machine)"
    interact = panel.locator(".widget-interact").filter(has=page.locator(".widget-label", has_text=label))
    assert interact.count() == 1, f"{interact.count()} price widgets"
    slider = interact.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=label))
    readout = slider.locator(".widget-readout")
    figure = interact.locator(".widget-output img")
    printed = interact.locator(".widget-output").filter(has_text="your price")
    figure.wait_for()
    printed.wait_for()
    # The notebook's assertion cell set the price to twice PRICE_PER_HOUR.
    before = float(readout.inner_text().strip())
    text_before = printed.inner_text()
    src_before = figure.get_attribute("src")
    assert f"this machine at ${before:g}/hour" in text_before, text_before
    cell = panel.locator(".jp-Cell").filter(has=page.locator(".widget-interact .widget-label", has_text=label))
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=str(shots / "06_cost_slider_before.png"))

    # One step down (0.01 $/hour) with the keyboard.
    after = round(before - 0.01, 2)
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowLeft")
    page.wait_for_function("([el, v]) => el.textContent.trim() === v",
                           arg=[readout.element_handle(), f"{after:.2f}"], timeout=30_000)
    # The kernel reruns the cost and the simulation: a new figure and the new price's costs.
    page.wait_for_function(
        """([root, before, want]) => {
            const img = root.querySelector('.widget-output img');
            return img && img.complete && img.src !== before
                   && root.querySelector('.widget-output').textContent.includes(want);
        }""",
        arg=[interact.element_handle(), src_before, f"this machine at ${after:g}/hour"], timeout=120_000)
    src_after = figure.get_attribute("src")
    text_after = printed.inner_text()
    assert src_after and src_after.startswith("data:image/png") and src_after != src_before
    assert f"this machine at ${after:g}/hour" in text_after and text_after != text_before, text_after
    assert "full load, batch 128 (the article's): $" in text_after
    assert figure.evaluate("img => img.naturalWidth") > 100
    cell.screenshot(path=str(shots / "06_cost_slider_after.png"))


def _batch_sizes(page) -> list[int]:
    """The batch sizes that the notebook's parameters cell printed."""
    text = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").filter(
        has_text="batch sizes=").first.inner_text()
    inside = text.split("batch sizes=[", 1)[1].split("]", 1)[0]
    return [int(x) for x in inside.split(",")]


def _copy_out(shots: Path) -> None:
    target = os.environ.get("BERTG4_BROWSER_OUT", "")
    if not target:
        return
    dest = REPO / "browser_out" if target == "1" else Path(target)
    dest.mkdir(parents=True, exist_ok=True)
    for png in shots.glob("*.png"):
        shutil.copy(png, dest / png.name)
