"""The shim for qrlogin's own runner: the suite's placeholders in, ``qrlogin login`` or ``qrlogin link`` out.

``qrlogin login/link --events json`` already speaks the suite's line protocol (docs/events.md), so this shim only
picks the command for the role and the arguments for the side, then replaces itself with it::

    python -m qrlogin.check_client.qrlogin_shim --role {role} --side {side} --generation {generation}
        --homeserver {homeserver} --qr {qr_hex} --user {user} --password {password} --secrets {secrets_file}
        --device-id {device_id}

The existing device signs in with the account's password (``link --user --password``) and hands over the secrets
file; the new device asks for the suite's device id. ``--allow-http`` because the suite's homeserver is on loopback.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["command", "main"]


def command(argv: list[str]) -> list[str]:
    """The ``qrlogin`` arguments for the shim's arguments."""
    parser = argparse.ArgumentParser(prog="qrlogin_shim")
    for name in ("role", "side", "generation", "homeserver", "qr", "user", "password", "secrets", "device-id"):
        parser.add_argument(f"--{name}", default="")
    args = parser.parse_args(argv)
    common = ["--generation", args.generation, "--allow-http", "--events", "json"]
    if args.side == "scans":
        common += ["--qr", args.qr]
    if args.role == "new":
        return ["login", *common, "--device-id", args.device_id, args.homeserver]
    credentials = ["--user", args.user, "--password", args.password, "--secrets-file", args.secrets]
    return ["link", *common, *credentials, args.homeserver]


def main() -> None:
    arguments = [sys.executable, "-m", "qrlogin", *command(sys.argv[1:])]
    os.execv(sys.executable, arguments)  # noqa: S606  (the argument vector is built above, no shell)


if __name__ == "__main__":
    main()
