"""Benchmark: strict m.login.* parsing against plain ``json.loads`` on the same bytes, in the same process.

Prints the ratio (strict / baseline) for each fixture message; the strict reader's extra cost is the depth pre-scan,
the duplicate-key hook and the string walk. No assertion: a benchmark informs, it does not gate CI.
"""

from __future__ import annotations

import functools
import json
import timeit

from qrlogin.login.messages import parse_message

MESSAGES = {
    "protocols": b'{"type":"m.login.protocols","protocols":["device_authorization_grant"],"base_url":"https://m.org"}',
    "protocol": (
        b'{"type":"m.login.protocol","protocol":"device_authorization_grant","device_authorization_grant":'
        b'{"verification_uri":"https://id.matrix.org/device/abcde"},"device_id":"ABCDEFGH"}'
    ),
    "secrets": (
        b'{"type":"m.login.secrets","cross_signing":{"master_key":"rTtSv67XGS6k/rg6/yTG/m573cyFTPFRqluFhQY+hSw",'
        b'"self_signing_key":"4jbPt7jh5D2iyM4U+3IDa+WthgJB87IQN1ATdkau+xk",'
        b'"user_signing_key":"YkFKtkjcsTxF6UAzIIG/l6Nog/G2RigCRfWj3cjNWeM"}}'
    ),
}


def main(number: int = 20_000) -> None:
    for name, data in MESSAGES.items():
        baseline = timeit.timeit(functools.partial(json.loads, data), number=number)
        strict = timeit.timeit(functools.partial(parse_message, data), number=number)
        print(f"{name:10s} strict/json.loads = {strict / baseline:5.2f}x  ({strict / number * 1e6:6.1f} us/parse)")


if __name__ == "__main__":
    main()
