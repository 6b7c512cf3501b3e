"""Getting weights onto disk: cache locations, an atomic HTTP download, and the Hub.

Every download is written to a temporary file next to its destination and renamed only once it
is complete (and, when a checksum is known, verified), so an interrupted download never leaves a
file that looks finished. Network calls are bounded by ``IMGTRANS_DOWNLOAD_TIMEOUT`` seconds and
refused outright in offline mode (``HF_HUB_OFFLINE=1``), so they fail in seconds instead of hanging.

Environment variables are read at each call, not at import:

| variable | effect |
| --- | --- |
| ``HF_HOME`` | root of the caches (default ``~/.cache/huggingface``) |
| ``HF_HUB_CACHE`` | the Hub's file cache (default ``$HF_HOME/hub``) |
| ``HF_HUB_OFFLINE`` | ``1``: never use the network, only cached files |
| ``HF_ENDPOINT`` | the Hub's address (default ``https://huggingface.co``) |
| ``IMGTRANS_REFERENCE_URL`` | mirror of the reference checkpoints |
| ``IMGTRANS_DOWNLOAD_TIMEOUT`` | seconds without progress before a download gives up (default 10) |
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from tqdm.auto import tqdm


class DownloadError(OSError):
    """Weights could not be fetched: offline, unreachable, timed out, truncated or failing their checksum."""


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network access."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def timeout() -> float:
    """Seconds a connection may stay silent before a download is abandoned."""
    value = os.environ.get("IMGTRANS_DOWNLOAD_TIMEOUT", "10")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"IMGTRANS_DOWNLOAD_TIMEOUT must be a number of seconds, got {value!r}") from None


def hf_home() -> Path:
    """``$HF_HOME``, or ``$XDG_CACHE_HOME/huggingface``, or ``~/.cache/huggingface``."""
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "huggingface"


def cache_dir() -> Path:
    """Where converted zoo models are cached: ``$HF_HOME/imgtrans``, one folder per entry."""
    return hf_home() / "imgtrans"


def hub_cache_dir() -> Path:
    """The Hub's file cache: ``$HF_HUB_CACHE``, or ``$HF_HOME/hub``."""
    return Path(os.environ.get("HF_HUB_CACHE") or hf_home() / "hub").expanduser()


def hub_endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT`` or ``https://huggingface.co``."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, destination: str | os.PathLike, sha256: str | None = None) -> Path:
    """Download ``url`` to ``destination`` atomically, checking its length and, if given, its SHA-256.

    Raises:
        DownloadError: offline mode, unreachable host, HTTP error, timeout, a body shorter than
            its ``Content-Length``, or a checksum mismatch. Nothing is left at ``destination``.
    """
    destination = Path(destination)
    if offline():
        raise DownloadError(f"offline mode (HF_HUB_OFFLINE is set), so {url} was not downloaded")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        digest, received = hashlib.sha256(), 0
        with urllib.request.urlopen(url, timeout=timeout()) as response, open(partial, "wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            with tqdm(total=expected, unit="B", unit_scale=True, desc=destination.name, disable=None) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} was cut short: got {received} of {expected} bytes")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DownloadError(
                f"checksum mismatch for {url}: its SHA-256 is {digest.hexdigest()}, expected {sha256}; "
                "the file on the server (or a mirror) is not the published one"
            )
        os.replace(partial, destination)
    except http.client.IncompleteRead as error:
        raise DownloadError(f"download of {url} was cut short: {error}") from None
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DownloadError(f"cannot reach {url}: {error.reason}") from None
    except (socket.timeout, TimeoutError):
        raise DownloadError(f"{url} did not answer within {timeout():g} s (IMGTRANS_DOWNLOAD_TIMEOUT)") from None
    except (ConnectionError, http.client.HTTPException) as error:
        raise DownloadError(f"download of {url} failed: {type(error).__name__}: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination


def hub_download(repo_id: str, filename: str, revision: str | None = None, *, refresh: bool = False) -> Path:
    """A file of a Hub repository, through ``huggingface_hub.hf_hub_download`` and the Hub's cache.

    The cache, endpoint and offline mode are read from the environment at each call. A revision
    pinned to a commit is read from the cache without any request when it is there; a branch is
    checked against the Hub, falling back to the cached copy (with a warning) when the Hub cannot
    be reached. Before downloading, one quick request checks that the Hub answers, so that an
    unreachable host fails within ``IMGTRANS_DOWNLOAD_TIMEOUT`` rather than after
    ``huggingface_hub``'s minute of retries. ``refresh`` downloads again over a damaged copy.

    Raises:
        DownloadError: offline without a cached copy, unreachable Hub, missing repository or file.
    """
    where = f"{filename} of {repo_id}" + (f" at revision {revision}" if revision else "")
    options = dict(repo_id=repo_id, filename=filename, revision=revision, cache_dir=hub_cache_dir())
    pinned = revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision) is not None
    if (pinned or offline()) and not refresh and (cached := _hub_cached(options)):
        return cached
    if offline():
        raise DownloadError(
            f"offline mode (HF_HUB_OFFLINE is set) and {where} is not in the Hub cache {hub_cache_dir()}"
        )
    endpoint = hub_endpoint()
    url = huggingface_hub.hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=timeout())
        path = huggingface_hub.hf_hub_download(
            **options, endpoint=endpoint, etag_timeout=timeout(), force_download=refresh
        )
        return Path(path)
    except HfHubHTTPError as error:
        raise DownloadError(f"the Hub has no {where} ({str(error).splitlines()[0]})") from None
    except ValueError:  # an invalid repo id or revision: the caller's to fix, as huggingface_hub says it
        raise
    except Exception as error:  # huggingface_hub's transport errors (connection, timeout, short body)
        problem = f"cannot download {where} from {endpoint}: {type(error).__name__}: {error}"
    if not refresh and (cached := _hub_cached(options)):
        warnings.warn(f"{problem}; using the copy in the Hub cache", stacklevel=2)
        return cached
    raise DownloadError(problem)


def _hub_cached(options: dict) -> Path | None:
    """The Hub cache's copy of a file, without any network request; ``None`` if there is none."""
    try:
        return Path(huggingface_hub.hf_hub_download(**options, local_files_only=True))
    except EntryNotFoundError:  # not cached (LocalEntryNotFoundError) or cached as absent
        return None
