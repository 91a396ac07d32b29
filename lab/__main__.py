"""python -m lab up [--hosts N] [--no-demo] [--no-network] | status | down"""

from __future__ import annotations

import argparse
import sys
import time

import lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=lab.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the lab hosts and the demo guests")
    up_parser.add_argument("--hosts", type=int, default=2, help="number of hosts (default: 2)")
    up_parser.add_argument("--no-demo", action="store_true", help="start the hosts without the demo inventory")
    up_parser.add_argument("--no-network", action="store_true",
                           help="leave the hosts off the lab network: unix sockets only (as VMPORTAL_LAB_NETWORK=0)")
    commands.add_parser("status", help="show the lab hosts")
    commands.add_parser("down", help="stop every guest and daemon of the lab")
    arguments = parser.parse_args(argv)

    try:
        if arguments.command == "up":
            start = time.monotonic()
            hosts = lab.up(arguments.hosts, demo_inventory=not arguments.no_demo,
                           network=False if arguments.no_network else None)
            for host in hosts:
                print("\t".join(part for part in (host.name, host.socket_uri, host.ssh_uri, host.tls_uri) if part))
            print(f"up in {time.monotonic() - start:.1f} s", file=sys.stderr)
        elif arguments.command == "status":
            for status in lab.status():
                state = "running" if status.running else "stopped"
                pids = " ".join(f"{daemon}={pid}" for daemon, pid in status.pids.items())
                print(
                    f"{status.name}\t{state}\t{status.active_domains}/{status.domains} domains active"
                    f"\t{pids}\t{status.uri}"
                )
        else:
            lab.down()
    except lab.LabError as error:
        print(f"lab {arguments.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
