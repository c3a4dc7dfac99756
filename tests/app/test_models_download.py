"""Downloads against a fake hub on 127.0.0.1: full, killed process resumed, lost connection,
corrupt bytes, full disk, pause/resume/cancel, errors a user can act on."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from app.models import downloader
from app.models.hub import fetch_remote_model
from app.models.errors import AccessNeededError, HubUnreachableError, NotFoundError, NotWritableError
from app.models.events import DownloadProgress, DownloadStateChanged, JobState
from app.models.local import ModelState
from tests.app.fakehub import FakeHub, tiny_repo
from tests.app.models_support import (ENGINE_FILES, REPO, bytes_on_disk, hub, make_manager, online,  # noqa: F401
                                      repo_files, wait_for, wanted_total)

ROOT = Path(__file__).resolve().parents[2]


def test_metadata_via_huggingface_hub_lists_only_engine_files(hub, repo_files, online):
    remote = fetch_remote_model(REPO, endpoint=hub.url)
    assert {f.name for f in remote.files} == ENGINE_FILES
    for f in remote.files:
        assert f.size == len(repo_files[f.name])
        if f.name.endswith(".safetensors"):
            assert f.sha256 == hashlib.sha256(repo_files[f.name]).hexdigest()
        else:
            assert f.sha256 is None and f.blob_id          # checked as a git blob
    assert remote.revision == "0123456789abcdef0123456789abcdef01234567"


def test_full_download_fetches_only_engine_files_and_is_ready(make_manager, hub, repo_files, tmp_path):
    m = make_manager()
    progress = []
    m.subscribe(lambda e: progress.append(e.progress) if isinstance(e, DownloadProgress) else None)
    status = m.download_blocking(REPO)
    assert status.state == JobState.DONE, status.message
    folder = tmp_path / "models" / "gpt-oss-20b"
    for name in ENGINE_FILES:
        assert (folder / name).read_bytes() == repo_files[name]
    assert not list(folder.glob("*.part"))
    assert not (folder / "original").exists() and not (folder / "metal").exists()
    assert not any("original/" in p or "metal/" in p or "README" in p for _m, p, _r in hub.requests)
    assert hub.total_served() == wanted_total(repo_files)
    [model] = m.local_models()
    assert model.state == ModelState.READY and model.repo_id == REPO
    assert progress and progress[-1].done_bytes == progress[-1].total_bytes == wanted_total(repo_files)
    assert not (tmp_path / "models" / "downloads.json").exists()      # the queue is empty again


def test_download_killed_midway_resumes_in_a_new_process(tmp_path, online):
    files = tiny_repo(shard_bytes=1_000_000)
    hub = FakeHub(repos={REPO: files}, delay_per_chunk_s=0.02, chunk=32 * 1024)
    try:
        models = tmp_path / "models"
        folder = models / "gpt-oss-20b"
        total = wanted_total(files)
        # The command line downloader, pointed at the fake hub through HF_ENDPOINT.
        env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT), "HF_ENDPOINT": hub.url}
        proc = subprocess.Popen([sys.executable, "-m", "app.models", "--models-dir", str(models), "download", REPO],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        saw_part = []

        def far_enough() -> bool:
            saw_part.extend(p.name for p in folder.glob("*.part"))          # our own partial files
            return bytes_on_disk(folder) > total * 0.4

        try:
            wait_for(far_enough, timeout=30)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        kept = bytes_on_disk(folder)
        assert total * 0.4 < kept < total
        assert saw_part and not list(folder.glob("*.incomplete"))
        queue = json.loads((models / "downloads.json").read_text())
        assert queue["jobs"][0]["repo_id"] == REPO and queue["jobs"][0]["state"] == "downloading"

        hub.reset_counts()
        hub.delay_per_chunk_s = 0.0
        from app.models.manager import ModelManager
        from tests.app.models_support import SYSTEM
        m = ModelManager(models, endpoint=hub.url, system=SYSTEM)
        assert m.resume_pending() == [REPO]
        wait_for(lambda: not m.is_running(REPO), timeout=30)
        assert m.job_status(REPO).state == JobState.DONE, m.job_status(REPO).message
        # Only the missing bytes travel again: nothing already on disk is fetched twice.
        assert hub.total_served() == total - kept
        assert any(r and r.startswith("bytes=") and r != "bytes=0-" for _m, _p, r in hub.requests)
        for name in ENGINE_FILES:
            assert (folder / name).read_bytes() == files[name]
        assert m.local_models()[0].state == ModelState.READY
    finally:
        hub.close()


def test_connection_dropped_midway_is_resumed_with_range(make_manager, hub, repo_files):
    shard = "model-00001-of-00002.safetensors"
    hub.drop_once_after[shard] = 100_000
    m = make_manager()
    assert m.download_blocking(REPO).state == JobState.DONE
    assert hub.total_served() == wanted_total(repo_files)          # not a single byte fetched twice
    assert any(p.endswith("/cdn/" + hashlib.sha256(repo_files[shard]).hexdigest()) and r == "bytes=100000-"
               for _m, p, r in hub.requests)


@pytest.mark.parametrize("shard", ["model-00002-of-00002.safetensors", "config.json"])   # LFS sha256 / git blob sha1
def test_corrupt_bytes_are_detected_and_fetched_again(make_manager, hub, repo_files, tmp_path, shard):
    hub.corrupt_once.add(shard)
    m = make_manager()
    notices = []
    m.subscribe(lambda e: notices.append(e.message) if isinstance(e, DownloadStateChanged) else None)
    assert m.download_blocking(REPO).state == JobState.DONE
    assert any(shard in n and "arrived damaged" in n and "once more" in n for n in notices)   # reported
    assert hub.served[shard] == 2 * len(repo_files[shard])
    assert (tmp_path / "models" / "gpt-oss-20b" / shard).read_bytes() == repo_files[shard]


def test_corruption_on_disk_found_by_verify_and_repaired(make_manager, hub, repo_files, tmp_path):
    m = make_manager()
    assert m.download_blocking(REPO).state == JobState.DONE
    folder = tmp_path / "models" / "gpt-oss-20b"
    shard = folder / "model-00000-of-00002.safetensors"
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[5000] ^= 0x01                                   # bit rot: same size, same mtime
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert m.local_models()[0].state == ModelState.READY  # the manifest is trusted until asked
    assert m.verify(folder).state == ModelState.CORRUPT
    hub.reset_counts()
    assert m.download_blocking(REPO).state == JobState.DONE
    assert hub.served == {shard.name: len(repo_files[shard.name])}   # only the bad file again
    assert m.local_models()[0].state == ModelState.READY
    assert shard.read_bytes() == repo_files[shard.name]


def test_disk_full_midway_stops_keeps_bytes_and_resumes(make_manager, hub, repo_files, tmp_path, monkeypatch):
    real = downloader.write_chunk
    written = [0]

    def filling(fh, data):
        if written[0] + len(data) > 300_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(data)
        real(fh, data)

    monkeypatch.setattr(downloader, "write_chunk", filling)
    m = make_manager()
    status = m.download_blocking(REPO)
    assert status.state == JobState.ERROR
    assert "disk is full" in status.message
    folder = tmp_path / "models" / "gpt-oss-20b"
    kept = bytes_on_disk(folder)
    assert kept == written[0] > 0
    monkeypatch.setattr(downloader, "write_chunk", real)
    hub.reset_counts()
    assert m.download_blocking(REPO).state == JobState.DONE
    assert hub.total_served() == wanted_total(repo_files) - kept


def test_free_space_checked_before_starting(make_manager, hub, monkeypatch):
    import app.models.download_queue as queue_mod

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(queue_mod.shutil, "disk_usage", lambda p: Usage(10**12, 10**12 - 9_100_000, 9_100_000))
    m = make_manager()
    status = m.download_blocking(REPO)
    assert status.state == JobState.ERROR
    assert "needs" in status.message and "9.1 MB free" in status.message
    assert not any("/resolve/" in p or "/cdn/" in p for _m, p, _r in hub.requests)


def test_pause_resume_and_cancel(make_manager, hub, repo_files, tmp_path):
    hub.delay_per_chunk_s = 0.02
    hub.chunk = 16 * 1024
    m = make_manager()
    folder = tmp_path / "models" / "gpt-oss-20b"
    m.start_download(REPO)
    wait_for(lambda: bytes_on_disk(folder) > 100_000)
    m.pause(REPO)
    assert m.job_status(REPO).state == JobState.PAUSED
    assert m.local_models()[0].state == ModelState.PAUSED
    kept = bytes_on_disk(folder)
    # A paused download is not restarted by itself at the next start, only by Resume.
    m2 = make_manager()
    assert m2.resume_pending() == []
    hub.reset_counts()
    hub.delay_per_chunk_s = 0.0
    m2.resume(REPO)
    wait_for(lambda: not m2.is_running(REPO))
    assert m2.job_status(REPO).state == JobState.DONE
    assert hub.total_served() == wanted_total(repo_files) - kept

    m2.delete(folder)
    hub.delay_per_chunk_s = 0.02
    m2.start_download(REPO)
    wait_for(lambda: bytes_on_disk(folder) > 50_000)
    m2.cancel(REPO)
    assert m2.job_status(REPO).state == JobState.CANCELLED
    assert not folder.exists()
    assert not (tmp_path / "models" / "downloads.json").exists()


def test_errors_a_user_can_act_on(make_manager, hub, tmp_path, online):
    hub.gated.add(REPO)
    with pytest.raises(AccessNeededError):
        fetch_remote_model(REPO, endpoint=hub.url)
    status = make_manager().download_blocking(REPO)
    assert status.state == JobState.ERROR and "access" in status.message.lower()
    hub.gated.clear()
    hub.repos.clear()
    with pytest.raises(NotFoundError):
        fetch_remote_model(REPO, endpoint=hub.url)
    dead = FakeHub()
    url = dead.url
    dead.close()
    with pytest.raises(HubUnreachableError, match="Cannot reach the hub"):
        fetch_remote_model(REPO, endpoint=url)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(NotWritableError):
        make_manager(models_dir=blocker / "models").start_download(REPO)


def test_hub_unreachable_then_back_is_retried_by_itself(make_manager, hub, repo_files):
    """Network gone (or the laptop asleep) longer than the quick retries: the job waits and tries again."""
    hub.down = True
    m = make_manager(max_retries=0, auto_retry_s=0.2)
    m.start_download(REPO)
    wait_for(lambda: (s := m.job_status(REPO)) is not None and "Trying again" in s.message)
    assert m.job_status(REPO).state == JobState.RETRYING and m.is_running(REPO)
    hub.down = False
    wait_for(lambda: not m.is_running(REPO))
    assert m.job_status(REPO).state == JobState.DONE
    assert m.local_models()[0].state == ModelState.READY


def test_server_that_ignores_range_gets_the_file_from_the_start(make_manager, hub, repo_files, tmp_path):
    folder = tmp_path / "models" / "gpt-oss-20b"
    shard = "model-00000-of-00002.safetensors"
    folder.mkdir(parents=True)
    (folder / (shard + ".part")).write_bytes(repo_files[shard][:1000])
    hub.ignore_range = True
    m = make_manager()
    snaps = []
    m.subscribe(lambda e: snaps.append(e.progress) if isinstance(e, DownloadProgress) else None)
    assert m.download_blocking(REPO).state == JobState.DONE
    assert (folder / shard).read_bytes() == repo_files[shard]
    assert snaps[-1].done_bytes == snaps[-1].total_bytes == wanted_total(repo_files)


def test_quitting_never_hangs_on_a_stalled_connection(make_manager, hub, tmp_path):
    import time

    hub.delay_per_chunk_s = 3.0                     # the network stalls after the first chunk
    m = make_manager()
    folder = tmp_path / "models" / "gpt-oss-20b"
    m.start_download(REPO)
    wait_for(lambda: bytes_on_disk(folder) > 0)
    t0 = time.monotonic()
    m.close(timeout=0.3)
    assert time.monotonic() - t0 < 1.0
    queue = json.loads((tmp_path / "models" / "downloads.json").read_text())
    assert queue["jobs"][0]["state"] == "downloading"             # resumed at the next start
