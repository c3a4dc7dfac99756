"""Use a gpt-oss model that runs on a server the user chose (vLLM, SGLang, llama-server, another
Lantern): the remote engine, the list of servers, and where their API keys are kept.

Qt-free. Harmony stays on the server (the server renders the prompt); Lantern sends the
conversation as OpenAI Chat Completions messages and maps the streamed reply back to the same
`Delta`/`Finished` events the local engine produces. Nothing here opens a connection until the
user has added a server, and offline mode allows only servers on this computer (loopback).

Modules: `target` (what the worker is asked to use), `errors` (what the user is told),
`policy` (the offline rule), `conversation` (messages -> request), `stream` (chunks -> events),
`http` (client, TLS and error translation), `tls` (the explicit trust of a self-signed
certificate), `engine` (RemoteEngine), `keys` (API keys in the OS keyring), `registry` (servers).
"""
