"""A scripted LLM provider for litellm (no network): each call takes the next scripted answer.

Registered as litellm's custom provider ``scripted``, so the executors run their real code path (litellm's
request building, instructor's tool calls and re-asks, usage accounting) against answers a test chooses:
text, a tool call's JSON arguments, or a provider error to raise. Every request is kept for assertions.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # after the variable above: litellm reads it at import
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk

from engine.steps.llm import LlmSettings, ModelRoute

#: US$ per token for the scripted routes: 10 prompt + 20 completion tokens (litellm's mock usage) = 0.05 C-ION
PROMPT_PRICE, COMPLETION_PRICE = 1e-6, 2e-6


@dataclass
class Tool:
    """Answer with a tool call whose arguments are this JSON text."""

    arguments: str


@dataclass
class Script:
    answers: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, kwargs: dict[str, Any]) -> Any:
        with self.lock:
            self.requests.append(
                {
                    "model": kwargs.get("model"),
                    "messages": [dict(m) for m in kwargs.get("messages", [])],
                    "tools": (kwargs.get("optional_params") or {}).get("tools"),
                    "params": dict(kwargs.get("optional_params") or {}),
                    "api_base": kwargs.get("api_base"),
                }
            )
            if not self.answers:
                raise AssertionError("the scripted LLM was called more often than the test scripted")
            answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class ScriptedLLM(CustomLLM):
    def __init__(self) -> None:
        super().__init__()
        self.script = Script()

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.script.next(kwargs)
        messages = kwargs["messages"]
        if isinstance(answer, Tool):
            tools = (kwargs.get("optional_params") or {}).get("tools") or [{"function": {"name": "reply"}}]
            name = tools[0]["function"]["name"]
            call = {"id": "call-1", "type": "function", "function": {"name": name, "arguments": answer.arguments}}
            return litellm.completion(model="openai/scripted", messages=messages, mock_tool_calls=[call])
        return litellm.completion(model="openai/scripted", messages=messages, mock_response=str(answer))

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        answer = str(self.script.next(kwargs))
        words = answer.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield GenericStreamingChunk(
                text=word if last else word + " ",
                is_finished=last,
                finish_reason="stop" if last else "",
                usage={"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}
                if last
                else None,
                index=0,
                tool_use=None,
            )


PROVIDER = ScriptedLLM()


def install() -> Script:
    """Register the provider (once) and give it a fresh script."""
    if not any(p.get("provider") == "scripted" for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "scripted", "custom_handler": PROVIDER},
        ]
        litellm.utils.custom_llm_setup()  # type: ignore[no-untyped-call]  # litellm leaves it unannotated
    PROVIDER.script = Script()
    return PROVIDER.script


def settings(**overrides: Any) -> LlmSettings:
    route = ModelRoute("scripted/any", input_cost_per_token=PROMPT_PRICE, output_cost_per_token=COMPLETION_PRICE)
    models = {"default": route, "cheap": route, "smart": route, "unpriced": ModelRoute("scripted/unpriced")}
    return LlmSettings(models=models, **overrides)


def http_error(
    kind: Callable[..., Exception], status: int, headers: dict[str, str] | None = None, **kw: Any
) -> Exception:
    """A litellm provider error as the provider would raise it (with the HTTP response attached)."""
    response = httpx.Response(status, headers=headers or {}, request=httpx.Request("POST", "http://scripted/v1"))
    return kind(message=f"scripted {status}", llm_provider="openai", model="any", response=response, **kw)


def tool(value: Any) -> Tool:
    return Tool(json.dumps(value))
