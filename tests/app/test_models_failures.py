"""The five failures of issue #13, each against the fake hub: hub unreachable (command line and
window), the access token after a restart, the repo changed between kill and resume, the last
hash mismatch, and the window's dialogs, Verify result, hand-copied folders and raw errno text."""

from __future__ import annotations

import errno
import hashlib
import shutil
import time
from pathlib import Path

from app.models import downloader
from app.models.events import DownloadStateChanged, JobState
from app.models.fit import SystemMemory
from app.models.local import ModelState, read_manifest
from app.models.manager import ModelManager
from tests.app.fakehub import REVISION, FakeHub, changed_shard, tiny_repo, unreachable_url, write_repo
from tests.app.models_support import (ENGINE_FILES, REPO, SYSTEM, assert_plain, bytes_on_disk,  # noqa: F401
                                      dialogs, hub, make_manager, online, panel_for, repo_files, run_cli,
                                      wait_for)

REPO_120B = "openai/gpt-oss-120b"
SHARDS = [f"model-0000{i}-of-00002.safetensors" for i in range(3)]


# ---------------------------------------------------------------------------------------- 1 hub unreachable

def test_1_cli_says_the_hub_is_unreachable_and_gives_up_after_its_retries(tmp_path):
    started = time.monotonic()
    proc = run_cli(tmp_path, unreachable_url(), "download", REPO, "--retries", "2", "--retry-wait", "0.2",
                   timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    err = proc.stderr
    assert "Cannot reach the hub" in err and "retrying in 0.2 s" in err and "Ctrl-C to stop" in err
    assert err.count("retrying in") == 2                              # --retries 2: two waits, then it stops
    assert "Gave up after 3 tries" in proc.stdout + err
    assert "run the same command again" in proc.stdout + err
    assert_plain(proc.stdout + err)


def test_1_cli_retries_are_bounded_by_default(tmp_path, monkeypatch):
    """Without --retries the command still ends: a small default, and the wait it announces."""
    from app.models.__main__ import DEFAULT_RETRIES, build_parser

    args = build_parser().parse_args(["download", REPO])
    assert args.retries == DEFAULT_RETRIES and 1 <= DEFAULT_RETRIES <= 5
    assert args.retry_wait == 60
    proc = run_cli(tmp_path, unreachable_url(), "download", REPO, "--retry-wait", "0", timeout=60)
    assert proc.returncode == 1 and f"Gave up after {DEFAULT_RETRIES + 1} tries" in proc.stdout + proc.stderr


def test_1_window_message_names_the_button_and_the_button_retries_now(panel_for, qtbot, hub):
    hub.down = True
    m, panel = panel_for(max_retries=0, auto_retry_s=60)
    card = panel.cards[REPO]
    card.download_btn.click()
    qtbot.waitUntil(lambda: "Cannot reach the hub" in card.status.text(), timeout=10000)
    button = card.resume_btn
    assert button.isVisible() and button.isEnabled()
    assert f"press {button.text()}" in card.status.text() and "60 s" in card.status.text()
    assert_plain(card.status.text())
    hub.down = False
    button.click()                                    # not 60 s later: now
    qtbot.waitUntil(lambda: m.job_status(REPO).state == JobState.DONE, timeout=10000)


# ---------------------------------------------------------------------------------------- 2 token

def test_2_a_resume_after_a_restart_sends_the_access_token(tmp_path, online):
    token = "hf_lantern_test_token"
    files = tiny_repo(shard_bytes=600_000)
    hub = FakeHub(repos={REPO: files}, required_token=token, delay_per_chunk_s=0.01, chunk=32 * 1024)
    try:
        models = tmp_path / "models"
        folder = models / "gpt-oss-20b"
        m = ModelManager(models, endpoint=hub.url, token=token, system=SYSTEM)
        m.start_download(REPO)
        wait_for(lambda: bytes_on_disk(folder) > 400_000, timeout=30)
        m.close()                                     # the app quits mid-download
        kept = bytes_on_disk(folder)
        hub.reset_counts()
        hub.delay_per_chunk_s = 0.0
        # A new process (nothing of huggingface_hub imported yet) resumes with the token from HF_TOKEN.
        proc = run_cli(tmp_path, hub.url, "download", REPO, HF_TOKEN=token)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "anonymously" not in proc.stderr
        for name in ENGINE_FILES:
            assert (folder / name).read_bytes() == files[name]
        assert hub.total_served() == sum(len(files[n]) for n in ENGINE_FILES) - kept
        hub_requests = [(meth, p, a) for meth, p, a in hub.auth_seen if not p.startswith("/cdn/")]
        assert hub_requests and all(a == f"Bearer {token}" for _m, _p, a in hub_requests)
        cdn = [a for _m, p, a in hub.auth_seen if p.startswith("/cdn/")]
        assert cdn and all(a is None for a in cdn)   # the token never leaves the hub for the CDN
    finally:
        hub.close()


def test_2_hub_headers_work_in_a_fresh_process():
    """The auth headers come from huggingface_hub with nothing else imported first."""
    import subprocess
    import sys

    code = ("from app.models.hub import hub_headers; h = hub_headers('hf_x'); "
            "print(h['authorization'], 'lantern' in h['user-agent'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["Bearer", "hf_x", "True"], out.stderr


# ---------------------------------------------------------------------------------------- 3 repo changed

def _start_then_quit_midway(tmp_path: Path, hub: FakeHub) -> Path:
    """Download until the second shard is partly there, then quit (the state a kill leaves)."""
    models = tmp_path / "models"
    folder = models / "gpt-oss-20b"
    m = ModelManager(models, endpoint=hub.url, system=SYSTEM)
    m.start_download(REPO)
    wait_for(lambda: (p := folder / (SHARDS[1] + ".part")).exists() and p.stat().st_size > 100_000, timeout=30)
    m.close()
    assert (folder / SHARDS[0]).is_file() and (folder / (SHARDS[1] + ".part")).is_file()
    return models


def _resume(models: Path, hub: FakeHub) -> tuple[ModelManager, list[str]]:
    hub.reset_counts()
    hub.delay_per_chunk_s = 0.0
    m = ModelManager(models, endpoint=hub.url, system=SYSTEM, retry_backoff_s=0.05)
    notices: list[str] = []
    m.subscribe(lambda e: notices.append(e.message) if isinstance(e, DownloadStateChanged) else None)
    assert m.resume_pending() == [REPO]
    wait_for(lambda: not m.is_running(REPO), timeout=30)
    return m, notices


def _assert_is(folder: Path, files: dict[str, bytes], revision: str) -> None:
    for name in ENGINE_FILES:
        assert (folder / name).read_bytes() == files[name], name
    assert not list(folder.glob("*.part*"))
    assert read_manifest(folder).revision == revision


def _cdn_ranges(hub: FakeHub, data: bytes) -> list[str | None]:
    path = "/cdn/" + hashlib.sha256(data).hexdigest()
    return [r for meth, p, r in hub.requests if p == path and meth == "GET"]


def test_3_repo_changed_between_quit_and_resume_partial_file_restarts_from_the_new_revision(tmp_path, online):
    old = tiny_repo(shard_bytes=400_000)
    hub = FakeHub(repos={REPO: old}, delay_per_chunk_s=0.01, chunk=32 * 1024)
    try:
        models = _start_then_quit_midway(tmp_path, hub)
        new = changed_shard(changed_shard(old, SHARDS[1]), SHARDS[0], seed=7)   # the partial and a finished one
        new_rev = hub.publish(REPO, new)                                          # the old commit still exists
        m, notices = _resume(models, hub)
        assert m.job_status(REPO).state == JobState.DONE, m.job_status(REPO).message
        _assert_is(models / "gpt-oss-20b", new, new_rev)          # one revision, never a splice of two
        said = " ".join(notices)
        assert "changed on the hub" in said and REVISION[:7] in said and new_rev[:7] in said
        assert _cdn_ranges(hub, new[SHARDS[1]]) == [None]         # the changed partial file: from byte 0
        assert _cdn_ranges(hub, new[SHARDS[0]]) == [None]         # the changed finished file: fetched again
        assert hub.served.get(SHARDS[2]) == len(new[SHARDS[2]])   # unchanged files: once
        assert "config.json" not in hub.served                     # finished and unchanged: kept
    finally:
        hub.close()


def test_3_repo_changed_unchanged_partial_file_is_resumed(tmp_path, online):
    old = tiny_repo(shard_bytes=400_000)
    hub = FakeHub(repos={REPO: old}, delay_per_chunk_s=0.01, chunk=32 * 1024)
    try:
        models = _start_then_quit_midway(tmp_path, hub)
        kept = (models / "gpt-oss-20b" / (SHARDS[1] + ".part")).stat().st_size
        new = changed_shard(old, SHARDS[2])                       # only a file not started yet changed
        new_rev = hub.publish(REPO, new)
        m, notices = _resume(models, hub)
        assert m.job_status(REPO).state == JobState.DONE, m.job_status(REPO).message
        _assert_is(models / "gpt-oss-20b", new, new_rev)
        assert any("changed on the hub" in n for n in notices)
        assert _cdn_ranges(hub, new[SHARDS[1]]) == [f"bytes={kept}-"]   # same bytes in both: resumed
        assert hub.served[SHARDS[1]] == len(new[SHARDS[1]]) - kept
    finally:
        hub.close()


def test_3_commit_removed_between_quit_and_resume_does_not_trap_the_download(tmp_path, online):
    old = tiny_repo(shard_bytes=400_000)
    hub = FakeHub(repos={REPO: old}, delay_per_chunk_s=0.01, chunk=32 * 1024)
    try:
        models = _start_then_quit_midway(tmp_path, hub)
        new = changed_shard(old, SHARDS[1])
        new_rev = hub.publish(REPO, new)
        hub.drop_commit(REPO, REVISION)                           # history rewritten
        m, notices = _resume(models, hub)
        assert m.job_status(REPO).state == JobState.DONE, m.job_status(REPO).message
        _assert_is(models / "gpt-oss-20b", new, new_rev)
        assert any("changed on the hub" in n for n in notices)
        assert not any("not found" in n.lower() for n in notices)
    finally:
        hub.close()


# ---------------------------------------------------------------------------------------- 4 last hash mismatch

def test_4_the_last_hash_mismatch_says_what_to_do(make_manager, hub, tmp_path):
    shard = SHARDS[2]
    hub.corrupt_always.add(shard)
    status = make_manager().download_blocking(REPO)
    assert status.state == JobState.ERROR
    assert shard in status.message and "fetched again" not in status.message
    assert "twice" in status.message and "Try again later" in status.message
    assert "kept" in status.message                         # the good files stay: no need to start over
    assert_plain(status.message)
    folder = tmp_path / "models" / "gpt-oss-20b"
    assert not (folder / (shard + ".part")).exists() and (folder / SHARDS[0]).is_file()


# ---------------------------------------------------------------------------------------- 5 window

def test_5_a_download_that_will_not_fit_asks_first(panel_for, dialogs, hub):
    asked, answers = dialogs
    m, panel = panel_for(system=SystemMemory(25 * 1000**3, None))      # the 65 GB 120b on a 25 GB laptop
    card = panel.cards[REPO_120B]
    assert card.badge.text() == "Will not fit"
    answers.append("Don't download")
    card.download_btn.click()
    [q] = asked
    assert "will not fit" in q.text and "65" in q.text
    assert q.buttons == ["Download anyway", "Don't download"] or set(q.buttons) == {"Download anyway",
                                                                                    "Don't download"}
    assert q.default == "Don't download" and q.escape == "Don't download"
    assert m.job_status(REPO_120B) is None and not hub.requests      # nothing started, nothing asked of the hub
    answers.append("Download anyway")
    card.download_btn.click()
    assert m.job_status(REPO_120B) is not None
    # One that fits starts without a question.
    panel.cards[REPO].download_btn.click()
    assert len(asked) == 2


def test_5_cancel_dialog_defaults_to_keeping_the_download_and_says_what_buttons_do(panel_for, dialogs, qtbot,
                                                                                   hub, tmp_path):
    asked, answers = dialogs
    hub.delay_per_chunk_s = 0.02
    hub.chunk = 16 * 1024
    m, panel = panel_for()
    card = panel.cards[REPO]
    card.download_btn.click()
    folder = tmp_path / "models" / "gpt-oss-20b"
    qtbot.waitUntil(lambda: bytes_on_disk(folder) > 50_000, timeout=10000)
    answers.append("Keep downloading")
    card.cancel_btn.click()
    q = asked[-1]
    assert sorted(q.buttons) == ["Cancel download", "Keep downloading"]
    assert q.default == "Keep downloading" and q.escape == "Keep downloading"
    assert "deleted" in q.text
    assert m.is_running(REPO)
    answers.append("Cancel download")
    card.cancel_btn.click()
    qtbot.waitUntil(lambda: not folder.exists() and card.download_btn.isVisible(), timeout=10000)


def test_5_verify_on_an_imported_model_shows_its_result(panel_for, qtbot, tmp_path):
    m, panel = panel_for()
    mine = write_repo(tmp_path / "mine" / "my-oss", tiny_repo(seed=3))
    m.import_folder(mine)
    panel.refresh()
    def result() -> str:
        row = next(r for r in panel.local_rows if getattr(r, "model", None) is not None)
        label = getattr(row, "result_label", None)
        return label.text() if label is not None else ""

    row = next(r for r in panel.local_rows if getattr(r, "model", None) is not None)
    row.verify_btn.click()
    qtbot.waitUntil(lambda: "my-oss checked" in result(), timeout=10000)
    assert "no hub hashes" in result()                          # says what it could and could not check
    # A damaged imported model: the result says what is wrong.
    shard = mine / SHARDS[1]
    shard.write_bytes(shard.read_bytes()[:-100])
    row = next(r for r in panel.local_rows if getattr(r, "model", None) is not None)
    row.verify_btn.click()
    qtbot.waitUntil(lambda: SHARDS[1] in result(), timeout=10000)
    assert "truncated" in result() and SHARDS[1] in panel.notice.text()


def test_5_a_folder_copied_in_by_hand_appears_without_a_restart(panel_for, qtbot, tmp_path):
    m, panel = panel_for()
    assert "No models yet" in panel.local_rows[0].text()
    write_repo(tmp_path / "models" / "hand-copied", tiny_repo(seed=4))
    qtbot.waitUntil(lambda: any(getattr(r, "model", None) is not None and r.model.name == "hand-copied"
                                and r.model.state == ModelState.READY for r in panel.local_rows), timeout=5000)
    # And the Refresh button, for folders the watcher cannot see (network drives).
    shutil.copytree(tmp_path / "models" / "hand-copied", tmp_path / "models" / "second")
    panel.refresh_btn.click()
    assert {getattr(r, "model", None) and r.model.name for r in panel.local_rows} >= {"hand-copied", "second"}


def test_5_no_raw_errno_text_reaches_the_user(panel_for, dialogs, qtbot, make_manager, tmp_path, monkeypatch):
    asked, answers = dialogs
    # A disk error midway (not "full": an I/O error).
    real = downloader.write_chunk

    def failing(fh, data):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(downloader, "write_chunk", failing)
    status = make_manager().download_blocking(REPO)
    assert status.state == JobState.ERROR and "error" in status.message.lower()
    assert_plain(status.message)
    monkeypatch.setattr(downloader, "write_chunk", real)
    # The hub down: the message says so in words.
    m = make_manager(endpoint=unreachable_url(), auto_retry_s=None)
    status = m.download_blocking(REPO)
    assert status.state == JobState.ERROR and "Cannot reach the hub" in status.message
    assert_plain(status.message)
    # A delete that the system refuses, from the panel.
    m, panel = panel_for()
    assert m.download_blocking(REPO).state == JobState.DONE
    panel.refresh()
    folder = tmp_path / "models" / "gpt-oss-20b"

    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    answers.append("Delete")
    row = next(r for r in panel.local_rows if getattr(r, "model", None) is not None)
    row.delete_btn.click()
    qtbot.waitUntil(lambda: "Could not delete" in panel.notice.text(), timeout=10000)
    assert "permission" in panel.notice.text().lower()
    assert_plain(panel.notice.text())
    assert folder.exists()
