"""Go module repositories for tests, the real `go` command, and an independent h1: hash."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.repogen import HERMETIC


@dataclass(frozen=True)
class Symlink:
    target: str


class WorkTree:
    """A git work tree whose commits have fixed times (for predictable pseudo-versions)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, when: int | None = None) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **HERMETIC,
            "GIT_AUTHOR_NAME": "Ada",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
        }
        if when is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True
        )
        return result.stdout.decode()

    def write(self, files: dict[str, str | bytes | Symlink | None]) -> None:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                self.git("rm", "-q", "--", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Symlink):
                target.symlink_to(content.target)
            else:
                target.write_bytes(content.encode() if isinstance(content, str) else content)
            self.git("add", "--", name)

    def commit(self, message: str, when: int, files: dict[str, Any] | None = None) -> str:
        self.write(files or {})
        self.git("commit", "-q", "--allow-empty", "-m", message, when=when)
        return self.git("rev-parse", "HEAD").strip()

    def tag(self, name: str, *, annotated: bool = False, rev: str = "HEAD") -> None:
        if annotated:
            self.git("tag", "-a", "-m", name, name, rev, when=1_700_000_000)
        else:
            self.git("tag", "-f", name, rev)

    def show(self, rev: str, path: str) -> bytes:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
        return subprocess.run(
            ["git", "cat-file", "blob", f"{rev}:{path}"],
            cwd=self.path,
            env=env,
            check=True,
            capture_output=True,
        ).stdout


def h1(files: dict[str, bytes]) -> str:
    """golang.org/x/mod/sumdb/dirhash.Hash1, written from its documentation."""
    summary = "".join(
        f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files)
    )
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def zip_sum(module: str, version: str, files: dict[str, bytes]) -> str:
    """The go.sum hash of a module zip holding `files` (relative to the module root)."""
    return h1({f"{module}@{version}/{name}": data for name, data in files.items()})


def go_mod_sum(go_mod: bytes) -> str:
    return h1({"go.mod": go_mod})


class Go:
    """The go command with its own GOPATH, caches and HOME, talking only to our proxy."""

    def __init__(
        self, home: Path, proxy: str, *, netrc: str | None = None, ca: Path | None = None
    ) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        if netrc is not None:
            (home / ".netrc").write_text(netrc)
            (home / ".netrc").chmod(0o600)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GOPATH": str(home / "gopath"),
            "GOMODCACHE": str(home / "gopath" / "pkg" / "mod"),
            "GOCACHE": str(home / "gocache"),
            "GOPROXY": proxy,
            "GOSUMDB": "off",
            "GOFLAGS": "-mod=mod -modcacherw",
            "GOTOOLCHAIN": "local",
            "GO111MODULE": "on",
            "CGO_ENABLED": "0",
            "GOTELEMETRY": "off",
        }
        if ca is not None:
            self.env["SSL_CERT_FILE"] = str(ca)

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        workdir = cwd or self.home / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            ["go", *args],
            cwd=workdir,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=300,
        )

    def download(self, *targets: str) -> list[dict[str, Any]]:
        """`go mod download -json` of each target; each answer (with its Error, if any)."""
        result = self.run("mod", "download", "-json", *targets)
        decoder = json.JSONDecoder()
        text, answers, at = result.stdout, [], 0
        while at < len(text.strip()):
            while text[at].isspace():
                at += 1
            answer, at = decoder.raw_decode(text, at)
            answers.append(answer)
            if at >= len(text) or not text[at:].strip():
                break
        return answers


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for https://127.0.0.1 (the go command sends .netrc over https)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
