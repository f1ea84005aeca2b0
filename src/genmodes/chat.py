"""Scoring through an instruct model's chat template (``scoring.chat_template: true`` in a config),
like lm-eval's ``--apply_chat_template``: the text before the choices (a condition's documents, then
the question) becomes one user message, and each choice continues the assistant's turn.

The template is split around the message content, so a condition's shared prefix (in_context's
documents) stays a prefix: [template head + documents] is encoded once, [question + template tail]
per question. Off by default: P1 scores base-model likelihoods without any template.
"""

from __future__ import annotations

from typing import Any, Callable

from genmodes.errors import ConfigError

_SENTINEL = "\u0000GENMODES_CONTENT\u0000"


def template_parts(tokenizer: Any) -> tuple[str, str]:
    """(text before the user's message, text after it up to the assistant's answer)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("scoring.chat_template: this model's tokenizer has no chat template "
                          "(use an instruct model, or set chat_template: false)")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tokenize=False,
                                             add_generation_prompt=True)
    if rendered.count(_SENTINEL) != 1:
        raise ConfigError("scoring.chat_template: the tokenizer's template does not render the message verbatim")
    head, tail = rendered.split(_SENTINEL)
    return head, tail


def wrap(tokenizer: Any, prefix: str, context_for: Callable[[Any], str]) -> tuple[str, Callable[[Any], str]]:
    """The prefix and per-question context of a prepared condition, inside the chat template."""
    head, tail = template_parts(tokenizer)
    return head + prefix, lambda q: context_for(q) + tail
