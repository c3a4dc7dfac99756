"""The tools gpt-oss was trained for, run on this machine (docs/tools.md). Qt-free and torch-free.

* `extract`: text out of the user's documents (plain text, Markdown, code, PDF, HTML, DOCX).
* `index`: a per-chat full-text index (SQLite FTS5, BM25 ranking) over those documents.
* `browser`: the `browser` tool (`search`, `open`, `find`) answered from that index, with the
  pages, cursors and citation format of OpenAI's reference browser; nothing goes to the network.
* `python`: the sandboxed, stateful `python` tool (one kernel process per chat).
* `roundtrip`: runs a reply with tools: when the model stops on a tool call, run the tool, append
  its result and let the reply continue.
"""
