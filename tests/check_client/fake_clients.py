"""Clients that misbehave on purpose, as shims: the suite must grade each of them down.

Each is this module run with one argument naming the behaviour, and speaks the line protocol on stdin/stdout:

- ``liar``: says ``done`` ``success`` at once, whatever happened (the honest-run judge must see that the peer did
  not succeed, and every tampering scenario that its success is wrong);
- ``crasher``: writes a line that is not JSON and exits with status 3 (a crash: no ``done``);
- ``sleeper``: shows nothing and never ends (a hang past the deadline).
"""

from __future__ import annotations

import json
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


if __name__ == "__main__":
    main()
