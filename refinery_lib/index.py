"""PEP 503/691 simple-API client and a download cache that never fetches a file twice."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import netrc
import os
import re
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import tenacity
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .archives import METADATA_MAX_BYTES, read_capped
from .errors import ArchiveError, IndexAccessError, IndexUnreachableError, UnsafeNameError
from .files import atomic_write_text, file_mode
from .models import DistFile

log = logging.getLogger(__name__)

_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.2"
#: a link or a redirect keeps its page's family: web pages lead to web files, and only a
#: folder index (file://) to local files. An index page is a stranger's text: without this a
#: https page could make the refinery build a local file, or a redirect leave for ftp://.
_FAMILIES = {"http": "web", "https": "web", "file": "file"}


def scheme_family(url: str) -> str | None:
    """"web" for http(s), "file" for file:, None for anything else."""
    return _FAMILIES.get(urllib.parse.urlsplit(url).scheme.lower())


def same_family(base: str, url: str) -> bool:
    family = scheme_family(base)
    return family is not None and scheme_family(url) == family


class _KeepFamilyRedirect(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within its request's scheme family (http <-> https), and
    sends the index's credentials on only to the same host (urllib would send them on)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not same_family(req.full_url, newurl):
            raise urllib.error.HTTPError(
                newurl, code, f"refusing a redirect from {req.full_url} to another scheme: "
                f"{newurl}", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and (urllib.parse.urlsplit(newurl).hostname
                                != urllib.parse.urlsplit(req.full_url).hostname):
            new.remove_header("Authorization")
        return new
#: where the sha256 of each downloaded file is kept, inside the downloads folder (pip's
#: find-links reads only distribution file names there)
SHA_FOLDER = ".sha256"
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")
_TIMEOUT = 60
#: a request that met a refused connection, a timeout or a 429/5xx is tried this many times,
#: waiting about 0.5, 1, 2 s (with jitter) in between, before the index counts as unreachable
RETRY_ATTEMPTS = 4
RETRY_WAIT_INITIAL = 0.5
RETRY_WAIT_MAX = 8.0


def _transient(exc: BaseException) -> bool:
    """Worth asking again: the index did not answer, or answered "not now"."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError))


