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
| ``IMGTRANS_REFERENCE_URL`` | mirror of the reference implementation's checkpoints (read at each call) |
| ``IMGTRANS_DATASETS_URL`` | mirror of the pix2pix datasets: a base address under which ``NAME.tar.gz`` is fetched (read at each call) |

Every download goes to ``.NAME.part-PID`` beside its destination and is renamed only once complete
and, when a checksum is known, verified; an interrupted one leaves no file that looks finished, and
the partial files of dead processes are removed by the next download into the same folder. A host
that cannot be reached fails within the timeout, and offline mode fails at once, each with a
message that says where to put the file instead.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from tqdm.auto import tqdm

from imgtrans.io import remove_stale_temporaries, temporary_path

REFERENCE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
"""Where the reference implementation publishes its pix2pix checkpoints; ``IMGTRANS_REFERENCE_URL`` overrides it."""


DATASETS_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
"""Where the reference implementation downloads its pix2pix datasets; ``IMGTRANS_DATASETS_URL`` overrides it."""


class DownloadError(OSError):
    """A file could not be fetched: offline, unreachable, timed out, truncated or failing its checksum."""


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


def datasets_url(name: str) -> str:
    """The address of a pix2pix dataset archive, on ``IMGTRANS_DATASETS_URL`` when it is set."""
    base = os.environ.get("IMGTRANS_DATASETS_URL") or DATASETS_URL
    return f"{base.rstrip('/')}/{name}.tar.gz"


def reference_url(filename: str) -> str:
    """The address of a reference checkpoint, on ``IMGTRANS_REFERENCE_URL`` when it is set."""
    base = os.environ.get("IMGTRANS_REFERENCE_URL") or REFERENCE_URL
    return f"{base.rstrip('/')}/{filename}"


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
    remove_stale_temporaries(destination.parent)
    partial = temporary_path(destination, "part")
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
        raise DownloadError(f"{url} did not answer within {timeout():g} s (HF_HUB_DOWNLOAD_TIMEOUT)") from None
    except (ConnectionError, http.client.HTTPException) as error:
        raise DownloadError(f"download of {url} failed: {type(error).__name__}: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination


def download_resumable(url: str, destination: Path, tries: int = 3) -> Path:
    """Download ``url`` to ``destination`` through ``destination.part``, resuming with HTTP ``Range``.

    A partial file left by an earlier call or a dropped connection is continued from its end when
    the server honours ``Range`` (``206``), and restarted when it does not (``200``). The file is
    renamed to ``destination`` only once it has the length the server announced.
    """
    if offline():
        raise DownloadError(f"offline mode (HF_HUB_OFFLINE is set), so {url} was not downloaded")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    problem = ""
    for _ in range(tries):
        try:
            if _fetch_once(url, partial):
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
        except (ConnectionError, http.client.HTTPException) as error:
            problem = f"{type(error).__name__}: {error}"
    raise DownloadError(
        f"download of {url} stopped after {tries} tries ({problem}); {_size(partial)} bytes are kept "
        f"in {partial}: run the same command again to resume"
    )


def _size(path: Path) -> int:
    """The size of ``path`` in bytes, 0 when it does not exist."""
    return path.stat().st_size if path.exists() else 0


def _fetch_once(url: str, partial: Path) -> bool:
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
        length = response.headers.get("Content-Length")
        if response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            total = response.headers["Content-Range"].rpartition("/")[2]
            expected = int(total) if total.isdigit() else None
            mode = "ab"
        else:  # the server sent the whole file: start over
            have, mode = 0, "wb"
            expected = int(length) if length is not None and length.isdigit() else None
        name = partial.name.removesuffix(".part")
        with open(partial, mode) as out, tqdm(
            total=expected, initial=have, unit="B", unit_scale=True, desc=name, disable=None
        ) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    size = partial.stat().st_size
    if expected is None:
        return True  # no length announced: the archive check that follows is the judge
    if size > expected:
        partial.unlink()
        raise DownloadError(f"{url} sent {size} bytes, more than the {expected} it announced")
    return size == expected


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
