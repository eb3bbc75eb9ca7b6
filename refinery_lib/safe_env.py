"""What build code may see of this host's environment, and what no log may show.

Builds run a stranger's `setup.py`, meson or CMake code. They get an allow-listed environment
(`build_base_env`), the same for every builder: the names below, the ones a user passes on
purpose with `build.pass_env`, and what the refinery sets for the build itself. Anything else,
the panel's `WORKER_TOKEN`, `WORKER_*`, the host's `PIP_*` configuration, cloud credentials,
stays out.

Second line of defence: the values of secret-looking variables of this process, and passwords
in URLs, are replaced by `***` in every log line a command writes (`Redactor`, used by
`proc.run`), and in the reasons kept in the history and the manifest (`redact`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

#: host variables every build gets when set: locale, time zone, temporary folder, CA bundles,
#: proxies, and the toolchain knobs a platform engineer sets on purpose
PASSED: frozenset[str] = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "CC", "CXX", "CPP", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "PKG_CONFIG_PATH",
    "MAKEFLAGS", "CMAKE_BUILD_PARALLEL_LEVEL", "MAX_JOBS", "NPY_NUM_BUILD_JOBS",
})
PASSED_PREFIXES: tuple[str, ...] = ("LC_",)

#: names that are never passed, even when listed in `build.pass_env`: the panel's and the
#: worker's own settings, the token among them
NEVER_PASSED = re.compile(r"WORKER_.*|REFINERY_.*TOKEN.*")

#: a variable whose name matches holds a secret: its value is redacted wherever it shows up
SECRET_NAME = re.compile(
    r".*(TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|AUTH).*",
    re.IGNORECASE,
)
#: shorter values are too likely to occur by chance to be replaced everywhere
MIN_SECRET_LEN = 6
MASK = "***"

#: the user info of a URL (`user:password@`, or a token alone as in `https://TOKEN@host`);
#: bounded repeats keep a long line without "://" linear to scan
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<info>[^/@\s]{1,512})@")


class PassEnvError(ValueError):
    """A name in `build.pass_env` that may not be passed."""


def check_pass_env(names: Iterable[str]) -> tuple[str, ...]:
    """The user's extra names, refusing the refinery's own secrets (one-line reason)."""
    out = []
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise PassEnvError(f"build.pass_env: {name!r} is not a variable name")
        if NEVER_PASSED.fullmatch(name):
            raise PassEnvError(f"build.pass_env: {name} is the panel's or worker's own and "
                               "never reaches a build")
        out.append(name)
    return tuple(dict.fromkeys(out))


def passed(name: str, extra: Iterable[str] = ()) -> bool:
    if NEVER_PASSED.fullmatch(name):
        return False
    return name in PASSED or name.startswith(PASSED_PREFIXES) or name in set(extra)


def build_base_env(extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
                   ) -> dict[str, str]:
    """The host part of a build's environment: the allow-listed names that are set."""
    environ = os.environ if environ is None else environ
    extra = tuple(extra)
    return {k: v for k, v in environ.items() if passed(k, extra)}


def secrets_in(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values to hide: secret-looking variables' values, and the passwords or tokens in
    URLs in any value; longest first, so that a secret containing another is replaced whole."""
    found: set[str] = set()
    for key, value in environ.items():
        if SECRET_NAME.fullmatch(key) and len(value) >= MIN_SECRET_LEN:
            found.add(value)
        for m in _URL_USERINFO.finditer(value):
            secret = m.group("info").partition(":")[2] or m.group("info")
            if len(secret) >= MIN_SECRET_LEN:
                found.add(secret)
    return tuple(sorted(found, key=len, reverse=True))


@lru_cache(maxsize=8)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    return re.compile("|".join(re.escape(s) for s in secrets))


def known_secrets() -> tuple[str, ...]:
    return secrets_in(os.environ)


def redact(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """`text` with every known secret, and the user info of every URL, replaced by `***`."""
    secrets = known_secrets() if secrets is None else secrets
    pattern = _pattern(secrets)
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "://" not in text:  # no URL: the costly pattern would find nothing (50x faster)
        return text
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


class Redactor:
    """Redacts a stream written in pieces (a command's output on its way to a log).

    A piece is written up to its last newline; a line longer than `hold` is written early but
    for its last `hold` characters, so that a secret cut in two by a read is still caught."""

    def __init__(self, secrets: tuple[str, ...] | None = None, hold: int = 4096):
        self.secrets = known_secrets() if secrets is None else secrets
        self.hold = max(hold, max((len(s) for s in self.secrets), default=0) + 256)
        self._pending = ""

    def feed(self, piece: str) -> str:
        data = self._pending + piece
        cut = data.rfind("\n") + 1
        if cut == 0 and len(data) > 2 * self.hold:
            cut = len(data) - self.hold
        cut = self._outside_matches(data, cut)
        self._pending = data[cut:]
        return redact(data[:cut], self.secrets) if cut else ""

    def _outside_matches(self, data: str, cut: int) -> int:
        """`cut`, moved to the end of a secret it would split (the secret is then whole in
        `data`: a secret still arriving starts in the held-back tail)."""
        urls = _URL_USERINFO if "://" in data else None
        for pattern in (_pattern(self.secrets), urls):
            if pattern is None:
                continue
            for m in pattern.finditer(data):
                if m.start() < cut < m.end():
                    cut = m.end()
        return cut

    def flush(self) -> str:
        data, self._pending = self._pending, ""
        return redact(data, self.secrets)


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control characters (newlines, escape sequences a
    stranger put in a file name or a build's output) shown as escapes, not acted on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def redact_data(data: Any, secrets: tuple[str, ...] | None = None) -> Any:
    """`data` (JSON-like: dicts, lists, strings) with `redact` applied to every string."""
    secrets = known_secrets() if secrets is None else secrets
    if isinstance(data, str):
        return redact(data, secrets)
    if isinstance(data, dict):
        return {k: redact_data(v, secrets) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v, secrets) for v in data]
    return data


def engine_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a program of ours that runs builds but is not one (the container
    engine, which passes a container only the names it is given): this host's, less the
    refinery's and other secret-looking variables, plus `extra`."""
    base = {k: v for k, v in os.environ.items()
            if not NEVER_PASSED.fullmatch(k) and not SECRET_NAME.fullmatch(k)}
    return {**base, **{k: str(v) for k, v in (extra or {}).items()}}
