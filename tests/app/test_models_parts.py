"""The model manager's parts, each alone: the local library, the download queue (no ModelManager),
moving the models folder, moving a download to a new revision, the downloader's metadata check
before appending, and the wording of system and network errors."""

from __future__ import annotations

import errno
import hashlib
import http.client
import socket
import threading
import urllib.error
from pathlib import Path

import pytest

from app.models.catalog import RemoteFile, RemoteModel
from app.models.download_queue import DownloadQueue, RetryPolicy, move_to_revision
from app.models.downloader import download_file, part_path
from app.models.error_text import network_error_text, os_error_text
from app.models.errors import FileChangedError
from app.models.events import DownloadProgress, JobState, TaskFinished, TaskProgress
from app.models.folder_move import move_tree
from app.models.hub import FileMetadata, file_metadata, file_url
from app.models.library import LocalLibrary
from app.models.local import FileRecord, Manifest, ModelState
from tests.app.fakehub import changed_shard, tiny_repo, write_repo
from tests.app.models_support import (ENGINE_FILES, REPO, assert_plain, hub, make_manager, online,  # noqa: F401
                                      repo_files)

ROOT = Path(__file__).resolve().parents[2]
SHARD = "model-00001-of-00002.safetensors"


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_library_alone_scans_imports_verifies_and_deletes(tmp_path):
    lib = LocalLibrary(tmp_path / "models")
    assert lib.scan() == []
    hand = write_repo(tmp_path / "models" / "hand", tiny_repo(seed=1))
    mine = write_repo(tmp_path / "elsewhere" / "mine", tiny_repo(seed=2))
    lib.import_folder(mine)
    assert {(m.name, m.imported, m.state) for m in lib.scan()} == {("hand", False, ModelState.READY),
                                                                   ("mine", True, ModelState.READY)}
    seen = []
    report = lib.verify(hand, on_progress=lambda d, t: seen.append((d, t)))
    assert report.ok and "no hub hashes" in report.message and seen[-1][0] == seen[-1][1] == _size(hand)
    assert lib.disk_usage().models_bytes == _size(hand)
    assert lib.delete(mine.resolve()) == 0 and mine.exists()          # imported: only forgotten
    size = _size(hand)
    assert lib.delete(hand) == size and not hand.exists() and lib.scan() == []


def test_queue_alone_downloads_and_runs_tasks(tmp_path, hub, repo_files, online):
    events = []
    lib = LocalLibrary(tmp_path / "models")
    queue = DownloadQueue(lib, emit=events.append, endpoint=lambda: hub.url, policy=RetryPolicy(wait_s=None))
    status = queue.download_blocking(REPO)
    assert status.state == JobState.DONE, status.message
    folder = tmp_path / "models" / "gpt-oss-20b"
    for name in ENGINE_FILES:
        assert (folder / name).read_bytes() == repo_files[name]
    assert any(isinstance(e, DownloadProgress) for e in events)
    ran = threading.Event()
    names = []

    def work(stop):
        names.append(threading.current_thread().name)
        ran.set()

    queue.run_task("verify", folder, work)
    assert ran.wait(5) and names == ["verify-gpt-oss-20b"]
    queue.close()


def test_move_tree_alone_switches_before_removing(tmp_path):
    old = write_repo(tmp_path / "old" / "m", tiny_repo(seed=3)).parent
    size = _size(old)
    switched = []

    def on_switch(new):
        switched.append((new, _size(old)))                           # the old files are all still there

    new = move_tree(old, tmp_path / "new", on_switch=on_switch)
    assert switched == [(new, size)] and not old.exists() and _size(new) == size


def test_move_to_revision_keeps_the_same_bytes_and_drops_the_changed(tmp_path):
    old_files = tiny_repo()
    new_files = changed_shard(old_files, SHARD)
    folder = write_repo(tmp_path / "m", {k: v for k, v in old_files.items() if k != SHARD})
    part_path(folder / SHARD).write_bytes(old_files[SHARD][:1000])
    part_path(folder / "model-00002-of-00002.safetensors").write_bytes(b"x" * 10)

    def remote(files, rev):
        return RemoteModel(REPO, rev, tuple(sorted(
            (RemoteFile(n, len(d), hashlib.sha256(d).hexdigest() if n.endswith(".safetensors") else None,
                        hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest())
             for n, d in files.items() if n in ENGINE_FILES), key=lambda f: f.name)))

    old = Manifest.for_remote(remote(old_files, "a" * 40))
    old.files["stale.json"] = FileRecord(3, None, "b" * 40)           # gone from the new revision
    (folder / "stale.json").write_text("old")
    change = move_to_revision(folder, old, remote(new_files, "c" * 40))
    assert change.changed == (SHARD,) and change.removed == ("stale.json",) and change.kept == len(ENGINE_FILES) - 1
    assert not part_path(folder / SHARD).exists() and not (folder / "stale.json").exists()
    assert part_path(folder / "model-00002-of-00002.safetensors").exists()     # same content: kept
    assert "aaaaaaa → ccccccc" in change.message("gpt-oss-20b")
    assert move_to_revision(folder, old, remote(old_files, "a" * 40)) is None   # same commit: nothing to do


