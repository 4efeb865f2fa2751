"""A fake Gemini REST server on 127.0.0.1 for tests and benchmarks: the real google-genai client talks to it.

    with FakeGemini(responder=lambda prompt, body: prompt.upper(), latency=0.05,
                    faults={"429": 0.1, "500": 0.1}, seed=0) as fake:
        os.environ.update(fake.client_env())      # GOOGLE_GEMINI_BASE_URL + GEMINI_API_KEY
        ...                                       # run the code under test
        assert fake.count == 10

Faults come from ``fault_for(prompt)`` first (a fault kind for requests whose prompt says so, whatever their arrival
order), then ``schedule`` (one entry per request, in arrival order; ``None`` = answer normally), then ``faults``
(kind -> probability, drawn from a seeded RNG). Kinds are the keys of ``FAULTS``. Every request is recorded
(path, model, body, headers, arrival time, injected fault). From a shell (for a benchmark):

    python tests/fake_gemini.py --port 8123 --latency 0.2 --fault 429=0.1 --fault timeout=0.02
"""
from __future__ import annotations

import argparse
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

ROUTE = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)")
Responder = Callable[[str, dict], str]


def echo_responder(prompt: str, body: dict) -> str:
    return f"echo: {prompt}"


def count_tokens(text: str) -> int:
    """The fake's token count: one token per 4 characters (at least 1), so tests can predict usage and cost."""
    return max(1, len(text) // 4)


def prompt_text(body: dict) -> str:
    """All text parts of the request's ``contents``, joined by newlines (the system instruction is not included)."""
    texts = []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            if "text" in part:
                texts.append(part["text"])
    return "\n".join(texts)


def generate_response(text: str | None, prompt: str, model: str) -> dict:
    """The JSON the Gemini API returns for generateContent (the minimal shape the SDK accepts)."""
    parts = [] if text is None else [{"text": text}]
    out_tokens = 0 if text is None else count_tokens(text)
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": count_tokens(prompt), "candidatesTokenCount": out_tokens,
                          "totalTokenCount": count_tokens(prompt) + out_tokens},
        "modelVersion": model,
    }


def error_body(code: int, status: str, message: str, reason: str | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}]
    return {"error": error}


def blocked_prompt(prompt: str, model: str) -> dict:
    """The prompt itself was blocked: no candidates, only ``promptFeedback.blockReason``."""
    return {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model,
            "usageMetadata": {"promptTokenCount": count_tokens(prompt), "totalTokenCount": count_tokens(prompt)}}


def blocked_reply(prompt: str, model: str) -> dict:
    """The answer was withheld: a candidate with finish reason SAFETY and no parts."""
    out = generate_response(None, prompt, model)
    out["candidates"][0]["finishReason"] = "SAFETY"
    return out


THOUGHT_TOKENS = 500


def thinking_only(prompt: str, model: str) -> dict:
    """The output limit went to thinking: one thought part, finish reason MAX_TOKENS, no answer text."""
    out = generate_response(None, prompt, model)
    out["candidates"][0].update(finishReason="MAX_TOKENS",
                                content={"role": "model", "parts": [{"text": "Let me think...", "thought": True}]})
    out["usageMetadata"].update(thoughtsTokenCount=THOUGHT_TOKENS,
                                totalTokenCount=count_tokens(prompt) + THOUGHT_TOKENS)
    return out


REPLY_FAULTS: dict[str, Callable[[str, str], dict]] = {  # HTTP 200 replies that carry no usable text
    "blocked": blocked_prompt, "blocked_reply": blocked_reply, "thinking_only": thinking_only,
}

