"""Model manager: catalog, downloads, local models, fit verdicts (Qt-free; the panel that shows
it is `app.widgets.models_panel`). Nothing here imports torch, and `huggingface_hub` is imported
lazily so the offline switch can take effect first.

One job per module:
- `manager.ModelManager(models_dir, *, endpoint=None, token=None, offline=None, context_length=8192,
  system=None, max_retries=5, retry_backoff_s=1.0, auto_retry_s=60.0, retry_limit=None)`: the one
  object callers use. `start_download(repo_id)` downloads a catalog model (returns at once; events
  report progress); catalog_rows(), fit_for(), local_models(), disk_usage(), pause/resume/cancel,
  resume_pending(), start_verify()/verify_report(), start_delete()/delete(), import_folder(),
  move_models_dir()/start_move(), last_loaded, offline, context_length, system,
  subscribe(callback) for `events.*`, close().
- `library.LocalLibrary`: what is on disk (scan, import, verify, delete).
- `download_queue.DownloadQueue`: jobs on worker threads, retries (`RetryPolicy`), resume across
  restarts, moving a download to the hub's current commit, free space; also runs verify/delete.
- `folder_move.move_tree`: moving the models folder (copy, check, switch, remove).
- `hub`: huggingface_hub for metadata, auth headers and URLs; `downloader`: the ranged download
  into `.part` files that survives restarts (the one thing huggingface_hub does not do).
- `catalog`, `local` (manifests, folder states), `fit` (the "will it fit" verdict), `events`,
  `errors` (typed, user-facing), `error_text` (OS and network errors in words), `network` (the
  offline switch), `panel_text`/`units` (wording).
- `python -m app.models list|download|verify|import|delete` for the same without a window.
"""
