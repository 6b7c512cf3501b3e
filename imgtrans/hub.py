"""All of imgtrans's network policy: offline mode, endpoints, timeouts, caches, and every download.

No other module opens a connection. The settings are huggingface_hub's own wherever it has one,
so one environment configures both (huggingface_hub reads them when it is imported):

| variable | effect |
| --- | --- |
| ``HF_HOME`` | root of the caches (default ``~/.cache/huggingface``); imgtrans keeps its own under ``$HF_HOME/imgtrans`` |
| ``HF_HUB_CACHE`` | the Hub's file cache (default ``$HF_HOME/hub``) |
| ``HF_HUB_OFFLINE`` | ``1``: never use the network, only cached files |
| ``HF_ENDPOINT`` | the Hub's address (default ``https://huggingface.co``) |
| ``HF_HUB_DOWNLOAD_TIMEOUT`` | seconds a connection may stay silent before a download gives up (default 10) |
The addresses of what is downloaded belong with the catalogues that describe it (the datasets'
in [downloads][imgtrans.data.downloads], the published models' in [zoo][imgtrans.store.zoo]);
this module only transfers, and keeps the two rules every transfer follows:

- **bounded**: a caller gives the most bytes it expects (``max_bytes``, from its catalogue); a body
  announced (``Content-Length``) or sent beyond that, or beyond what it announced, is cut off
  with one line, and nothing stays;
- **trust on first use**: a file with no published checksum has its SHA-256 recorded at its first
  download in ``$HF_HOME/imgtrans/checksums.json``
  ([check_first_seen][imgtrans.hub.check_first_seen]); a later download (a mirror, a fresh copy)
  that differs is refused.

Every download goes to ``.NAME.part-PID`` beside its destination and is renamed only once complete
and, when a checksum is known, verified; an interrupted one leaves no file that looks finished, and
the partial files of dead processes are removed by the next download into the same folder. A host
that cannot be reached fails within the timeout, and offline mode fails at once, each with a
message that says where to put the file instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from tqdm.auto import tqdm

from imgtrans.io import atomic_write, remove_stale_temporaries, temporary_path

T, R = TypeVar("T"), TypeVar("R")

class DownloadError(OSError):
    """A file could not be fetched: offline, unreachable, timed out, truncated, too long, or failing its checksum."""


class ChangedDownloadError(DownloadError):
    """A file differs from the one first downloaded under the same name (its recorded SHA-256)."""


def _too_long(url: str, size: int, limit: int, announced: bool) -> DownloadError:
    verb = "announces" if announced else "sent more than"
    return DownloadError(
        f"{url} {verb} {size:,} bytes, more than the {limit:,} expected of it; the download was stopped and "
        "nothing was kept: check the address (or the mirror in use)"
    )


def offline() -> bool:
    """Whether huggingface_hub's offline mode (``HF_HUB_OFFLINE``) forbids the network."""
    return bool(constants.HF_HUB_OFFLINE)


def timeout() -> float:
    """Seconds a connection may stay silent (``HF_HUB_DOWNLOAD_TIMEOUT``)."""
    return float(constants.HF_HUB_DOWNLOAD_TIMEOUT)


def endpoint() -> str:
    """The Hub's address (``HF_ENDPOINT``)."""
    return constants.ENDPOINT.rstrip("/")


def hub_cache_dir() -> Path:
    """The Hub's file cache (``HF_HUB_CACHE``)."""
    return Path(constants.HF_HUB_CACHE).expanduser()


def cache_dir() -> Path:
    """imgtrans's own cache: ``$HF_HOME/imgtrans`` (converted zoo models, one folder each)."""
    return Path(constants.HF_HOME).expanduser() / "imgtrans"


