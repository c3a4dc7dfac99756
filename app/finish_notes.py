"""The short note shown under a reply that ended for a reason other than its natural end."""

from __future__ import annotations


def finish_note(reason: str | None, max_tokens: int | None = None) -> str | None:
    """Text for engine Finished.reason "length" or "tool_call"; None for every other reason."""
    if reason == "length":
        limit = f"the limit of {max_tokens:,} tokens" if max_tokens else "the reply length limit"
        return (f"The reply reached {limit} (reasoning included) and was cut off. "
                "Raise “Max reply tokens” in Settings (Ctrl+,) for longer replies.")
    if reason == "tool_call":
        return ("The model tried to call a tool. Lantern cannot run tools yet, so the reply ends here; "
                "ask again, perhaps saying it should answer without tools.")
    return None
