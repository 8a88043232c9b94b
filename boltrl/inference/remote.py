"""Backends that forward to an OpenAI-compatible server over HTTP: `OpenAIBackend` and `VLLMBackend`.

`OpenAIBackend` works with any endpoint (OpenAI, a hosted model, a local llama.cpp server). Such APIs
do not return token ids, so its calls are recorded with `trainable=False`: usable for evaluation and
prompt optimisation, skipped by the RL trainer.

`VLLMBackend` talks to vLLM's OpenAI server and asks it for what the trainer needs, which vLLM returns
from the model itself: `return_token_ids` (prompt and response token ids, vLLM >= 0.10.2) and
`logprobs` (the sampled tokens' logprobs). It attaches to a running server (`base_url`) or launches
one (`launch(model, ...)`); new weights reach it through a saved checkpoint and a relaunch.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from typing import Any

import httpx
import pydantic_core

from boltrl.inference.base import BackendError, ChatResult, ChoiceTokens, CompletionResult
from boltrl.inference.http1 import UpstreamUnreachable, http1_client

_JSON = {"Content-Type": "application/json"}


class OpenAIBackend:
    """Forward chat and completion requests to `base_url` (which ends in `/v1`)."""

    token_ids = False  # plain OpenAI-compatible servers return text only

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str | None = None,
        *,
        timeout_s: float = 600.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.weights_version = 0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Plain-http upstreams (vLLM next door) get the lean client; https and proxies get httpx.
        self._fast = http1_client(
            self.base_url, headers, timeout_s=timeout_s, max_connections=max_connections
        )
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def models(self) -> list[str]:
        return [self.model or "default"]

    def load_weights(self, state_dict: dict[str, Any], version: int | None = None) -> None:
        raise BackendError(501, f"{type(self).__name__} cannot load weights in place", "not_supported")

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        data = await self._post("/chat/completions", body)
        return ChatResult(**self._tokens(body, data))

    async def complete(self, body: dict[str, Any]) -> CompletionResult:
        data = await self._post("/completions", body)
        return CompletionResult(**self._tokens(body, data))

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        send = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        if self.model:
            send["model"] = self.model
        if self.token_ids:
            send["return_token_ids"] = True
            send["logprobs"] = True if path == "/chat/completions" else max(int(body.get("logprobs") or 0), 1)
        payload = pydantic_core.to_json(send)
        try:
            if self._fast is not None:
                status, content = await self._fast.post(path, payload)
            else:
                r = await self._client.post(path, content=payload, headers=_JSON)
                status, content = r.status_code, r.content
        except (httpx.TimeoutException, TimeoutError) as e:
            raise BackendError(504, f"inference upstream {self.base_url} timed out", "api_error") from e
        except (httpx.HTTPError, UpstreamUnreachable, OSError) as e:
            raise BackendError(
                502, f"inference upstream {self.base_url} unreachable: {e}", "api_error"
            ) from e
        if status >= 400:
            raise _upstream_error(status, content)
        try:
            data = pydantic_core.from_json(content)
        except ValueError as e:
            raise BackendError(502, f"upstream answered {status}, not JSON: {e}", "api_error") from e
        if not isinstance(data, dict):
            raise BackendError(502, "inference upstream answered JSON that is not an object", "api_error")
        return data

    def _tokens(self, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """The `ChatResult` fields for an upstream response; plain servers give no token ids."""
        choices = [
            ChoiceTokens(
                response_ids=[], logprobs=[], finish_reason=c.get("finish_reason") or "stop", temperature=1.0
            )
            for c in data.get("choices", [])
        ]
        return {
            "response": data,
            "prompt_ids": [],
            "choices": choices,
            "model": str(data.get("model", self.model or "")),
            "weights_version": self.weights_version,
            "trainable": False,
        }

    async def close(self) -> None:
        if self._fast is not None:
            await self._fast.aclose()
        await self._client.aclose()


class VLLMBackend(OpenAIBackend):
    """vLLM's OpenAI server, asked for token ids and logprobs so every call is trainable."""

    token_ids = True

    def __init__(self, base_url: str, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, model=model, **kwargs)
        self.process: subprocess.Popen[bytes] | None = None
        self._launch_args: list[str] = []

    @classmethod
    def launch(
        cls, model: str, *, port: int = 8000, extra_args: list[str] | None = None, timeout_s: float = 900.0
    ) -> VLLMBackend:
        """Start `vllm serve MODEL` on 127.0.0.1:PORT and attach to it once it answers."""
        args = ["--host", "127.0.0.1", "--port", str(port), *(extra_args or [])]
        backend = cls(f"http://127.0.0.1:{port}/v1", model=model)
        backend._launch_args = args
        backend._start(model, timeout_s)
        return backend

    def _start(self, model: str, timeout_s: float) -> None:
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model,
            *self._launch_args,
        ]
        self.process = subprocess.Popen(cmd)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendError(503, f"vLLM exited with {self.process.returncode}: {' '.join(cmd)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            time.sleep(1)
        raise BackendError(503, f"vLLM did not answer within {timeout_s:g} s: {' '.join(cmd)}")

    def load_checkpoint(self, path: str, version: int) -> None:
        """Serve the checkpoint saved at `path` (a relaunch of the vLLM server this backend started)."""
        if self.process is None:
            raise BackendError(501, "attach mode: reload the vLLM server yourself, then set weights_version")
        self.process.terminate()
        self.process.wait(timeout=120)
        self.model = path
        self._start(path, 900.0)
        self.weights_version = version

    def _tokens(self, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        prompt_ids = data.pop("prompt_token_ids", None)  # chat: top level; completions: per choice
        for c in data.get("choices", []):
            per_choice = c.pop("prompt_token_ids", None)
            prompt_ids = prompt_ids if prompt_ids is not None else per_choice
        if prompt_ids is None:
            raise BackendError(
                502, "the vLLM server returned no prompt_token_ids: vLLM >= 0.10.2 is needed", "api_error"
            )
        temperature = float(body.get("temperature", 1.0) or 1.0)
        choices = []
        for c in data.get("choices", []):
            ids = c.pop("token_ids", None) or []
            lp = c.get("logprobs") or {}
            values = (
                [t["logprob"] for t in lp.get("content") or []]
                if "content" in lp
                else lp.get("token_logprobs") or []
            )
            if not body.get("logprobs"):
                c["logprobs"] = None  # the agent did not ask for them
            choices.append(
                ChoiceTokens(ids, [float(v) for v in values], c.get("finish_reason") or "stop", temperature)
            )
        return {
            "response": data,
            "prompt_ids": list(prompt_ids),
            "choices": choices,
            "model": str(data.get("model", self.model or "")),
            "weights_version": self.weights_version,
            "trainable": True,
        }

    async def close(self) -> None:
        await super().close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 60)


def _upstream_error(status: int, content: bytes) -> BackendError:
    """The upstream's own OpenAI error (message, type, param, code) with its status, for the agent."""
    try:
        err = pydantic_core.from_json(content).get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    text = content[:500].decode("utf-8", "replace")
    return BackendError(
        status,
        str(err.get("message") or text or f"upstream answered {status}"),
        str(err.get("type") or "api_error"),
        err.get("param"),
        err.get("code"),
    )