def download(
    url: str, destination: str | os.PathLike, sha256: str | None = None, *, max_bytes: int | None = None
) -> Path:
    """Download ``url`` to ``destination`` atomically, checking its length and, if given, its SHA-256.

    Args:
        max_bytes: the most the file may hold; a longer one (announced or sent) is stopped.

    Raises:
        DownloadError: offline mode, unreachable host, HTTP error, timeout, a body shorter than
            its ``Content-Length`` or longer than it or ``max_bytes``, or a checksum mismatch.
            Nothing is left at ``destination``.
    """
    destination = Path(destination)
    if offline():
        raise DownloadError(f"offline mode (HF_HUB_OFFLINE is set), so {url} was not downloaded")
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(destination.parent)
    partial = temporary_path(destination, "part")
    try:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout()) as response, open(partial, "wb") as out:
            expected = _announced(response, url, max_bytes)
            _copy(response, out, url, min(x for x in (expected, max_bytes, float("inf")) if x is not None),
                  destination.name, expected, 0, digest)  # fmt: skip
        received = partial.stat().st_size
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
        raise DownloadError(f"{url} did not answer within {timeout():g} s (HF_HUB_DOWNLOAD_TIMEOUT)") from None
    except (ConnectionError, http.client.HTTPException) as error:
        raise DownloadError(f"download of {url} failed: {type(error).__name__}: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _announced(response, url: str, max_bytes: int | None, have: int = 0) -> int | None:
    """The body's announced length (``Content-Length``); one beyond ``max_bytes`` (with ``have``) is refused."""
    length = response.headers.get("Content-Length")
    expected = int(length) if length is not None and length.isdigit() else None
    if expected is not None and max_bytes is not None and have + expected > max_bytes:
        raise _too_long(url, have + expected, max_bytes, announced=True)
    return expected


def _copy(response, out, url: str, limit: float, name: str, total: int | None, have: int, digest=None) -> None:
    """Copy the body to ``out`` until it ends, refusing more than ``limit`` bytes in all (``have`` already there)."""
    with tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=name, disable=None) as bar:
        size = have
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise _too_long(url, size, int(limit), announced=False)
            out.write(chunk)
            if digest is not None:
                digest.update(chunk)
            bar.update(len(chunk))


def download_resumable(url: str, destination: Path, tries: int = 3, *, max_bytes: int | None = None) -> Path:
    """Download ``url`` to ``destination`` through ``destination.part``, resuming with HTTP ``Range``.

    A partial file left by an earlier call or a dropped connection is continued from its end when
    the server honours ``Range`` (``206``), and restarted when it does not (``200``). The file is
    renamed to ``destination`` only once it has the length the server announced. A file longer
    than announced or than ``max_bytes`` is stopped and its part removed.
    """
    if offline():
        raise DownloadError(f"offline mode (HF_HUB_OFFLINE is set), so {url} was not downloaded")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    problem = ""
    for _ in range(tries):
        try:
            if _fetch_once(url, partial, max_bytes):
                os.replace(partial, destination)
                return destination
            problem = f"the connection closed at {_size(partial)} bytes"
        except http.client.IncompleteRead:
            problem = f"the connection closed at {_size(partial)} bytes"
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise DownloadError(f"cannot reach {url}: {error.reason}") from None
        except (socket.timeout, TimeoutError):
            problem = f"no data for {timeout():g} s (HF_HUB_DOWNLOAD_TIMEOUT)"
        except DownloadError:
            partial.unlink(missing_ok=True)
            raise
        except (ConnectionError, http.client.HTTPException) as error:
            problem = f"{type(error).__name__}: {error}"
    raise DownloadError(
        f"download of {url} stopped after {tries} tries ({problem}); {_size(partial)} bytes are kept "
        f"in {partial}: run the same command again to resume"
    )


def _size(path: Path) -> int:
    """The size of ``path`` in bytes, 0 when it does not exist."""
    return path.stat().st_size if path.exists() else 0


