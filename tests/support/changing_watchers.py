"""The watchers of test:///default, with its `test` VM paused and resumed on command: for the benchmarks and
the tests that need changes made where the watchers run (test:///default's state lives in its process).

    python -m tests.support.changing_watchers [--profile FILE]
    python -m tests.support.changing_watchers --daphne PORT [--watch [--redis]] [--profile FILE]

The first runs them apart, as `manage.py watchhosts` does with Redis (REDIS_URL and the portal's settings
from the environment). The second serves the real ASGI application with daphne on PORT; with --watch the
watchers and the changes run in it too: embedded (the default deployment), or with --redis publishing
through Redis as watchhosts does. Each prints "ready" once it serves. On stdin, "go <count> <interval>"
pauses and resumes the VM in turns, <count> times, <interval> seconds apart, then prints
{"changes": [[wall-clock time just before the libvirt call, "paused" or "running"], ...]}; stdin's end stops it.
prepare_portal() makes the database these expect: the embedded host, and an operator's session.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import cProfile
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.portal import migrated_database, raise_file_limit, session_code

TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the "test" VM of test:///default
REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


class Changes:
    """Pauses and resumes the `test` VM in turns on the "go" command, and prints when each began."""

    def __init__(self) -> None:
        self.paused = False  # across commands: an odd count leaves the VM paused for the next one

    async def make(self, count: int, interval: float) -> None:
        from domains import virt

        # Kept compact and written out piece by piece: the process whose memory a soak measures holds an
        # hour of changes (36,000), which as a list of [time, state] lists grew it by 5 MB an hour.
        first_pauses = not self.paused
        times = array.array("d")
        for _ in range(count):
            action = virt.Action.RESUME if self.paused else virt.Action.PAUSE
            self.paused = not self.paused
            times.append(time.time())
            virt.run_action("test:///default", TEST_UUID, action)
            await asyncio.sleep(interval)
        states = ("paused", "running") if first_pauses else ("running", "paused")
        sys.stdout.write('{"changes": [')
        for index, started in enumerate(times):
            sys.stdout.write(("," if index else "") + json.dumps([started, states[index % 2]]))
        sys.stdout.write("]}\n")
        sys.stdout.flush()

    def follow_commands(self, loop: asyncio.AbstractEventLoop, done: Callable[[], object]) -> None:
        """Reads stdin on a thread of its own; its end calls `done` on the loop."""
        def command(line: str) -> None:
            words = line.split()
            if words[:1] == ["go"]:
                loop.create_task(self.make(int(words[1]), float(words[2])))

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(command, line)
            loop.call_soon_threadsafe(done)

        threading.Thread(target=read, daemon=True).start()


def profiled(profile: str | None, run: Callable[[], object]) -> None:
    """run(), its cProfile statistics written to `profile` if given."""
    if not profile:
        run()
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


def watch_apart(profile: str | None) -> None:
    import django

    django.setup()
    from domains import virt
    from domains.supervisor import Supervisor

    async def main() -> None:
        virt.initialize()
        supervisor = Supervisor()
        await supervisor.start()
        stopped = asyncio.Event()
        Changes().follow_commands(asyncio.get_running_loop(), stopped.set)
        print("ready", flush=True)
        await stopped.wait()
        await supervisor.stop()

    profiled(profile, lambda: asyncio.run(main()))


def serve_daphne(port: int, *, watch: bool, redis: bool, profile: str | None) -> None:
    """daphne in this process; with `watch`, the watchers (embedded without Redis) and the changes too."""
    raise_file_limit()
    import django

    django.setup()
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server  # installs Twisted's asyncio reactor on its own loop
    from twisted.internet import reactor

    from domains import virt
    from domains.supervisor import Supervisor
    from vmportal.asgi import application

    loop: asyncio.AbstractEventLoop = reactor._asyncioEventloop

    async def start_watchers() -> None:
        if watch and redis:  # as `manage.py watchhosts` does
            virt.initialize()
            await Supervisor().start()
        print("ready", flush=True)

    if watch:
        Changes().follow_commands(loop, reactor.stop)  # type: ignore[misc]
    reactor.callWhenRunning(lambda: loop.create_task(start_watchers()))
    # A thousand pages opening at once on a loaded machine may take longer than daphne allows a handshake (5 s)
    # and a connecting application (20 s): it would refuse them (403).
    server = Server(application=application, endpoints=build_endpoint_description_strings(host="127.0.0.1", port=port),
                    signal_handlers=True, verbosity=0, websocket_handshake_timeout=120, websocket_connect_timeout=120)
    profiled(profile, server.run)


def prepare_portal(env: dict[str, str]) -> str:
    """Database with the embedded host and an operator; the operator's session key."""
    def manage(*args: str) -> str:
        return subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                              check=True).stdout

    migrated_database(Path(env["VMPORTAL_VAR_DIR"]))
    return manage("shell", "--no-imports", "-c", (
        "from accounts.models import User\n"
        "from domains.models import Host\n"
        "Host.objects.create(name='embedded', uri='test:///default')\n"
        "User.objects.create_user('bench-operator', role='operator')\n"
        + session_code("bench-operator") + "print(session_key)\n"
    )).strip()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="write the process's cProfile statistics to this file")
    parser.add_argument("--daphne", type=int, metavar="PORT", help="serve the application with daphne on PORT")
    parser.add_argument("--watch", action="store_true", help="with --daphne: the watchers and changes there too")
    parser.add_argument("--redis", action="store_true", help="with --watch: the watchers publish through Redis")
    arguments = parser.parse_args()
    if arguments.daphne:
        serve_daphne(arguments.daphne, watch=arguments.watch, redis=arguments.redis, profile=arguments.profile)
    else:
        watch_apart(arguments.profile)
