"""A small client of a running server's API, for CLI commands that talk to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from repodepot.exceptions import RepodepotError


class ServerError(RepodepotError):
    """The server refused the request."""

    code = "server_error"


class Client:
    """Bearer-authenticated JSON calls and SSE streams against `server`."""

    def __init__(self, server: str, token: str | None) -> None:
        if not token:
            raise ServerError("set REPODEPOT_TOKEN (or --api-token) to an API token")
        self._http = httpx.Client(
            base_url=server.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=None),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; raises ServerError with the server's message on a 4xx/5xx."""
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ServerError(f"cannot reach {self._http.base_url}: {error}") from None
        if answer.is_error:
            raise ServerError(_message(answer))
        return answer.json()

    def events(self, path: str, last_event_id: str | None = None) -> Iterator[tuple[str, str, Any]]:
        """Yield `(id, event, data)` from an SSE stream until the server closes it."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        with self._http.stream("GET", path, headers=headers) as answer:
            if answer.is_error:
                answer.read()
                raise ServerError(_message(answer))
            event_id, name, data = "", "message", list[str]()
            for line in answer.iter_lines():
                if not line:
                    if data:
                        yield event_id, name, json.loads("\n".join(data))
                    name, data = "message", []
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())


def _message(answer: httpx.Response) -> str:
    try:
        error = answer.json()["error"]
        field = f" ({error['field']})" if error.get("field") else ""
        return f"{error['message']}{field} [HTTP {answer.status_code}]"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {answer.status_code}: {answer.text[:200]}"