def _fetch_once(url: str, partial: Path, max_bytes: int | None = None) -> bool:
    """One request, appending to ``partial``; ``True`` when the file is complete."""
    have = _size(partial)
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout())
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: nothing after byte `have`; the part is complete or larger than the file
            raise
        total = error.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit() and int(total) == have:
            return True
        partial.unlink()
        return False
    with response:
        if response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            total = response.headers["Content-Range"].rpartition("/")[2]
            expected = int(total) if total.isdigit() else None
            if expected is not None and max_bytes is not None and expected > max_bytes:
                raise _too_long(url, expected, max_bytes, announced=True)
            _announced(response, url, max_bytes, have)
            mode = "ab"
        else:  # the server sent the whole file: start over
            have, mode = 0, "wb"
            expected = _announced(response, url, max_bytes)
        limit = min(x for x in (expected, max_bytes, float("inf")) if x is not None)
        with open(partial, mode) as out:
            _copy(response, out, url, limit, partial.name.removesuffix(".part"), expected, have)
    size = partial.stat().st_size
    if expected is None:
        return True  # no length announced: the archive check that follows is the judge
    return size == expected


def retry_corrupt(fetch: Callable[[bool], T], use: Callable[[T], R], corrupt, note: Callable[[Exception], None]) -> R:
    """``use(fetch(False))``; if ``use`` finds the copy corrupt (raises ``corrupt``), ``note`` it and use a fresh one.

    The one retry-on-corrupt rule of every download: a damaged copy (cached, or cut short in a way
    its length did not show) is fetched once more with ``fetch(True)``; a second damaged copy is
    the caller's error to report (the exception of the second ``use`` propagates).
    """
    got = fetch(False)
    try:
        return use(got)
    except corrupt as problem:
        note(problem)
    return use(fetch(True))


def checksums_file() -> Path:
    """Where the SHA-256 of each file first downloaded without a published checksum is recorded."""
    return cache_dir() / "checksums.json"


def check_first_seen(key: str, path: Path, source: str, what_to_do: str) -> str:
    """Trust on first use: record the SHA-256 of ``path`` under ``key`` the first time, compare it after.

    Args:
        key: what the file is, whatever its address (``"datasets/facades.tar.gz"``).
        path: the downloaded file.
        source: where it came from, recorded beside the checksum and named in messages.
        what_to_do: the end of the refusal's sentence: how to accept the new file if it is trusted.

    Returns:
        The file's SHA-256.

    Raises:
        ChangedDownloadError: ``key`` was recorded with another SHA-256.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    sha256, record = digest.hexdigest(), checksums_file()
    record.parent.mkdir(parents=True, exist_ok=True)
    with open(record.with_name(".checksums.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = json.loads(record.read_text()) if record.is_file() else {}
        first = known.get(key)
        if first is None:
            known[key] = {"sha256": sha256, "bytes": path.stat().st_size, "source": source,
                          "first_downloaded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
            atomic_write(record, json.dumps(known, indent=2, sort_keys=True) + "\n")
        elif first["sha256"] != sha256:
            raise ChangedDownloadError(
                f"{key} from {source} is not the file first downloaded on {first['first_downloaded']} from "
                f"{first['source']} (SHA-256 {sha256[:16]}..., recorded {first['sha256'][:16]}... in {record}); "
                f"it was not used. {what_to_do}"
            )
    return sha256


def hub_download(repo_id: str, filename: str, revision: str | None = None, *, refresh: bool = False) -> Path:
    """A file of a Hub repository, through ``huggingface_hub.hf_hub_download`` and the Hub's cache.

    A revision pinned to a commit is read from the cache without any request when it is there; a
    branch is checked against the Hub, falling back to the cached copy (with a warning) when the
    Hub cannot be reached. Before downloading, one quick request checks that the Hub answers, so
    an unreachable host fails within the timeout rather than after huggingface_hub's minute of
    retries. ``refresh`` downloads again over a damaged copy.

    Raises:
        DownloadError: offline without a cached copy, unreachable Hub, missing repository or file.
    """
    where = f"{filename} of {repo_id}" + (f" at revision {revision}" if revision else "")
    options = dict(repo_id=repo_id, filename=filename, revision=revision, cache_dir=hub_cache_dir())
    pinned = revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision) is not None
    if (pinned or offline()) and not refresh and (cached := hub_cached(**options)):
        return cached
    if offline():
        raise DownloadError(f"offline mode (HF_HUB_OFFLINE is set) and {where} is not in the Hub cache {hub_cache_dir()}")
    url = huggingface_hub.hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint())
    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=timeout())
        path = huggingface_hub.hf_hub_download(
            **options, endpoint=endpoint(), etag_timeout=timeout(), force_download=refresh
        )
        return Path(path)
    except HfHubHTTPError as error:
        raise DownloadError(f"the Hub has no {where} ({str(error).splitlines()[0]})") from None
    except ValueError:  # an invalid repo id or revision: the caller's to fix, as huggingface_hub says it
        raise
    except Exception as error:  # huggingface_hub's transport errors (connection, timeout, short body)
        problem = f"cannot download {where} from {endpoint()}: {type(error).__name__}: {error}"
    if not refresh and (cached := hub_cached(**options)):
        warnings.warn(f"{problem}; using the copy in the Hub cache", stacklevel=2)
        return cached
    raise DownloadError(problem)


def upload_folder(folder: str | os.PathLike, repo_id: str, *, private: bool | None, token: str | None, commit_message: str):
    """Create the Hub repository ``repo_id`` if needed and upload ``folder`` to it in one commit."""
    if offline():
        raise ConnectionError(f"offline mode (HF_HUB_OFFLINE is set): cannot push to {repo_id}")
    api = huggingface_hub.HfApi(endpoint=endpoint(), token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)


def hub_cached(repo_id: str, filename: str, revision: str | None = None, cache_dir: Path | None = None) -> Path | None:
    """The Hub cache's copy of a file, without any network request; ``None`` if there is none."""
    try:
        return Path(
            huggingface_hub.hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache_dir or hub_cache_dir(), local_files_only=True
            )
        )
    except EntryNotFoundError:  # not cached (LocalEntryNotFoundError) or cached as absent
        return None


