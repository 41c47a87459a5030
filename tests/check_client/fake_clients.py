"""Clients that misbehave on purpose, as shims: the suite must grade each of them down.

Each is this module run with one argument naming the behaviour, and speaks the line protocol on stdin/stdout:

- ``liar``: says ``done`` ``success`` at once, whatever happened (the honest-run judge must see that the peer did
  not succeed, and every tampering scenario that its success is wrong);
- ``crasher``: writes a line that is not JSON and exits with status 3 (a crash: no ``done``);
- ``sleeper``: shows nothing and never ends (a hang past the deadline);
- ``laggard``: runs the command after it (a real client) and passes its lines through, but holds a ``done`` that is
  not a success for six seconds (a client slow to notice that its session is gone);
- ``quitter``: runs the command after it (a real client) and, at its first ``progress`` line, stops it and says
  ``done`` ``channel_closed`` (a client that gives up half way).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


def main() -> None:
    behaviour = sys.argv[1]
    if behaviour == "liar":
        print(json.dumps({"event": "done", "outcome": "success", "user_id": None, "device_id": None}), flush=True)
    elif behaviour == "crasher":
        print("Traceback (most recent call last): not a JSON line", flush=True)
        sys.exit(3)
    elif behaviour == "sleeper":
        time.sleep(600)
    elif behaviour == "laggard":
        client = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        for line in client.stdout:
            if '"done"' in line and '"success"' not in line:
                time.sleep(6)
            print(line, end="", flush=True)
        sys.exit(client.wait())
    elif behaviour == "quitter":
        client = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        for line in client.stdout:
            print(line, end="", flush=True)
            if '"progress"' in line:
                client.kill()
                print(json.dumps({"event": "done", "outcome": "channel_closed"}), flush=True)
                break
        client.wait()


if __name__ == "__main__":
    main()
