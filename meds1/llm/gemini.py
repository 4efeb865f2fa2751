"""The ``gemini`` provider: the real google-genai client, async, credentials from the environment only.

Credentials (never from config files): ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``, or Vertex AI with
``GOOGLE_GENAI_USE_VERTEXAI=true``, ``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_LOCATION`` and application-default
credentials. ``base_url`` comes from the llm block or ``GOOGLE_GEMINI_BASE_URL`` (tests point it at a fake server).
The SDK's own retries are switched off (``HttpRetryOptions(attempts=1)``): the client's tenacity loop is the only one.

Every call goes out with the safety filters off (as the seed system sent them: medical text trips them) and with the
thinking settings the llm block gives (``thinking``, added by the client to the request's params). A reply without
text is classified: blocked (prompt or answer withheld) and "the output limit went to thinking" are ``RequestFailed``
(retrying the same request cannot help); an otherwise empty reply is transient and retried.
"""
from __future__ import annotations

import json
import os
from typing import Any

from meds1.errors import MedS1Error
from meds1.llm.base import LLMRequest, LLMResult
from meds1.llm.providers import PROVIDERS, Provider, RequestFailed, TransientLLMError

KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
VERTEX_VARS = ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION")
DEFAULT_TIMEOUT_S = 120.0
CREDENTIALS_HELP = ("set GEMINI_API_KEY (or GOOGLE_API_KEY) to a valid key, or use Vertex AI: "
                    "GOOGLE_GENAI_USE_VERTEXAI=true, GOOGLE_CLOUD_PROJECT, GOOGLE_CLOUD_LOCATION and "
                    "application-default credentials (gcloud auth application-default login)")
SAFETY_OFF = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
              "HARM_CATEGORY_DANGEROUS_CONTENT")
BLOCKED_FINISH = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "MODEL_ARMOR"}


def use_vertex() -> bool:
    return os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").strip().lower() in ("1", "true", "yes")