# fault kind -> (HTTP status, JSON body or raw bytes); "timeout" and "no_text" are handled in the request handler
ERROR_FAULTS: dict[str, tuple[int, Any]] = {
    "429": (429, error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")),
    "500": (500, error_body(500, "INTERNAL", "An internal error has occurred.")),
    "503": (503, error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")),
    "401": (401, error_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")),
    "403": (403, error_body(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")),
    "400_api_key_invalid": (400, error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                                            reason="API_KEY_INVALID")),
    "404": (404, error_body(404, "NOT_FOUND", "models/x is not found for API version v1.")),
    "malformed": (200, b'{"candidates": [{"content": {"parts": [{"text": "trunc'),  # a torn, invalid JSON body
}
FAULTS = sorted([*ERROR_FAULTS, *REPLY_FAULTS, "timeout", "no_text"])


@dataclass
class RecordedRequest:
    path: str
    model: str
    method: str                      # generateContent | streamGenerateContent | countTokens
    body: dict
    headers: dict[str, str]
    time: float                      # time.monotonic() at arrival
    fault: str | None = None

    @property
    def prompt(self) -> str:
        return prompt_text(self.body)


@dataclass
class FakeGemini:
    responder: Responder = echo_responder
    latency: float | Callable[[], float] = 0.0
    faults: dict[str, float] = field(default_factory=dict)      # kind -> probability per request
    schedule: list[str | None] = field(default_factory=list)    # per-request faults in arrival order, then `faults`
    fault_for: Callable[[str], str | None] | None = None         # prompt -> fault kind, before `schedule`
    seed: int = 0
    timeout_sleep: float = 2.0       # how long a "timeout" fault stalls (set it above the client's timeout)
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self):
        unknown = sorted((set(self.faults) | {f for f in self.schedule if f}) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {FAULTS}")
        self.requests: list[RecordedRequest] = []
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> "FakeGemini":
        self._server = _Server((self.host, self.port), _make_handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False  # stalled "timeout" handlers must not hold up shutdown
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-gemini",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests read ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "FakeGemini is not running"
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def faults_injected(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for r in self.requests:
                if r.fault:
                    counts[r.fault] = counts.get(r.fault, 0) + 1
            return counts

    def client_env(self, api_key: str = "test-key") -> dict[str, str]:
        """Environment variables that point the google-genai client at this server."""
        return {"GOOGLE_GEMINI_BASE_URL": self.url, "GEMINI_API_KEY": api_key}

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    # -- used by the handler -----------------------------------------------------------------------------------------
    def _record(self, rec: RecordedRequest) -> RecordedRequest:
        by_prompt = self.fault_for(rec.prompt) if self.fault_for else None
        if by_prompt is not None and by_prompt not in FAULTS:
            raise ValueError(f"unknown fault kind {by_prompt!r}; known: {FAULTS}")
        with self._lock:
            rec.fault = by_prompt or self._draw_fault()
            self.requests.append(rec)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return rec

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _draw_fault(self) -> str | None:
        index = len(self.requests)
        if index < len(self.schedule):
            return self.schedule[index]
        roll, edge = self._rng.random(), 0.0
        for kind in sorted(self.faults):  # sorted: the same seed gives the same faults whatever the dict order
            edge += self.faults[kind]
            if roll < edge:
                return kind
        return None

    def _latency(self) -> float:
        return self.latency() if callable(self.latency) else self.latency


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops connects under load; clients then see connect timeouts


def _make_handler(fake: FakeGemini):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API

        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            match = ROUTE.match(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not match:
                return self._send(404, error_body(404, "NOT_FOUND", f"no route for {self.path}"))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return self._send(400, error_body(400, "INVALID_ARGUMENT", "request body is not JSON"))
            rec = fake._record(RecordedRequest(self.path, match.group(2), match.group(3), body,
                                               dict(self.headers.items()), time.monotonic()))
            try:
                self._answer(rec)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout fault)
            finally:
                fake._done()

        def _answer(self, rec: RecordedRequest):
            time.sleep(fake._latency())
            if rec.fault == "timeout":
                time.sleep(fake.timeout_sleep)
            elif rec.fault in ERROR_FAULTS:
                return self._send(*ERROR_FAULTS[rec.fault])
            if rec.method == "countTokens":
                return self._send(200, {"totalTokens": count_tokens(rec.prompt)})
            if rec.fault in REPLY_FAULTS:
                return self._send(200, REPLY_FAULTS[rec.fault](rec.prompt, rec.model))
            text = None if rec.fault == "no_text" else fake.responder(rec.prompt, rec.body)
            payload = generate_response(text, rec.prompt, rec.model)
            if rec.method == "streamGenerateContent":
                return self._send(200, f"data: {json.dumps(payload)}\r\n\r\n".encode(), "text/event-stream")
            self._send(200, payload)

        def _send(self, status: int, payload, content_type: str = "application/json"):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Gemini API until interrupted.")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=P", help=f"kinds: {', '.join(FAULTS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faults = {kind: float(p) for kind, p in (f.split("=", 1) for f in args.fault)}
    with FakeGemini(latency=args.latency, faults=faults, seed=args.seed, port=args.port) as fake:
        print(f"fake Gemini at {fake.url} (GOOGLE_GEMINI_BASE_URL={fake.url}); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"served {fake.count} requests; faults {fake.faults_injected()}")


if __name__ == "__main__":
    main()
