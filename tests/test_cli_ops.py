"""`boltrl status` and `boltrl rollouts` against a live server with real rollouts (and a store file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from boltrl.cli import main
from boltrl.config import ServerConfig
from boltrl.store.sqlite import SQLiteStore
from boltrl.testing import LiveServer, live_server
from tests.ui.seed import ScriptedBackend, Seeded, seed

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded, Path]]:
    db = tmp_path_factory.mktemp("cli") / "boltrl.db"
    config = ServerConfig(db=str(db), token=TOKEN)
    with live_server(lambda: SQLiteStore(str(db)), config, backend=ScriptedBackend()) as server:
        yield server, seed(server.url, TOKEN), db


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # rich wraps tables at the terminal's width
    for key in ("BOLTRL_SERVER", "BOLTRL_TOKEN", "BOLTRL_RETRY_FOR_S"):
        monkeypatch.delenv(key, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status(seeded: tuple[LiveServer, Seeded, Path], capsys: pytest.CaptureFixture[str]) -> None:
    server, _, _ = seeded
    code, out, _ = run(capsys, "status", "--server", server.url, "--token", TOKEN)
    assert code == 0, out
    assert "queue depth 3" in out and "running attempts 1" in out and "workers active 2 of 2" in out
    assert "2 finished in the last 60 s" in out and "1 succeeded" in out
    assert "runner-a" in out and "runner-b" in out and "run calc-grpo: step 7" in out
    code, out, _ = run(capsys, "status", "--server", server.url, "--token", TOKEN, "--json")
    status = json.loads(out)
    assert status["queue_depth"] == 3 and status["finished"]["rollouts"]["failed"] == 1
    assert [w["id"] for w in status["workers"]] == ["runner-b", "runner-a"]


def test_rollouts_list_and_filters(
    seeded: tuple[LiveServer, Seeded, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, s, _ = seeded
    monkeypatch.setenv("BOLTRL_SERVER", server.url)  # the environment, as on a runner host
    monkeypatch.setenv("BOLTRL_TOKEN", TOKEN)
    code, out, _ = run(capsys, "rollouts")
    assert code == 0
    lines = [line for line in out.splitlines() if "calc-" in line]
    assert [line.split()[1] for line in lines] == [*reversed(s.queued), s.running, s.failed, s.solved]
    code, out, _ = run(capsys, "rollouts", "--status", "failed")
    assert s.failed in out and s.solved not in out
    code, out, _ = run(capsys, "rollouts", "--group-id", "task-17x23", "--oldest-first", "--json")
    assert [r["id"] for r in json.loads(out)["rollouts"]] == [s.solved, s.failed]
    code, out, _ = run(capsys, "rollouts", "--mode", "val", "--limit", "1")
    assert s.running in out


def test_rollouts_show(seeded: tuple[LiveServer, Seeded, Path], capsys: pytest.CaptureFixture[str]) -> None:
    server, s, _ = seeded
    code, out, _ = run(capsys, "rollouts", "show", s.solved, "--server", server.url, "--token", TOKEN)
    assert code == 0, out
    assert f"rollout {s.solved}  succeeded" in out and "reward 1 (exact_match)" in out
    assert "agent crashed: KeyError 'x'" in out  # the failed first attempt
    assert out.count("boltrl.model_call") == 2 and "boltrl.reward" in out
    assert "prompt 14 tok  completion 9 tok" in out and "finish tool_calls" in out
    assert "user: What is 17 * 23?" in out and 'tool call calculator({"expression": "17 * 23"})' in out
    assert "→ assistant: The answer is 391." in out
    code, out, _ = run(
        capsys, "rollouts", "show", s.solved, "--server", server.url, "--token", TOKEN, "--json"
    )
    shown = json.loads(out)
    assert len(shown["attempts"]) == 2 and len(shown["spans"]) == 3


def test_a_store_file_directly(
    seeded: tuple[LiveServer, Seeded, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, s, db = seeded
    code, out, _ = run(capsys, "rollouts", "show", s.failed, "--db", str(db))
    assert code == 0 and "wrong answer" in out
    code, out, _ = run(capsys, "status", "--db", str(db))
    assert code == 0 and "queue depth" in out


def test_errors_say_what_is_wrong(
    seeded: tuple[LiveServer, Seeded, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    server, _, _ = seeded
    code, _, err = run(capsys, "status", "--server", server.url, "--token", "wrong")
    assert code == 2 and "missing or wrong bearer token" in err
    code, _, err = run(capsys, "rollouts", "show", "nope", "--server", server.url, "--token", TOKEN)
    assert code == 2 and "rollout 'nope' not found" in err
    code, _, err = run(capsys, "rollouts", "--status", "done", "--server", server.url, "--token", TOKEN)
    assert code == 2 and "status" in err