def timm_weights(name: str, argument_names: tuple[str, str] = ("pretrained", "weights_file")) -> Path:
    """The pretrained weights file of timm's model ``name``: from the Hub cache, else downloaded once.

    timm's own downloading is never used, so that its offline behaviour is this module's: the
    file its pretrained configuration names (``hf_hub_id``; else its ``url``) is fetched here and
    handed to timm as a local file.

    Args:
        name: a timm name, optionally with a pretrained tag (``"resnet34.a1_in1k"``), or ``hf-hub:ORG/NAME``.
        argument_names: what the caller calls ``pretrained`` and ``weights_file``, for messages.

    Raises:
        ConnectionError: offline or unreachable; the message says how to give a local file.
        ValueError: timm publishes no weights for ``name``.
    """
    from timm.models import get_pretrained_cfg

    if name.startswith("hf-hub:"):
        repo, filenames, url = name.removeprefix("hf-hub:"), ["model.safetensors", "pytorch_model.bin"], None
    else:
        cfg = get_pretrained_cfg(name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url):
            raise ValueError(f"timm publishes no pretrained weights for {name!r}; use {argument_names[0]}=False")
        repo, url = cfg.hf_hub_id, cfg.url
        filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    try:
        if repo:
            repo_id, _, revision = repo.partition("@")
            for filename in filenames:
                if cached := hub_cached(repo_id, filename, revision or None):
                    return cached
            problems = []
            for filename in filenames:
                try:
                    return hub_download(repo_id, filename, revision or None)
                except DownloadError as error:
                    problems.append(str(error))
                    if "the Hub has no" not in str(error):
                        break
            raise DownloadError(problems[-1])
        destination = cache_dir() / "timm" / url.rsplit("/", 1)[-1]
        return destination if destination.is_file() else download(url, destination)
    except DownloadError as error:
        pretrained, weights_file = argument_names
        raise ConnectionError(
            f"cannot get the pretrained weights of timm's {name!r} ({repo or url}): {error}. Without network, "
            f"give a local copy of the weights with {weights_file}='PATH' (for example model.safetensors fetched "
            f"elsewhere with `hf download {repo} model.safetensors`, or any state dict of "
            f"timm.create_model({name.split('.')[0]!r})), or use {pretrained}=False for random weights."
        ) from None
