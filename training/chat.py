"""Chat format: export rows to messages, and messages to token ids through the tokenizer's chat template.

A prompt is either a plain string (one user turn) or a conversation: a list of {"role", "content"}
messages. Every stage renders it with the tokenizer's chat template (`apply_chat_template(...,
add_generation_prompt=True)`), so the demo's small models and an imported instruct model take one
code path; the project's own tokenizers carry DEFAULT_CHAT_TEMPLATE. Pure Python (no torch).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

EOS_TOKEN = "<|endoftext|>"  # noqa: S105 - a token, not a password
PAD_TOKEN = "<|pad|>"  # noqa: S105
ROLES = ("system", "user", "assistant")

# The project's chat template (its small models carry it; imported models without one get it).
# An assistant turn ends with EOS, which is where sampling stops.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{ 'Instruction: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'Response: ' + message['content'] + eos_token + '\\n' }}"
    "{%- else -%}{{ message['content'] + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Response:' }}{%- endif -%}"
)

Message = dict[str, str]
Prompt = str | list[Message]


def check_messages(messages: Any) -> list[Message]:
    """Validate a conversation: a non-empty list of {"role": system|user|assistant, "content": str}."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"message {i}: expected {{'role': system|user|assistant, 'content': str}}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def to_messages(prompt: Prompt) -> list[Message]:
    """A prompt as a conversation: a string becomes one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return check_messages(prompt)


def row_prompt(row: dict[str, Any]) -> Prompt:
    """The prompt of an export row: its `messages` (without a final assistant turn that is the
    completion) when present, else its `prompt` string."""
    if "messages" in row:
        msgs = check_messages(row["messages"])
        if "completion" not in row and len(msgs) > 1 and msgs[-1]["role"] == "assistant":
            return msgs[:-1]
        return msgs
    return str(row["prompt"])


def prompt_field(prompt: Prompt) -> dict[str, Any]:
    """A prompt as an export row's field: {"prompt": text}, or {"messages": [...]} for a conversation
    (what row_prompt reads back)."""
    return {"prompt": prompt} if isinstance(prompt, str) else {"messages": prompt}


def row_completion(row: dict[str, Any]) -> str:
    """The completion of an SFT row: `completion`, else the final assistant turn of `messages`."""
    if "completion" in row:
        return str(row["completion"])
    msgs = check_messages(row.get("messages"))
    if msgs[-1]["role"] != "assistant":
        raise ValueError("an SFT row needs a completion or messages ending with an assistant turn")
    return msgs[-1]["content"]


def prompt_key(prompt: Prompt) -> str:
    """A hashable key for a prompt (the string itself, or the conversation as JSON)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def prompt_text(prompt: Prompt) -> str:
    """A prompt as plain text for display and the simulated world's oracle: the last user turn."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else prompt[-1]["content"]


@lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    return env.from_string(template)


def render_default(messages: list[Message], add_generation_prompt: bool, eos_token: str = EOS_TOKEN) -> str:
    """Render messages with DEFAULT_CHAT_TEMPLATE without a tokenizer (the world's corpus uses it)."""
    return str(
        _compiled(DEFAULT_CHAT_TEMPLATE).render(
            messages=messages, add_generation_prompt=add_generation_prompt, eos_token=eos_token
        )
    )


def render(tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> str:
    """Render messages with the tokenizer's chat template (DEFAULT_CHAT_TEMPLATE when it has none)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return str(text)
    return render_default(messages, add_generation_prompt, tokenizer.eos_token)


def _ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text; BOS once at the start when the tokenizer adds one and the text lacks it."""
    ids: list[int] = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if getattr(tokenizer, "add_bos_token", False) and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def keep_last(tokenizer: Any, ids: list[int], n: int) -> list[int]:
    """The last n of ids, keeping a leading BOS first when the tokenizer adds one."""
    if len(ids) <= n:
        return ids
    if n > 1 and getattr(tokenizer, "add_bos_token", False) and ids[0] == tokenizer.bos_token_id:
        return [ids[0], *ids[len(ids) - n + 1 :]]
    return ids[-n:]


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids a policy is conditioned on: the conversation rendered with a generation prompt."""
    return _ids(tokenizer, render(tokenizer, to_messages(prompt), add_generation_prompt=True))


def encode_pair(tokenizer: Any, prompt: Prompt, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids ending with EOS) for a prompt and its assistant reply.

    The completion's ids are what the template renders for the assistant turn after the generation
    prompt, up to and including EOS (so whitespace and merges match the model's own format); a
    template whose full rendering does not extend the prompt's falls back to tokenising the text.
    """
    msgs = to_messages(prompt)
    p = encode_prompt(tokenizer, msgs)
    eos = tokenizer.eos_token_id
    text = completion.strip()
    if not text:
        return p, [eos]
    full = _ids(tokenizer, render(tokenizer, [*msgs, {"role": "assistant", "content": text}], False))
    if full[: len(p)] == p and len(full) > len(p):
        c = full[len(p) :]
        c = c[: c.index(eos) + 1] if eos in c else [*c, eos]
    else:
        c = [*tokenizer(text, add_special_tokens=False)["input_ids"], eos]
    return p, c
