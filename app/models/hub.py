"""The hub client: huggingface_hub's own, for everything but the bytes of the weights.

- the file list with sizes and hashes: `HfApi.model_info(files_metadata=True)`;
- one file's current metadata (etag, size, commit) before a partial file is appended to:
  `get_hf_file_metadata` (a HEAD request that reads X-Linked-Etag / X-Linked-Size on the redirect);
- the auth and user-agent headers: `huggingface_hub.utils.build_hf_headers` (the token given, else
  HF_TOKEN or the stored login);
- file URLs: `hf_hub_url` (endpoint from the argument or HF_ENDPOINT).

Every name is imported where it is used, from the module that defines it, so nothing depends on
what another part of the program imported before (a resumed download after a restart used to find
`huggingface_hub.utils` missing and went on without the token). The imports are inside the
functions so that the offline switch (`network.set_offline`) is set before huggingface_hub reads
its environment. Lantern's own code is only the ranged download that resumes across restarts
(`downloader.py`), which huggingface_hub does not do.

Every failure comes out as a typed `ModelManagerError` whose text a user can read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.models import network
from app.models.catalog import RemoteFile, RemoteModel, is_wanted
from app.models.error_text import network_error_text
from app.models.errors import (AccessNeededError, HubUnreachableError, ModelManagerError, NetworkError,
                               NotFoundError, OfflineError)

log = logging.getLogger(__name__)

OFFLINE_MESSAGE = "Lantern is in offline mode: turn it off in Settings to download models."


def app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lantern")
    except PackageNotFoundError:
        return "dev"


@dataclass(frozen=True, slots=True)
class FileMetadata:
    """What the hub says about one file now: etag (sha256 for LFS files, git blob sha1 for others)."""

    etag: str | None
    size: int | None
    commit: str | None

    def matches(self, remote: RemoteFile) -> bool:
        """Is this the file `remote` describes? (Unknown fields do not count against it.)"""
        if self.size is not None and self.size != remote.size:
            return False
        if self.etag:
            return self.etag.lower() in {h.lower() for h in (remote.sha256, remote.blob_id) if h}
        return True


def _require_online() -> None:
    if network.is_offline():
        raise OfflineError(OFFLINE_MESSAGE)


def hub_headers(token: str | bool | None = None) -> dict[str, str]:
    """The headers huggingface_hub sends: user-agent and, if there is a token, authorization."""
    _require_online()
    network.hub()
    from huggingface_hub.utils import build_hf_headers

    return dict(build_hf_headers(token=token, library_name="lantern", library_version=app_version()))


def file_url(repo_id: str, revision: str, filename: str, *, endpoint: str | None = None) -> str:
    """The hub's resolve URL of one file at one commit."""
    network.hub()
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint or network.default_endpoint())


def file_metadata(url: str, *, token: str | bool | None = None, timeout: float = 10.0,
                  what: str = "the file") -> FileMetadata:
    """HEAD the file's URL: its etag, size and commit as the hub serves them now."""
    _require_online()
    network.hub()
    from huggingface_hub import get_hf_file_metadata

    try:
        meta = get_hf_file_metadata(url, token=token, timeout=timeout, library_name="lantern",
                                    library_version=app_version())
    except Exception as exc:  # noqa: BLE001 - every failure becomes a typed, user-facing error
        raise translate_hub_error(exc, what, endpoint=url) from exc
    return FileMetadata(meta.etag, meta.size, meta.commit_hash)


def fetch_remote_model(repo_id: str, *, endpoint: str | None = None, token: str | bool | None = None,
                       timeout: float = 30.0) -> RemoteModel:
    """Ask the hub which files the engine needs at the repo's current commit, with sizes and hashes."""
    _require_online()
    hf = network.hub()
    endpoint = endpoint or network.default_endpoint()
    try:
        api = hf.HfApi(endpoint=endpoint, token=token)
        info = api.model_info(repo_id, files_metadata=True, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a typed, user-facing error
        raise translate_hub_error(exc, repo_id, endpoint=endpoint) from exc
    files = []
    for sib in info.siblings or []:
        if not is_wanted(sib.rfilename):
            continue
        lfs = sib.lfs
        size = lfs.size if lfs is not None else sib.size
        if size is None:
            raise NetworkError(f"The hub did not give the size of {sib.rfilename}; try again later.")
        files.append(RemoteFile(sib.rfilename, int(size), lfs.sha256 if lfs is not None else None, sib.blob_id))
    if not any(f.name == "config.json" for f in files) or not any(f.name.endswith(".safetensors") for f in files):
        raise NotFoundError(f"{repo_id} holds no Hugging Face layout weights (config.json + *.safetensors).")
    if not info.sha:
        raise NetworkError("The hub did not say which revision to download; try again later.")
    return RemoteModel(repo_id, info.sha, tuple(sorted(files, key=lambda f: f.name)))


def _host(endpoint: str | None) -> str:
    if not endpoint:
        return "the hub"
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else endpoint


def translate_hub_error(exc: BaseException, what: str, *, endpoint: str | None = None) -> ModelManagerError:
    """Turn a huggingface_hub / network exception into a message a user can act on."""
    if isinstance(exc, ModelManagerError):
        return exc
    name = type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if name == "OfflineModeIsEnabled":
        return OfflineError(OFFLINE_MESSAGE)
    if name == "GatedRepoError" or status in (401, 403):
        return AccessNeededError(
            f"{what} needs access: log in with a Hugging Face token that has accepted the model's terms "
            "(set HF_TOKEN, or run `hf auth login`).")
    if name == "RevisionNotFoundError":
        return NotFoundError(f"The revision of {what} that was asked for no longer exists on the hub.")
    if name in ("RepositoryNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError") or status == 404:
        return NotFoundError(f"{what} was not found on the hub.")
    if status is not None:
        return NetworkError(f"The hub answered with an error ({status}) for {what}.")
    log.info("hub request for %s failed: %r", what, exc)
    if isinstance(exc, OSError) or type(exc).__module__.split(".")[0].startswith(("httpx", "httpcore", "urllib3")):
        return HubUnreachableError(f"Cannot reach the hub ({_host(endpoint)}): {network_error_text(exc)}.")
    return NetworkError(f"The hub's answer about {what} could not be read.")