def _with_retries(fn: Callable[[], Any]) -> Any:
    """`fn()`, retried with exponential backoff and jitter on transient errors (tenacity)."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_transient),
        stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=RETRY_WAIT_INITIAL, max=RETRY_WAIT_MAX)
        + tenacity.wait_random(0, RETRY_WAIT_INITIAL),
        before_sleep=_log_retry,
        reraise=True,
    )(fn)


def _log_retry(state: tenacity.RetryCallState) -> None:
    """Before a retry's wait: the failure (tenacity calls this with the attempt's outcome)."""
    failure = state.outcome.exception() if state.outcome is not None else None
    log.warning("index request failed (%s); try %d of %d", failure,
                state.attempt_number + 1, RETRY_ATTEMPTS)


def safe_filename(name: str) -> str:
    """A file name from an index, refused if it could leave its folder."""
    if not _SAFE_FILENAME.match(name) or name in (".", "..") or "/" in name:
        raise UnsafeNameError(f"refusing unsafe file name {name!r}")
    return name


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append({k: (v if v is not None else "") for k, v in attrs})


@dataclass(frozen=True)
class Release:
    """One file of a project with its parsed version and kind."""

    version: Version
    kind: str  # "wheel" or "sdist"
    file: DistFile
    tags: tuple[str, ...] = ()


@dataclass
class SimpleIndex:
    """Reads project pages from an index URL plus extra index URLs (first hit of a file wins)."""

    url: str = "https://pypi.org/simple"
    extra_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    _pages: dict[str, list[DistFile]] = field(default_factory=dict, repr=False)
    #: per project: links refused and pages that could not be read, for the plan's reasons
    _problems: dict[str, list[str]] = field(default_factory=dict, repr=False)
    #: every index-unreachable error met: a plan that met one is made again next run
    unreachable: list[str] = field(default_factory=list, repr=False)

    def unreachable_for(self, name: str) -> str:
        """The index-unreachable error of `name`'s pages, or ''."""
        return next((p for p in self.problems(name) if p.startswith("index-unreachable")), "")

    def problems(self, name: str) -> list[str]:
        """What went wrong reading `name`'s pages: a project planned missing says why."""
        return list(self._problems.get(canonicalize_name(name), ()))

    def _context(self, url: str) -> ssl.SSLContext | None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https":
            return None
        host = parsed.hostname or ""
        if host in self.trusted_hosts or parsed.netloc in self.trusted_hosts:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
        return ssl.create_default_context(
            cafile=cafile if cafile and Path(cafile).exists() else None
        )

    def _auth(self) -> dict[str, dict[str, str]]:
        """host:port -> the Authorization header of the configured index there: from the
        index URL's user info, else from ~/.netrc (or $NETRC), as pip takes them."""
        out: dict[str, dict[str, str]] = {}
        for base in (self.url, *self.extra_urls):
            bare, headers = _credentials_apart(base)
            parts = urllib.parse.urlsplit(bare)
            if not headers and parts.scheme in ("http", "https") and parts.hostname:
                headers = _netrc_header(parts.hostname)
            if headers:
                out.setdefault(parts.netloc.lower(), headers)
        return out

    def _open(self, url: str, accept: str | None = None):
        family = scheme_family(url)
        if family is None:
            raise IndexAccessError(f"unsupported URL scheme in {url!r}")
        if family not in {scheme_family(u) for u in (self.url, *self.extra_urls)}:
            raise IndexAccessError(f"refusing {url}: no configured index is a {family} index")
        url, headers = _credentials_apart(url)
        if not headers:  # a file of the index: the index's credentials, on its host only
            headers = dict(self._auth().get(urllib.parse.urlsplit(url).netloc.lower(), {}))
        if accept:
            headers["Accept"] = accept
        req = urllib.request.Request(url, headers=headers)
        handlers: list[urllib.request.BaseHandler] = [_KeepFamilyRedirect()]
        if family == "web":
            handlers.append(urllib.request.HTTPSHandler(context=self._context(url)))
        opener = urllib.request.build_opener(*handlers)
        try:
            if family == "file":  # a folder answers at once or never
                return opener.open(req, timeout=_TIMEOUT)
            return _with_retries(lambda: opener.open(req, timeout=_TIMEOUT))
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 302, 303, 307, 308):  # a redirect refused above
                raise IndexAccessError(str(exc.reason)) from exc
            if _transient(exc):
                raise IndexUnreachableError(
                    f"index-unreachable: {url} answered HTTP {exc.code} "
                    f"{RETRY_ATTEMPTS} times") from exc
            raise
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if family == "file":
                raise IndexAccessError(f"cannot read {url}: {reason}") from exc
            raise IndexUnreachableError(
                f"index-unreachable: cannot reach {url} ({reason}; {RETRY_ATTEMPTS} tries)"
            ) from exc

    def project_files(self, name: str) -> list[DistFile]:
        """Every file of project `name` across the configured indexes (cached per instance)."""
        norm = canonicalize_name(name)
        if norm in self._pages:
            return self._pages[norm]
        seen: dict[str, DistFile] = {}
        errors: list[str] = []
        refused: list[str] = []
        unreachable: list[str] = []
        found_any = False
        for base in (self.url, *self.extra_urls):
            page = base.rstrip("/") + f"/{urllib.parse.quote(norm)}/"
            if page.startswith("file:"):
                local = Path(urllib.request.url2pathname(urllib.parse.urlsplit(page).path))
                if (local / "index.html").exists():
                    page += "index.html"
            try:
                files = self._read_page(page, refused)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    continue
                errors.append(f"{page}: HTTP {exc.code}")
                continue
            except IndexAccessError as exc:
                if page.startswith("file:") and "No such file" in str(exc):
                    continue
                errors.append(str(exc))
                if isinstance(exc, IndexUnreachableError):
                    unreachable.append(str(exc))
                continue
            found_any = True
            for f in files:
                seen.setdefault(f.filename, f)
        self._problems[norm] = errors + [f"ignored a link to another scheme: {u}"
                                         for u in refused]
        if unreachable:
            self.unreachable.extend(unreachable)
        if errors and not found_any:
            error = IndexUnreachableError if unreachable else IndexAccessError
            raise error("; ".join(errors))
        self._pages[norm] = list(seen.values())
        return self._pages[norm]

    def _read_page(self, page: str, refused: list[str]) -> list[DistFile]:
        with self._open(page, _ACCEPT) as resp:
            body = resp.read()
            ctype = resp.headers.get("Content-Type", "") if hasattr(resp, "headers") else ""
            final = resp.geturl() if hasattr(resp, "geturl") else page
        if "json" in ctype:
            return _parse_json_page(json.loads(body), final, refused)
        text = body.decode("utf-8", errors="replace")
        if text.lstrip().startswith("{"):
            return _parse_json_page(json.loads(text), final, refused)
        return _parse_html_page(text, final, refused)

    def releases(self, name: str) -> list[Release]:
        out: list[Release] = []
        norm = canonicalize_name(name)
        for f in self.project_files(name):
            try:
                if f.filename.endswith(".whl"):
                    wname, ver, _build, tags = parse_wheel_filename(f.filename)
                    if wname != norm:
                        continue
                    out.append(Release(ver, "wheel", f, tuple(str(t) for t in tags)))
                else:
                    sname, ver = parse_sdist_filename(f.filename)
                    if sname != norm:
                        continue
                    out.append(Release(ver, "sdist", f))
            except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
                continue
        return out

    def read_bytes(self, url: str) -> bytes:
        try:
            with self._open(url) as resp:
                return read_capped(resp, METADATA_MAX_BYTES, url)
        except ArchiveError as exc:
            raise IndexAccessError(f"cannot read {url}: {exc}") from exc
        except urllib.error.HTTPError as exc:
            raise IndexAccessError(f"cannot read {url}: HTTP {exc.code}") from exc

    def download(self, dist: DistFile, folder: Path) -> Path:
        """Download `dist` into `folder` once; the sha256 (when the index gives it) is verified.

        A cached file is used again only if it still has its sha256: the index's, else the one
        recorded when it was downloaded (in `folder/.sha256/`); otherwise it is downloaded
        again (it was damaged, or nothing says what it should be)."""
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / safe_filename(dist.filename)
        sidecar = folder / SHA_FOLDER / dest.name
        known = dist.sha256 or _read_small(sidecar)
        if dest.exists() and known and _sha256(dest) == known:
            return dest
        if dest.exists():
            log.warning("%s in the cache does not match its sha256 %s: downloading it again",
                        dest, known or "(unknown)")
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        os.fchmod(fd, file_mode())  # cache files are copied to the output, modes and all
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    resp = self._open(dist.url)
                except urllib.error.HTTPError as exc:
                    raise IndexAccessError(f"cannot download {dist.url}: HTTP {exc.code}") from exc
                with resp:
                    while chunk := resp.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            if dist.sha256 and digest.hexdigest() != dist.sha256:
                raise IndexAccessError(
                    f"sha256 mismatch for {dist.filename}: index says {dist.sha256}, "
                    f"got {digest.hexdigest()}"
                )
            os.replace(tmp, dest)
            atomic_write_text(sidecar, digest.hexdigest() + "\n")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest


def _read_small(path: Path) -> str:
    """A recorded digest (64 hex digits), or "" when there is none or it is not one."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read(100).strip()
    except OSError:
        return ""
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else ""


def _sha256(path: Path) -> str:
    from .wheels import sha256_file

    return sha256_file(path)


def _hash_from_fragment(url: str) -> tuple[str, str]:
    base, _, frag = url.partition("#")
    if frag.startswith("sha256="):
        return base, frag[len("sha256=") :]
    return base, ""


def _netrc_header(host: str) -> dict[str, str]:
    try:
        found = netrc.netrc(os.environ.get("NETRC") or None).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return {}
    if not found:
        return {}
    login, _, password = found
    token = base64.b64encode(f"{login}:{password or ''}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _credentials_apart(url: str) -> tuple[str, dict[str, str]]:
    """`https://user:password@host/...` as pip takes it: the URL without its user info, and
    that user info as a Basic Authorization header. A link to another host carries none (an
    absolute link has its own user info or none), nor does a redirect to another host
    (`_KeepFamilyRedirect`)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    info, _, host = parts.netloc.rpartition("@")
    user, _, password = info.partition(":")
    token = base64.b64encode(
        f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def _kept(page_url: str, url: str, refused: list[str] | None) -> bool:
    if same_family(page_url, url):
        return True
    log.warning("index page %s links to %s: another scheme, ignored", page_url,
                url.split("#")[0])
    if refused is not None:
        refused.append(url.split("#")[0])
    return False


def _parse_html_page(text: str, page_url: str, refused: list[str] | None = None
                     ) -> list[DistFile]:
    parser = _LinkParser()
    parser.feed(text)
    out = []
    for link in parser.links:
        href = link.get("href")
        if not href:
            continue
        absolute = urllib.parse.urljoin(page_url, href)
        if not _kept(page_url, absolute, refused):
            continue
        url, sha = _hash_from_fragment(absolute)
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        try:
            safe_filename(filename)
        except UnsafeNameError:
            continue
        meta = link.get("data-core-metadata") or link.get("data-dist-info-metadata") or ""
        out.append(
            DistFile(
                filename=filename,
                url=url,
                sha256=sha,
                requires_python=link.get("data-requires-python", ""),
                yanked="data-yanked" in link,
                metadata_url=url + ".metadata" if meta and meta != "false" else "",
            )
        )
    return out


def _parse_json_page(data: dict, page_url: str, refused: list[str] | None = None
                     ) -> list[DistFile]:
    out = []
    for f in data.get("files", []):
        filename = f.get("filename", "")
        try:
            safe_filename(filename)
        except UnsafeNameError:
            continue
        url = urllib.parse.urljoin(page_url, f.get("url", ""))
        if not _kept(page_url, url, refused):
            continue
        url, frag_sha = _hash_from_fragment(url)
        meta = f.get("core-metadata", f.get("dist-info-metadata", False))
        out.append(
            DistFile(
                filename=filename,
                url=url,
                sha256=(f.get("hashes") or {}).get("sha256", frag_sha),
                requires_python=f.get("requires-python") or "",
                yanked=bool(f.get("yanked", False)),
                metadata_url=url + ".metadata" if meta else "",
            )
        )
    return out


def python_ok(requires_python: str, python: str) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(f"{python}.0", prereleases=True) or (
            SpecifierSet(requires_python).contains(python, prereleases=True)
        )
    except InvalidSpecifier:
        return True


def candidate_versions(releases: Iterable[Release], python: str) -> list[Version]:
    """Versions with at least one non-yanked file usable by the target Python, newest first."""
    versions = {
        r.version
        for r in releases
        if not r.file.yanked and python_ok(r.file.requires_python, python)
    }
    return sorted(versions, reverse=True)
