"""Start and stop the servers `compare.py` measures, each with its own CLI and its own virtual environment.

- boltrl: `python -m boltrl serve` from the project's `.venv`, on a fresh SQLite file (WAL).
- agentlightning 0.3.0: `agl store --backend memory` from `.bench/agl03` (its default, and the only
  backend that runs without a MongoDB server), the LightningStoreServer in front of InMemoryLightningStore.
- agentlightning 1.0.2: `python -m agentlightning.server` from `.bench/agl1` (Python 3.12): the FastAPI
  server whose `/proxy/...` routes are its LLM proxy; rollouts, events and model servers live in dicts.

Nothing here imports agentlightning: the two sides are separate processes started from their own
interpreters, so each runs exactly what its package installs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
AGL03 = BENCH / "agl03" / "bin"
AGL1 = BENCH / "agl1" / "bin"


def free_port() -> int:
    sys.path.insert(0, str(ROOT))
    from boltrl.testing import free_port as _free_port

    return _free_port()


def agl_version(bin_dir: Path) -> str | None:
    if not (bin_dir / "python").exists():
        return None
    cmd = [
        str(bin_dir / "python"),
        "-c",
        "import importlib.metadata as m; print(m.version('agentlightning'))",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


class Server:
    """One server process; `kill9()` and `start()` again reuse its port and its files."""

    def __init__(self, kind: str, upstream: str | None = None, db: str | None = None) -> None:
        self.kind, self.upstream = kind, upstream
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix=f"compare-{kind}-")
        self.db = db or f"{self.tmp}/store.db"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOLTRL_", "AGL_", "VIRTUAL_ENV"))}
        if self.kind == "boltrl":
            cmd = [sys.executable, "-m", "boltrl", "serve", "--port", str(self.port), "--db", self.db,
                   "--heartbeat-timeout-s", "86400"]  # fmt: skip
            if self.upstream:
                cmd += ["--backend", "openai", "--upstream", self.upstream, "--model", "x"]
            return cmd, {**env, "PYTHONPATH": str(ROOT)}
        if self.kind == "agl03":
            # litellm (imported by agentlightning 0.3.0) fetches its model cost map online at import;
            # its documented switch keeps it to the copy in the package (no traffic off this machine).
            env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
            return [str(AGL03 / "agl"), "store", "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "WARNING"], env  # fmt: skip
        if self.kind == "agl1":
            # Its hydra config's defaults, but for host, port and the served model's name; hydra's own
            # output folder goes to a temporary directory instead of ./outputs.
            cmd = [
                str(AGL1 / "python"),
                "-m",
                "agentlightning.server",
                "host=127.0.0.1",
                f"port={self.port}",
                "default_proxy.model_name=x",
                f"hydra.run.dir={self.tmp}/hydra",
                "hydra.output_subdir=null",
            ]
            return cmd, env
        raise ValueError(self.kind)

    def health_url(self) -> str:
        return self.base + ("/v1/agl/health" if self.kind == "agl03" else "/healthz")

    def start(self, timeout_s: float = 90) -> Server:
        cmd, env = self.command()
        log = open(f"{self.tmp}/server.log", "ab")  # noqa: SIM115 (the child holds it)
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = Path(f"{self.tmp}/server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(self.health_url(), timeout=1, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} server not healthy after {timeout_s} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
