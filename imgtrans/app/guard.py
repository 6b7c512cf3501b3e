"""Who may drive the page: the ``Host`` check against DNS rebinding and the ``Origin`` check against other sites.

A server on ``127.0.0.1`` is reachable by every page the user's browser opens. Two attacks follow,
and local servers such as Jupyter defend against both the same way:

- **DNS rebinding.** A site first resolves its own name to its server, then to ``127.0.0.1``: its
  script then talks to this server *as the same origin*, reading the answers. The browser still
  sends the site's name in ``Host``, so a server that answers only requests whose ``Host`` names
  the address it serves (``127.0.0.1:7860``, ``localhost:7860``, ``[::1]:7860``, or the ``--host``
  given) is out of its reach.
- **Cross-site requests.** Any page may ``POST`` to ``http://127.0.0.1:7860/`` (it cannot read the
  answer, but the work is done). Browsers name the page that sent a request in ``Origin`` (or
  ``Referer``), so a ``POST`` whose origin is not this server's is refused. A request with neither
  header does not come from a web page (``curl``, scripts) and is answered.

A server bound to every interface (``0.0.0.0``, ``::``) is meant to be reached under names it
cannot know (a Space behind its proxy), so it answers any ``Host``, unless names are given
(``--allow-host``); the ``Origin`` check holds there too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
"""The names of this machine that a page served on the loopback address is reached by."""

WILDCARDS = ("0.0.0.0", "::", "")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` (``name``, ``name:port``, ``[v6]:port``) as ``(name, port)``; ``None`` when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket:
            return None
    elif value.count(":") > 1:  # an IPv6 address without brackets is no valid Host
        return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    if not name or any(c in name for c in "/@?#\\ "):
        return None
    return name, int(rest[1:]) if rest else None


class Guard:
    """The ``Host`` and ``Origin`` rules of a server listening on ``host:port``.

    Args:
        host: the address listened on, as ``--host`` gave it.
        port: the port served.
        extra_hosts: more names to answer to, on any port (``--allow-host``: a proxy's name).
    """

    def __init__(self, host: str, port: int, extra_hosts: tuple[str, ...] = ()) -> None:
        self.port = port
        self.extra = {name.strip("[]").lower() for name in extra_hosts}
        wildcard = host.strip("[]") in WILDCARDS
        self.names = None if wildcard and not self.extra else {*LOCAL_NAMES, host.strip("[]").lower()}

    def host_problem(self, host: str | None) -> str | None:
        """Why a request with this ``Host`` header is refused; ``None`` when it is answered."""
        if self.names is None:
            return None
        parsed = split_host(host or "")
        if parsed is not None:
            name, port = parsed
            if name in self.extra or (name in self.names and (port or 80) == self.port):
                return None
        asked = f"Host {host!r}" if host else "a request without a Host"
        return (
            f"this server answers only requests for {self.served()}, not {asked} (a guard against DNS "
            "rebinding); to reach it under another name, start it with --allow-host NAME"
        )

    def origin_problem(self, host: str | None, origin: str | None, referer: str | None) -> str | None:
        """Why a ``POST`` sent from the page at ``origin`` (else ``referer``) is refused; ``None`` when answered."""
        source = origin if origin is not None else referer
        if source is None:
            return None  # not sent by a browser's page (curl, a script)
        parts = urlsplit(source.strip())
        if parts.scheme in ("http", "https") and host and parts.netloc.lower() == host.strip().lower():
            return None
        header = "Origin" if origin is not None else "Referer"
        return f"requests from other sites are refused ({header} {source!r}); open the page at {self.served()} itself"

    def served(self) -> str:
        """The addresses this server answers, for messages."""
        shown = [f"[{n}]:{self.port}" if ":" in n else f"{n}:{self.port}" for n in sorted(self.names or ())]
        return ", ".join(shown + sorted(self.extra)) or "any address"
