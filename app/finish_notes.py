"""The short note shown under a reply that ended for a reason other than its natural end."""

from __future__ import annotations


def finish_note(reason: str | None, max_tokens: int | None = None,
                completion_tokens: int | None = None) -> str | None:
    """Text for engine Finished.reason "length" or "tool_call"; None for every other reason.

    "length" is either the reply limit (max_tokens reached) or the model's context filling up
    first (fewer tokens written than the limit allowed).
    """
    if reason == "length":
        if max_tokens and completion_tokens is not None and completion_tokens < max_tokens:
            return ("The conversation filled the model's context, so the reply was cut off. Start a new chat, "
                    "or raise “Context length” in Settings (Ctrl+,) and reload the model.")
        limit = f"the limit of {max_tokens:,} tokens" if max_tokens else "the reply length limit"
        return (f"The reply reached {limit} (reasoning included) and was cut off. "
                "Raise “Max reply tokens” in Settings (Ctrl+,) for longer replies.")
    if reason == "tool_call":
        # Lantern runs a chat's tools (app/tool_worker.py): a reply ends on a call only when the chat
        # has none turned on (no documents attached, Python off) or after the most calls one reply may make.
        return ("The model tried to call a tool that Lantern did not run, so the reply ends here: this chat has "
                "no tools turned on (attach documents for its browser, or let it run Python), or the reply had "
                "made the most tool calls one reply may make. Ask again, perhaps saying it should answer without "
                "tools.")
    return None
