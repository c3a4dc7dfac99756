"""Model manager: catalog, downloads, local models, fit verdicts (Qt-free core) and its Qt panel.

Public pieces (everything but `panel.py` is Qt-free; nothing here imports torch, and
`huggingface_hub` is imported lazily so the offline switch can take effect first):

- `manager.ModelManager(models_dir, *, endpoint=None, token=None, offline=None, context_length=8192,
  system=None)`: catalog_rows(), local_models(), disk_usage(), start_download/pause/resume/cancel,
  resume_pending(), verify(), delete(), import_folder(), move_models_dir()/start_move(),
  last_loaded, offline, context_length, subscribe(callback) for `events.*`, close().
- `manager.default_models_dir()` (= `app.paths.default_models_dir`): user data folder/models.
- `network.set_offline(bool)`: app-wide offline mode (also sets HF_HUB_OFFLINE); call it at start.
- `panel.ModelManagerPanel(manager, parent=None)`: signals load_requested(object), unload_requested(),
  status_message(str), download_progress(str, int, int), models_dir_changed(object),
  context_length_changed(int); methods set_loaded(path | None), set_context_length(n), refresh().
- `python -m app.models list|download|verify|import|delete` for the same without a window.
"""
