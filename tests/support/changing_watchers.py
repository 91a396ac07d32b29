"""The watchers of test:///default, with its `test` VM paused and resumed on command: for the benchmarks and
the tests that need changes made where the watchers run (test:///default's state lives in its process).

    python -m tests.support.changing_watchers [--profile FILE]

runs them apart, as `manage.py watchhosts` does with Redis (REDIS_URL and the portal's settings from the
environment); bench/live_latency.py also puts them in its daphne process. On stdin, "go <count> <interval>"
pauses and resumes the VM in turns, <count> times, <interval> seconds apart, then prints
{"changes": [[wall-clock time just before the libvirt call, "paused" or "running"], ...]}; stdin's end stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import threading
import time
from collections.abc import Callable

TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the "test" VM of test:///default


class Changes:
    """Pauses and resumes the `test` VM in turns on the "go" command, and prints when each began."""

    def __init__(self) -> None:
        self.paused = False  # across commands: an odd count leaves the VM paused for the next one

    async def make(self, count: int, interval: float) -> None:
        from domains import virt

        times = []
        for _ in range(count):
            action = virt.Action.RESUME if self.paused else virt.Action.PAUSE
            self.paused = not self.paused
            started = time.time()
            virt.run_action("test:///default", TEST_UUID, action)
            times.append([started, "paused" if action is virt.Action.PAUSE else "running"])
            await asyncio.sleep(interval)
        print(json.dumps({"changes": times}), flush=True)

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="write the process's cProfile statistics to this file")
    watch_apart(parser.parse_args().profile)
