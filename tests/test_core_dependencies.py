"""The core's only runtime dependency is ``cryptography``: every module outside ``qrlogin.adapters`` must import
with the adapters' libraries absent, and the CLI must explain a missing extra instead of failing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

ADAPTER_LIBRARIES = ("httpx", "starlette", "uvicorn", "segno", "redis", "httptools", "uvloop", "prometheus_client")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    blocker = textwrap.dedent(
        f"""
        import sys
        for name in {ADAPTER_LIBRARIES!r}:
            sys.modules[name] = None  # makes `import name` raise ImportError
        """
    )
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_core_module_imports_without_the_adapter_libraries() -> None:
    result = _run(
        """
        import importlib, pkgutil, qrlogin
        for module in pkgutil.walk_packages(qrlogin.__path__, "qrlogin."):
            if module.name.startswith("qrlogin.adapters.") or module.name.endswith("__main__"):
                continue
            importlib.import_module(module.name)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_names_the_missing_extra() -> None:
    result = _run(
        """
        from qrlogin.cli import main
        print(main(["serve", "--port", "0"]), main(["check-server", "http://127.0.0.1:9"]))
        print(main(["login", "example.org"]), main(["link", "example.org"]))
        """
    )
    assert result.stdout.split() == ["2", "2", "2", "2"], result.stdout + result.stderr  # usage-style exit status
    assert "pip install 'qrlogin[server]'" in result.stderr
    assert "pip install 'qrlogin[client]'" in result.stderr


def test_demo_runs_without_the_qr_extra() -> None:
    result = _run(
        """
        from qrlogin.cli import main
        raise SystemExit(main(["demo", "--generation", "v2"]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "install qrlogin[qr] to draw the QR code" in result.stdout
    assert "outcome on the new device:      success" in result.stdout
