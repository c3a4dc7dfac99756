"""Model manager: catalog, downloads, local models, fit verdicts (Qt-free core) and its Qt panel.

Everything here but `panel.py` is Qt-free and never imports torch. `huggingface_hub` is imported
lazily (see `network.py`) so the offline setting takes effect before its import.
"""
