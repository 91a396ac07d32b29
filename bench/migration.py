"""Migration as libvirt reports it, and how late its progress reaches the browser.

    .venv/bin/python bench/migration.py [--moves 4] [--bandwidth 32]

Starts the lab (two hosts) and one daphne serving the real application from a throw-away var dir,
defines a guest `it-mig-bench` on lab1, and moves it back and forth through the dashboard's own
form in Chromium, which keeps the job page open. For each move it prints libvirt's own figures
(total time and downtime, from the completed job), and for every progress report the delay from the
moment libvirt answered the job statistics (the runner's clock) to the moment the frame arrived at
the browser's websocket (Chromium's DevTools frame event, same machine, same clock). Last, the p99
of that delay against the runner's reporting interval (0.5 s): how much of one interval the push costs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vmportal.settings")  # the test helpers import models
import django  # noqa: E402

django.setup()

import lab  # noqa: E402
from bench.stats import percentile  # noqa: E402
from tests.integration.test_migration_lab import define, remove_leftovers  # noqa: E402
from tests.support.portal import free_port, portal_env  # noqa: E402

NAME = "it-mig-bench"
REPORT_INTERVAL_MS = 500.0
PYTHON = str(Path(sys.executable))
BIN = Path(sys.executable).parent


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, str(REPO / "manage.py"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)}: {done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=4)
    parser.add_argument("--bandwidth", type=int, default=32, help="MiB/s, so that a move gives several reports")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    hosts = lab.up(hosts=2)
    for host in hosts:
        remove_leftovers(host)
    var_dir = Path(tempfile.mkdtemp(prefix="vmportal-bench-"))
    env = portal_env(var_dir)
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    manage(env, "bootstrap", "--no-default-host")
    manage(env, "hosts", "add", "lab1", hosts[0].uri)
    manage(env, "hosts", "add", "lab2", hosts[1].uri)
    port = free_port()
    log = (var_dir / "daphne.log").open("wb")
    server = subprocess.Popen([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "vmportal.asgi:application"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    uuid = define(hosts[0], NAME, start=True)
    frames: list[tuple[float, dict]] = []
    try:
        time.sleep(2)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--no-proxy-server"])
            page = browser.new_context(base_url=f"http://127.0.0.1:{port}").new_page()
            page.set_default_timeout(30_000)

            def on_socket(ws) -> None:
                def on_frame(payload) -> None:
                    arrived = time.time()
                    try:
                        message = json.loads(payload)
                    except (TypeError, ValueError):
                        return
                    if message.get("type") == "migration":
                        frames.append((arrived, message))
                ws.on("framereceived", on_frame)

            page.on("websocket", on_socket)
            page.goto("/accounts/login/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", (var_dir / "admin-password").read_text().strip())
            page.locator("main form button").click()
            page.wait_for_url(re.compile(r"/domains/"))
            where = ["lab1", "lab2"]
            rows = []
            for move in range(args.moves):
                source, destination = where[move % 2], where[(move + 1) % 2]
                start = len(frames)
                page.goto(f"/domains/{source}/{uuid}/migrate/")
                page.locator('input[name="bandwidth_mib"]').fill(str(args.bandwidth))
                page.locator(f'input[name="destination"][value="{destination}"]').check()
                page.locator('#checks li[data-check="memory"]').wait_for()
                page.locator("#migrate-submit").click()
                page.wait_for_url(re.compile(r"/migrations/\d+/"))
                job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
                page.locator('section.migration[data-state="succeeded"], section.migration[data-state="failed"]'
                             ).wait_for(timeout=300_000)
                progress = json.loads(manage(env, "shell", "--no-imports", "-c",
                                             "import json; from domains.models import MigrationJob; "
                                             f"j = MigrationJob.objects.get(pk={job_id}); "
                                             "print(json.dumps([j.state, j.progress]))"))
                delays = [1000 * (arrived - message["reported_at"]) for arrived, message in frames[start:]
                          if message.get("reported_at") and message["state"] in ("running", "cancelling")]
                rows.append((source, destination, progress, delays))
                state, figures = progress
                print(f"move {move + 1} {source}→{destination}: {state}, libvirt total {figures.get('elapsed_ms')} ms, "
                      f"downtime {figures.get('downtime_ms')} ms, {len(delays)} progress reports, delay to the "
                      f"browser p50 {statistics.median(delays) if delays else float('nan'):.1f} ms, "
                      f"max {max(delays) if delays else float('nan'):.1f} ms")
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        for host in hosts:
            remove_leftovers(host)
    all_delays = [delay for *_rest, delays in rows for delay in delays]
    totals = [row[2][1].get("elapsed_ms") or 0 for row in rows]
    downtimes = [row[2][1].get("downtime_ms") or 0 for row in rows]
    print(f"moves: {len(rows)}, libvirt total time median {statistics.median(totals):.0f} ms, downtime median "
          f"{statistics.median(downtimes):.0f} ms (max {max(downtimes)} ms)")
    print(f"progress reports: {len(all_delays)}, report → browser delay p50 {percentile(all_delays, 0.5):.1f} ms, "
          f"p99 {percentile(all_delays, 0.99):.1f} ms")
    print(f"ratio p99 delay / report interval: {percentile(all_delays, 0.99) / REPORT_INTERVAL_MS:.3f}")


if __name__ == "__main__":
    main()