def redact_secrets(text: str) -> str:
    """Remove any API key from a message before it reaches an error, a log or a file."""
    for var in KEY_VARS:
        secret = os.environ.get(var)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout exceptions of whichever HTTP stack the SDK uses (httpx, httpx2 or aiohttp)."""
    errors: list[type[BaseException]] = [TimeoutError, ConnectionError]
    for module, name in (("httpx", "TransportError"), ("httpx2", "TransportError"), ("aiohttp", "ClientError")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def is_credential_error(code: int, details: Any) -> bool:
    return code in (401, 403) or (code == 400 and "API_KEY_INVALID" in json.dumps(details, default=str))


@PROVIDERS.register("gemini")
class GeminiProvider(Provider):
    name = "gemini"

    def __init__(self, cfg, *, experiment=None):
        super().__init__(cfg, experiment=experiment)
        if not self.model:
            raise MedS1Error("the gemini provider needs a model name", experiment=experiment, key="llm.model")
        self.timeout_s = float(cfg.get("timeout_s") or DEFAULT_TIMEOUT_S)
        self._client = None
        self._transport_errors = transport_errors()

    # -- session -----------------------------------------------------------------------------------------------------
    async def open(self) -> None:
        from google import genai
        from google.genai import types

        self._check_credentials()
        # (the SDK reads GOOGLE_VERTEX_BASE_URL itself; the Gemini API one is passed on explicitly)
        base_url = self.cfg.get("base_url") or (None if use_vertex() else os.environ.get("GOOGLE_GEMINI_BASE_URL"))
        options = types.HttpOptions(base_url=base_url, timeout=int(self.timeout_s * 1000),
                                    retry_options=types.HttpRetryOptions(attempts=1))
        try:
            self._client = genai.Client(http_options=options)  # the SDK reads the key / Vertex settings from env
        except Exception as err:  # e.g. google.auth DefaultCredentialsError, missing project
            raise MedS1Error(f"cannot create the Gemini client ({redact_secrets(str(err))}): {CREDENTIALS_HELP}",
                             experiment=self.experiment, key="llm.provider") from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            self._client.close()  # the SDK also opened a sync HTTP client
            self._client = None

    def _check_credentials(self) -> None:
        missing = [v for v in VERTEX_VARS if not os.environ.get(v)] if use_vertex() else (
            [] if any(os.environ.get(v) for v in KEY_VARS) else ["GEMINI_API_KEY"])
        if missing:
            raise MedS1Error(f"no Gemini credentials ({', '.join(missing)} not set): {CREDENTIALS_HELP}",
                             experiment=self.experiment, key="llm.provider")

    # -- one call ----------------------------------------------------------------------------------------------------
    async def generate(self, request: LLMRequest) -> LLMResult:
        config = self._config(request)
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=request.prompt, config=config)
        except Exception as err:
            raise self._translate(err) from None
        return self._result(request, response)

    def _config(self, request: LLMRequest):
        from google.genai import types

        safety = [types.SafetySetting(category=c, threshold="OFF") for c in SAFETY_OFF]
        try:
            return types.GenerateContentConfig(system_instruction=request.system, safety_settings=safety,
                                               **request.params)
        except Exception as err:  # pydantic forbids unknown fields
            raise MedS1Error(f"invalid Gemini generation params {sorted(request.params)} for task "
                             f"'{request.task}': {str(err).splitlines()[0]}", experiment=self.experiment,
                             key="llm.params") from None

    def _translate(self, err: Exception) -> Exception:
        """SDK exception -> TransientLLMError (retry) or MedS1Error (stop)."""
        from google.auth import exceptions as auth_errors
        from google.genai import errors as genai_errors

        if isinstance(err, genai_errors.APIError):
            code, status = int(err.code or 0), err.status or ""
            message = redact_secrets(str(err.message or ""))
            if code == 429 or code == 408 or code >= 500:
                return TransientLLMError(str(code), f"HTTP {code} {status} {message}")
            if is_credential_error(code, err.details):
                return MedS1Error(f"Gemini rejected the credentials (HTTP {code} {status}): {CREDENTIALS_HELP}; "
                                  f"server said: {message}", experiment=self.experiment, key="llm.provider")
            key = "llm.model" if code == 404 else "llm"
            return MedS1Error(f"Gemini rejected the request for model '{self.model}' (HTTP {code} {status}): "
                              f"{message}", experiment=self.experiment, key=key)
        if isinstance(err, auth_errors.TransportError):  # could not reach the token endpoint
            return TransientLLMError("network", f"{type(err).__name__} {redact_secrets(str(err))}")
        if isinstance(err, auth_errors.GoogleAuthError):  # Vertex AI: no or unusable application-default credentials
            return MedS1Error(f"Gemini credentials unusable ({type(err).__name__}: {redact_secrets(str(err))}): "
                              f"{CREDENTIALS_HELP}", experiment=self.experiment, key="llm.provider")
        if isinstance(err, self._transport_errors):
            kind = "timeout" if "timeout" in type(err).__name__.lower() or isinstance(err, TimeoutError) else "network"
            return TransientLLMError(kind, f"{type(err).__name__} {redact_secrets(str(err))}")
        if isinstance(err, ValueError):  # json.JSONDecodeError, pydantic.ValidationError: a torn or odd body
            return TransientLLMError("malformed", f"unreadable reply: {type(err).__name__}")
        return err

    def _result(self, request: LLMRequest, response) -> LLMResult:
        usage = _usage(response)
        text = response.text
        if not text:
            raise _no_text(request, response, usage)
        if request.params.get("response_mime_type") == "application/json":
            try:
                json.loads(text)
            except ValueError:
                raise TransientLLMError("malformed", "reply is not the JSON that was asked for", usage) from None
        return LLMResult(text=text, input_tokens=usage[0], output_tokens=usage[1], provider=self.name,
                         model=self.model, meta={"finish_reason": _finish_reason(response)})


def _usage(response) -> tuple[int, int]:
    """(input, output) tokens billed; thinking tokens are billed at the output rate, so they count as output."""
    usage = response.usage_metadata
    output = int(getattr(usage, "candidates_token_count", 0) or 0) + int(getattr(usage, "thoughts_token_count", 0) or 0)
    return int(getattr(usage, "prompt_token_count", 0) or 0), output


def _no_text(request: LLMRequest, response, usage: tuple[int, int]) -> Exception:
    """Why a reply has no text: blocked and thinking-only replies will not change on a retry; empty ones may."""
    finish = _finish_reason(response)
    feedback = getattr(response, "prompt_feedback", None)
    blocked = getattr(getattr(feedback, "block_reason", None), "value", None) or getattr(feedback, "block_reason", None)
    if blocked:
        return RequestFailed("blocked", f"the prompt was blocked ({blocked})", usage)
    if finish in BLOCKED_FINISH:
        return RequestFailed("blocked", f"the reply was withheld (finish reason {finish})", usage)
    thoughts = int(getattr(response.usage_metadata, "thoughts_token_count", 0) or 0)
    if finish == "MAX_TOKENS":
        limit = request.params.get("max_output_tokens")
        return RequestFailed("thinking_only" if thoughts else "max_tokens",
                             f"the output limit ({limit} tokens) was used up before any text ({thoughts} thinking "
                             f"tokens): raise llm.thinking_reserve_tokens or lower llm.thinking", usage)
    return TransientLLMError("empty", f"reply has no text (finish reason {finish}, {thoughts} thinking tokens)", usage)


def _finish_reason(response) -> str | None:
    try:
        reason = response.candidates[0].finish_reason
    except (AttributeError, IndexError, TypeError):
        return None
    return getattr(reason, "value", reason)