def test_download_file_checks_the_current_metadata_before_appending(tmp_path, hub, repo_files, online):
    old = repo_files[SHARD]
    new_files = changed_shard(repo_files, SHARD)
    hub.publish(REPO, new_files)
    dest = tmp_path / SHARD
    part_path(dest).write_bytes(old[:5000])                          # a partial copy of the old file
    planned = RemoteFile(SHARD, len(old), hashlib.sha256(old).hexdigest(), None)
    url = file_url(REPO, "main", SHARD, endpoint=hub.url)
    current = file_metadata(url)                                     # what the hub serves now
    assert current.etag == hashlib.sha256(new_files[SHARD]).hexdigest() and current.size == len(old)
    assert not current.matches(planned)
    hub.reset_counts()
    with pytest.raises(FileChangedError):
        download_file(url, dest, planned, headers={}, on_bytes=lambda n, net: None, should_stop=lambda: False,
                      check_remote=lambda: file_metadata(url))
    assert part_path(dest).read_bytes() == old[:5000]               # nothing appended
    assert [m for m, _p, _r in hub.requests] == ["HEAD"]             # and no bytes asked for
    assert FileMetadata(hashlib.sha256(old).hexdigest(), len(old), None).matches(planned)


def test_verify_and_delete_run_on_the_queue_workers(make_manager, tmp_path):
    m = make_manager()
    assert m.download_blocking(REPO).state == JobState.DONE
    folder = tmp_path / "models" / "gpt-oss-20b"
    seen: list[tuple[type, str]] = []
    done = threading.Event()

    def listen(event):
        if isinstance(event, (TaskProgress, TaskFinished)):
            seen.append((type(event), threading.current_thread().name))
            if isinstance(event, TaskFinished):
                done.set()

    m.subscribe(listen)
    m.start_verify(folder)
    assert done.wait(10)
    assert (TaskFinished, "verify-gpt-oss-20b") in seen and all(t == "verify-gpt-oss-20b" for _e, t in seen)
    done.clear()
    m.start_delete(folder)
    assert done.wait(10) and seen[-1] == (TaskFinished, "delete-gpt-oss-20b") and not folder.exists()


def test_the_panel_starts_no_threads_of_its_own():
    source = (ROOT / "app" / "widgets" / "models_panel.py").read_text()
    assert "threading" not in source and "QThread" not in source


@pytest.mark.parametrize("exc,words", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied", "/x"), "permission was denied"),
    (OSError(errno.EIO, "Input/output error"), "read or write error"),
    (OSError(errno.EXDEV, "Invalid cross-device link"), "invalid cross-device link"),
    (OSError("no errno at all"), "an unexpected system error"),
])
def test_os_errors_in_words(exc, words):
    text = os_error_text(exc)
    assert words in text
    assert_plain(f"Could not do it: {text}.")


@pytest.mark.parametrize("exc,words", [
    (urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")), "refused"),
    (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "could not be looked up"),
    (http.client.RemoteDisconnected("Remote end closed connection without response"), "without answering"),
    (TimeoutError("timed out"), "timed out"),
])
def test_network_errors_in_words(exc, words):
    text = network_error_text(exc)
    assert words in text
    assert_plain(text)


def test_a_file_whose_metadata_changed_is_fetched_from_byte_0_after_planning_again(make_manager, hub, repo_files,
                                                                                  tmp_path, monkeypatch):
    import app.models.hub as hub_mod

    folder = tmp_path / "models" / "gpt-oss-20b"
    m = make_manager()
    # A first run that stopped midway through SHARD (the plan's manifest is written with the files).
    hub.drop_once_after[SHARD] = 100_000
    assert make_manager(max_retries=0, auto_retry_s=None).download_blocking(REPO).state == JobState.ERROR
    assert part_path(folder / SHARD).stat().st_size == 100_000
    real = hub_mod.file_metadata
    answers = iter([FileMetadata("0" * 64, len(repo_files[SHARD]), None)])   # the hub says: another file

    def once_different(url, **kw):
        return next(answers, None) or real(url, **kw)

    monkeypatch.setattr(hub_mod, "file_metadata", once_different)
    hub.reset_counts()
    assert m.download_blocking(REPO).state == JobState.DONE
    assert hub.served[SHARD] == len(repo_files[SHARD])               # whole: the partial bytes were dropped
    assert not any(r for _m, p, r in hub.requests if r and p.startswith("/cdn/"))
    assert (folder / SHARD).read_bytes() == repo_files[SHARD]
