"""Lantern's local OpenAI-compatible API: Chat Completions, Responses and Models over HTTP.

`python -m engine serve --model DIR` runs it headless; the window serves the model it has loaded
through its own worker thread (app/api_server.py). Pieces:

* `app.py`     the ASGI application (Starlette): routes, bearer token, bounded bodies, OpenAI-shaped errors.
* `host.py`    where generations run: one thread owns the engine; jobs queue up (bounded) and stream
               their events back to the event loop; a disconnect cancels the job.
* `pool.py`    a few sessions (KV caches) matched by longest common prefix, so a resent conversation
               prefills only its new tokens.
* `turn.py`    engine deltas -> reasoning / answer text / tool calls, with stop sequences.
* `chat.py`, `responses.py`   the two APIs' request parsing and response/event shapes.
* `store.py`   stored responses (SQLite) for `previous_response_id`.
* `serve.py`   the command line and the uvicorn server wrapper.
"""
