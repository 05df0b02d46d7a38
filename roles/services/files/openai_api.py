"""OpenAI-compatible endpoint in front of llama.cpp's server (edge-llama).

Replaces the tutorial's api_like_OAI.py, which the current `openai` SDK cannot stream from (it ends
SSE events with a single newline and sends no `[DONE]`) and which has no /v1/models.

Two backends:
  completion  llama.cpp's own `POST /completion` (the tutorial's 2023 server): chat messages are
              rendered with a prompt template, EDGE_LLAMA_CHAT_TEMPLATE:
                llama2  Meta's Llama-2 chat format, several turns:
                        <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
                        (<s> and </s> are sent as token ids, see llama2_pieces); stops at </s>, [INST].
                chatml  <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
                        (Qwen, SmolLM2 and other ChatML models); stops at <|im_end|>.
  native      llama.cpp's own /v1 API (current servers apply the model's chat template): requests are
              forwarded, responses streamed through.
Either way clients see the same API: /v1/models, /v1/chat/completions, /v1/completions (and the
un-prefixed paths the tutorial used), SSE events separated by a blank line and ended by
`data: [DONE]`, errors as OpenAI error objects (503 while the model loads or the server is down,
400 for a bad request, 401 without the API key when one is set), never a stack trace.

Configuration (environment, usually /etc/edge-llama/openai-api.env):
  EDGE_LLAMA_API_HOST (127.0.0.1), EDGE_LLAMA_API_PORT (8081), EDGE_LLAMA_LLAMA_URL
  (http://127.0.0.1:8080), EDGE_LLAMA_BACKEND_MODE (completion|native), EDGE_LLAMA_CHAT_TEMPLATE
  (llama2|chatml), EDGE_LLAMA_MODEL_ALIAS (llama_2), EDGE_LLAMA_API_KEY (empty: no key),
  EDGE_LLAMA_NODE_METRICS_URL (empty: no node exporter on this host).

GET /metrics: the endpoint's own metrics in Prometheus' text format (prometheus-client), behind the same
API key as the API (GET /metrics/llama: llama.cpp's own metrics where its build serves them, passed
through; GET /metrics/node: the host's node exporter at EDGE_LLAMA_NODE_METRICS_URL, passed through, so
a site's Prometheus reaches all three on the one port and key): requests by route and status,
time to first token, tokens per request and tokens/s (histograms, by route), streams in flight, and
answers refused because the model server was unavailable.
Time to first token: a stream's first token as the client gets it; for an answer that is not streamed,
the model server's own prompt time (`timings.prompt_ms`) where it reports it. Tokens/s: the model
server's own figure (`timings.predicted_per_second`) where it reports it, else the tokens over the time
from the first token to the last.
"""

import hmac
import importlib.util
import json
import logging
import os
import sys
import time
import uuid

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException

LOG = logging.getLogger("edge-llama-openai")

TEMPLATES = ("llama2", "chatml")
DEFAULT_STOPS = {"llama2": ["</s>", "[INST]"], "chatml": ["<|im_end|>", "<|im_start|>"]}


class Settings:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.host = env.get("EDGE_LLAMA_API_HOST", "127.0.0.1")
        self.port = int(env.get("EDGE_LLAMA_API_PORT", "8081"))
        self.llama_url = env.get("EDGE_LLAMA_LLAMA_URL", "http://127.0.0.1:8080").rstrip("/")
        self.mode = env.get("EDGE_LLAMA_BACKEND_MODE", "completion")
        self.template = env.get("EDGE_LLAMA_CHAT_TEMPLATE", "llama2")
        self.alias = env.get("EDGE_LLAMA_MODEL_ALIAS", "llama_2")
        self.api_key = env.get("EDGE_LLAMA_API_KEY", "")
        self.node_metrics_url = env.get("EDGE_LLAMA_NODE_METRICS_URL", "")
        self.timeout = float(env.get("EDGE_LLAMA_TIMEOUT", "600"))
        if self.mode not in ("completion", "native"):
            raise SystemExit("EDGE_LLAMA_BACKEND_MODE must be completion or native, not %r" % self.mode)
        if self.template not in TEMPLATES:
            raise SystemExit("EDGE_LLAMA_CHAT_TEMPLATE must be one of %s, not %r"
                             % (", ".join(TEMPLATES), self.template))


class APIError(Exception):
    def __init__(self, status, message, kind="invalid_request_error", code=None, param=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param

    def response(self):
        return JSONResponse(status_code=self.status, content={"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code}})


def backend_unavailable(settings, detail):
    return APIError(503, "The model server at %s is not available (%s). It may still be loading the model; "
                    "retry shortly." % (settings.llama_url, detail), "server_error", "backend_unavailable")


def bad_backend_reply():
    return APIError(502, "the model server sent a reply that is not JSON", "server_error", "bad_backend_reply")


# --- prompt rendering --------------------------------------------------------------------------

def message_text(message):
    """Text of an OpenAI message whose content is a string or a list of parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
            else:
                raise APIError(400, "only text content parts are supported", param="messages")
        return "".join(parts)
    raise APIError(400, "message content must be a string or a list of parts", param="messages")


def validate_messages(messages):
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list", param="messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise APIError(400, "messages[%d] needs a role of system, user or assistant" % i, param="messages")
        role = "system" if message["role"] == "developer" else message["role"]
        out.append({"role": role, "content": message_text(message)})
    return out


# Llama-2's <s> and </s> token ids (SentencePiece vocabulary of every Llama-2 model).
LLAMA2_BOS, LLAMA2_EOS = 1, 2


def llama2_pieces(messages):
    """Meta's Llama-2 chat format as a list of text pieces and BOS/EOS token ids.

    Meta's reference (llama/generation.py, chat_completion) encodes each finished exchange as
    BOS "[INST] {user} [/INST] {assistant} " EOS and the open one as BOS "[INST] {user} [/INST]", the
    system prompt wrapped in <<SYS>> inside the first user message. <s>/</s> are tokens, not text:
    llama.cpp at e519621 tokenizes a string prompt without parsing special tokens (a literal "<s>"
    would become the characters < s >), but its /completion takes a prompt array mixing strings and
    token ids, which gives the exact token sequence; current servers accept the same array.
    """
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    pieces, pending_user = [], None
    for message in turns:
        if message["role"] == "user":
            if pending_user is not None:  # two user messages in a row: join them
                pending_user += "\n" + message["content"]
                continue
            pending_user = message["content"]
        else:
            turn = _llama2_turn(system if not pieces else "", pending_user or "")
            pieces += [LLAMA2_BOS, turn + " " + message["content"].strip() + " ", LLAMA2_EOS]
            pending_user = None
    pieces += [LLAMA2_BOS, _llama2_turn(system if not pieces else "", pending_user or "")]
    return pieces


def render_llama2(messages):
    """The Llama-2 prompt as text, <s>/</s> written out (for reading and tests; not what is sent)."""
    marks = {LLAMA2_BOS: "<s>", LLAMA2_EOS: "</s>"}
    return "".join(marks.get(p, p) if isinstance(p, int) else p for p in llama2_pieces(messages))


def llama2_prompt(messages):
    """The /completion `prompt` for Llama-2: the server adds the first BOS itself (as it does for a
    string, with its own vocabulary's id), so that one is left out; a single turn is a plain string."""
    pieces = llama2_pieces(messages)[1:]
    return pieces[0] if len(pieces) == 1 else pieces


def _llama2_turn(system, user):
    if system:
        return "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]" % (system, user.strip())
    return "[INST] %s [/INST]" % user.strip()


def render_chatml(messages):
    prompt = "".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"]) for m in messages)
    return prompt + "<|im_start|>assistant\n"


def render(template, messages):
    """The /completion `prompt` for the chat messages (a string, or for llama2 several turns a list
    of strings and token ids)."""
    return llama2_prompt(messages) if template == "llama2" else render_chatml(messages)


# --- request translation -------------------------------------------------------------------------

def number(body, name, kind, low=None, high=None):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value):
        raise APIError(400, "'%s' must be a %s" % (name, "integer" if kind is int else "number"), param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise APIError(400, "'%s' is out of range" % name, param=name)
    return kind(value)


def stops(body, defaults):
    """The caller's stop strings, then the template's own (chat only)."""
    stop = body.get("stop")
    if stop is None:
        given = []
    elif isinstance(stop, str):
        given = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        given = list(stop)
    else:
        raise APIError(400, "'stop' must be a string or a list of strings", param="stop")
    return given + [s for s in defaults if s not in given]


def completion_payload(body, prompt, default_stops, stream):
    n = number(body, "n", int, 1, 1)  # llama.cpp answers one choice
    if n is not None and n != 1:
        raise APIError(400, "only n=1 is supported", param="n")
    payload = {"prompt": prompt, "stream": stream, "stop": stops(body, default_stops), "cache_prompt": True}
    max_tokens = number(body, "max_completion_tokens", int, 1) or number(body, "max_tokens", int, 1)
    payload["n_predict"] = max_tokens if max_tokens else -1
    temperature = number(body, "temperature", float, 0, 2)
    payload["temperature"] = 1.0 if temperature is None else temperature
    top_p = number(body, "top_p", float, 0, 1)
    if top_p is not None:
        payload["top_p"] = top_p
    seed = number(body, "seed", int)
    if seed is not None:
        payload["seed"] = seed
    for name, target in (("presence_penalty", "presence_penalty"), ("frequency_penalty", "frequency_penalty")):
        value = number(body, name, float, -2, 2)
        if value is not None:
            payload[target] = value
    return payload


def finish_reason(result):
    return "length" if result.get("stopped_limit") else "stop"


def usage(result):
    prompt, completion = int(result.get("tokens_evaluated") or 0), int(result.get("tokens_predicted") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(obj):
    return "data: %s\n\n" % json.dumps(obj, ensure_ascii=False)


def stream_error(exc):
    """The error event sent when the model server drops a stream half-way."""
    return {"error": {"message": "the model server stopped answering (%s)" % type(exc).__name__,
                      "type": "server_error", "code": "backend_unavailable"}}


# --- metrics ---------------------------------------------------------------------------------------

# The routes the metrics name (anything else, an unknown path among them, is counted as "other": a client
# must not be able to grow the series without bound).
ROUTES = ("/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/models",
          "/models", "/health", "/metrics", "/metrics/llama", "/metrics/node")


class Metrics:
    """The endpoint's own metrics, in a registry of its own (one per app)."""

    TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
    TOKENS_PER_SECOND_BUCKETS = (0.5, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512)
    TOKENS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

    def __init__(self, settings):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("edge_llama_openai_requests", "Requests answered, by route and HTTP status",
                                ["route", "status"], registry=registry)
        self.ttft = Histogram("edge_llama_openai_time_to_first_token_seconds",
                              "Seconds to the first token (streams: as sent to the client; otherwise the model "
                              "server's prompt time)", ["route"], buckets=self.TTFT_BUCKETS, registry=registry)
        self.tokens_per_second = Histogram("edge_llama_openai_tokens_per_second",
                                           "Generated tokens per second of each answer", ["route"],
                                           buckets=self.TOKENS_PER_SECOND_BUCKETS, registry=registry)
        self.tokens = Histogram("edge_llama_openai_completion_tokens", "Generated tokens per answer", ["route"],
                                buckets=self.TOKENS_BUCKETS, registry=registry)
        self.streams = Gauge("edge_llama_openai_streams_in_flight", "Streamed answers being sent now",
                             registry=registry)
        self.unavailable = Counter("edge_llama_openai_backend_unavailable",
                                   "Requests refused or streams cut because the model server did not answer",
                                   registry=registry)

    def answered(self, route, ttft=None, tokens=None, tokens_per_second=None):
        if ttft is not None and ttft >= 0:
            self.ttft.labels(route).observe(ttft)
        if tokens:
            self.tokens.labels(route).observe(tokens)
        if tokens_per_second:
            self.tokens_per_second.labels(route).observe(tokens_per_second)

    def answered_from(self, route, result, started=None, first=None, ended=None, pieces=None):
        """Observe an answer from what the model server reported: llama.cpp's `timings` (both eras),
        `usage` (the native /v1 API) or `tokens_predicted` (the 2023 /completion); a stream's own times
        (first token, end) and its number of text events (llama.cpp streams a token per event) where the
        server's are missing."""
        result = result if isinstance(result, dict) else {}
        timings = result.get("timings") if isinstance(result.get("timings"), dict) else {}
        usage_ = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        tokens = timings.get("predicted_n") or usage_.get("completion_tokens") or result.get("tokens_predicted") \
            or pieces
        ttft = (first - started) if first is not None and started is not None else None
        if ttft is None and timings.get("prompt_ms") is not None:
            ttft = float(timings["prompt_ms"]) / 1000
        rate = timings.get("predicted_per_second")
        if not rate and tokens and first is not None and ended is not None and ended > first:
            rate = tokens / (ended - first)
        self.answered(route, ttft, int(tokens) if tokens else None, float(rate) if rate else None)


def text_of(event):
    """The generated text in a stream event of either API (2023 /completion or the /v1 APIs)."""
    if event.get("content"):
        return event["content"]
    for choice in event.get("choices") or []:
        if isinstance(choice, dict):
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if delta.get("content") or choice.get("text"):
                return delta.get("content") or choice.get("text")
    return ""


# --- the app -------------------------------------------------------------------------------------

class Guard:
    """The API key, one log line per request and no stack trace to a client, as a plain ASGI
    middleware: Starlette's @app.middleware("http") would pass every streamed chunk through a
    queue of its own (measured: about 10 ms on the first token of a stream)."""

    def __init__(self, app, settings, metrics):
        self.app, self.settings, self.metrics = app, settings, metrics
        self.expected = ("Bearer " + settings.api_key).encode() if settings.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), []
        method, path = scope["method"], scope["path"]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        if self.expected is not None and path != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = APIError(401, "Missing or wrong API key (send 'Authorization: Bearer <key>').",
                                    "invalid_request_error", "invalid_api_key").response()
                await response(scope, receive, send_and_note)
                self.log(method, path, status, started)
                return
        try:
            await self.app(scope, receive, send_and_note)
        except Exception:  # never a stack trace to the client
            LOG.exception("unexpected error on %s %s", method, path)
            if not status:
                response = APIError(500, "internal error in the OpenAI endpoint", "server_error").response()
                await response(scope, receive, send_and_note)
        finally:  # also a stream the client closed before its end (the task is cancelled)
            self.log(method, path, status, started)

    def log(self, method, path, status, started):
        code = status[0] if status else 500
        self.metrics.requests.labels(path if path in ROUTES else "other", str(code)).inc()
        LOG.info("%s %s %d %.0fms", method, path, code, (time.monotonic() - started) * 1000)



def create_app(settings=None, transport=None):
    settings = settings or Settings()
    app = FastAPI(title="edge-llama OpenAI-compatible endpoint", docs_url=None, redoc_url=None, openapi_url=None)
    client = httpx.AsyncClient(base_url=settings.llama_url, transport=transport,
                               timeout=httpx.Timeout(settings.timeout, connect=5.0))
    metrics = Metrics(settings)
    app.state.settings, app.state.client, app.state.metrics = settings, client, metrics

    app.add_middleware(Guard, settings=settings, metrics=metrics)

    @app.exception_handler(APIError)
    async def api_error(_request, exc):
        if exc.code == "backend_unavailable":
            metrics.unavailable.inc()
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc):  # unknown path (404), wrong method (405): OpenAI-style too
        return APIError(exc.status_code, str(exc.detail), "invalid_request_error").response()

    async def read_json(request):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "the request body must be JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        return body

    async def backend_ready():
        paths = ["/health"] if settings.mode == "native" else ["/health", "/model.json"]
        try:
            for path in paths:
                reply = await client.get(path)
                if reply.status_code == 200:
                    return True, "ok"
                if reply.status_code != 404:
                    return False, "HTTP %d from %s" % (reply.status_code, path)
            return False, "no readiness endpoint answered"
        except httpx.HTTPError as exc:
            return False, type(exc).__name__

    @app.get("/health")
    async def health():
        ready, detail = await backend_ready()
        if ready:
            return {"status": "ok", "backend": settings.mode}
        return backend_unavailable(settings, detail).response()

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def passed_through(url, what, advice):
        """Another exporter's page on this host, as it answered (a site's Prometheus reaches it here)."""
        try:
            reply = await client.get(url, timeout=10.0)
        except httpx.HTTPError as exc:
            raise APIError(503, "%s did not answer at %s (%s)" % (what, url, type(exc).__name__),
                           "server_error", "metrics_unavailable") from None
        if reply.status_code in (404, 501):  # llama.cpp without --metrics answers 501
            raise APIError(404, "%s serves no metrics here: %s" % (what, advice), "invalid_request_error",
                           "metrics_not_served")
        if reply.status_code != 200:
            raise APIError(502, "%s answered HTTP %d at %s" % (what, reply.status_code, url), "server_error",
                           "metrics_unavailable")
        return Response(reply.content, media_type=reply.headers.get("content-type", CONTENT_TYPE_LATEST))

    @app.get("/metrics/llama")
    async def llama_metrics():
        return await passed_through(settings.llama_url + "/metrics", "llama.cpp's server",
                                    "its build has no --metrics (llama.cpp b2258, 2024-02, and later have it)")

    @app.get("/metrics/node")
    async def node_metrics():
        if not settings.node_metrics_url:
            raise APIError(404, "no node exporter on this appliance (metrics_node_exporter is off)",
                           "invalid_request_error", "metrics_not_served")
        return await passed_through(settings.node_metrics_url, "the node exporter", "it is not running")

    @app.get("/v1/models")
    @app.get("/models")
    async def models():
        return {"object": "list", "data": [
            {"id": settings.alias, "object": "model", "created": 0, "owned_by": "edge-llama"}]}

    async def native(path, body):
        stream, started = bool(body.get("stream")), time.monotonic()
        try:
            request = client.build_request("POST", path, json=body)
            reply = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise backend_unavailable(settings, type(exc).__name__) from None
        if reply.status_code != 200:
            content = await reply.aread()
            await reply.aclose()
            if reply.status_code in (502, 503, 504):
                raise backend_unavailable(settings, "HTTP %d" % reply.status_code)
            try:
                payload = json.loads(content)
                if "error" not in payload:
                    raise ValueError
            except ValueError:
                payload = {"error": {"message": content.decode("utf-8", "replace")[:500],
                                     "type": "invalid_request_error", "param": None, "code": None}}
            return JSONResponse(status_code=reply.status_code, content=payload)
        if not stream:
            content = await reply.aread()
            await reply.aclose()
            try:
                result = json.loads(content)
            except ValueError:
                raise bad_backend_reply() from None
            metrics.answered_from(path, result)
            return JSONResponse(content=result)

        async def relay():
            """The server's bytes as they come; its events read on the side for the metrics."""
            pending, first, final, pieces = b"", None, {}, 0
            metrics.streams.inc()
            try:
                async for chunk in reply.aiter_raw():
                    yield chunk
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                            continue
                        try:
                            event = json.loads(line[6:])
                        except ValueError:
                            continue
                        if isinstance(event, dict) and text_of(event):
                            first = time.monotonic() if first is None else first
                            pieces += 1
                        if isinstance(event, dict) and (event.get("timings") or event.get("usage")):
                            final = event
            except httpx.HTTPError as exc:
                metrics.unavailable.inc()
                first = None  # cut short: not an answer to observe
                yield sse(stream_error(exc))
            finally:
                # here also when the client closes the stream at [DONE], before the server's last bytes
                if first is not None:
                    metrics.answered_from(path, final, started, first, time.monotonic(), pieces)
                metrics.streams.dec()
                await reply.aclose()

        return StreamingResponse(relay(), media_type="text/event-stream")

    async def complete(payload):
        try:
            reply = await client.post("/completion", json=payload)
        except httpx.HTTPError as exc:
            raise backend_unavailable(settings, type(exc).__name__) from None
        if reply.status_code != 200:
            if reply.status_code in (502, 503, 504):
                raise backend_unavailable(settings, "HTTP %d" % reply.status_code)
            raise APIError(reply.status_code if 400 <= reply.status_code < 500 else 502,
                           "the model server answered HTTP %d: %s" % (reply.status_code, reply.text[:300]),
                           "server_error")
        try:
            result = reply.json()
        except ValueError:
            raise bad_backend_reply() from None
        if not isinstance(result, dict):
            raise bad_backend_reply()
        return result

    async def open_stream(payload):
        try:
            reply = await client.send(client.build_request("POST", "/completion", json=payload), stream=True)
        except httpx.HTTPError as exc:
            raise backend_unavailable(settings, type(exc).__name__) from None
        if reply.status_code != 200:
            await reply.aread()
            await reply.aclose()
            raise backend_unavailable(settings, "HTTP %d" % reply.status_code)
        return reply

    async def llama_events(reply):
        """Parsed `data:` events of llama.cpp's /completion stream."""
        try:
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    try:
                        yield json.loads(line[6:])
                    except ValueError:
                        continue
        finally:
            await reply.aclose()

    async def translate_stream(reply, piece, route, started, opening=None, closing=None):
        """llama.cpp's /completion events as OpenAI SSE; piece(text, finish_reason) shapes one chunk."""
        metrics.streams.inc()
        try:
            if opening is not None:
                yield sse(opening)
            final, first, pieces = {}, None, 0
            try:
                async for event in llama_events(reply):
                    if event.get("content"):
                        yield sse(piece(event["content"], None))
                        first = time.monotonic() if first is None else first
                        pieces += 1
                    if event.get("stop"):
                        final = event
            except httpx.HTTPError as exc:
                metrics.unavailable.inc()
                yield sse(stream_error(exc))
                return
            metrics.answered_from(route, final, started, first, time.monotonic(), pieces)
            yield sse(piece(None, finish_reason(final)))
            for extra in closing(final) if closing else ():
                yield sse(extra)
            yield "data: [DONE]\n\n"
        finally:
            metrics.streams.dec()

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions(request: Request):
        started = time.monotonic()
        body = await read_json(request)
        messages = validate_messages(body.get("messages"))
        if settings.mode == "native":
            completion_payload(body, "", [], False)  # the same 400s as the 2023 server's translation
            return await native("/v1/chat/completions", body)
        stream = bool(body.get("stream"))
        payload = completion_payload(body, render(settings.template, messages), DEFAULT_STOPS[settings.template],
                                     stream)
        ident, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        base = {"id": ident, "created": created, "model": settings.alias}
        if not stream:
            result = await complete(payload)
            metrics.answered_from(request.url.path, result)
            return dict(base, object="chat.completion", choices=[{
                "index": 0, "message": {"role": "assistant", "content": result.get("content", "")},
                "finish_reason": finish_reason(result), "logprobs": None}], usage=usage(result))
        reply = await open_stream(payload)

        chunk = dict(base, object="chat.completion.chunk")

        def piece(text, finish):
            delta = {"content": text} if text is not None else {}
            return dict(chunk, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

        def closing(final):
            if isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage"):
                yield dict(chunk, choices=[], usage=usage(final))

        opening = dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None}])
        return StreamingResponse(translate_stream(reply, piece, request.url.path, started, opening, closing),
                                 media_type="text/event-stream")

    @app.post("/v1/completions")
    @app.post("/completions")
    async def completions(request: Request):
        started = time.monotonic()
        body = await read_json(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise APIError(400, "'prompt' must be a string", param="prompt")
        if settings.mode == "native":
            completion_payload(body, "", [], False)
            return await native("/v1/completions", body)
        stream = bool(body.get("stream"))
        payload = completion_payload(body, prompt, [], stream)
        ident, created = "cmpl-" + uuid.uuid4().hex, int(time.time())
        base = {"id": ident, "created": created, "model": settings.alias, "object": "text_completion"}
        if not stream:
            result = await complete(payload)
            metrics.answered_from(request.url.path, result)
            return dict(base, choices=[{"index": 0, "text": result.get("content", ""), "logprobs": None,
                                        "finish_reason": finish_reason(result)}], usage=usage(result))
        reply = await open_stream(payload)

        def piece(text, finish):
            return dict(base, choices=[{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}])

        return StreamingResponse(translate_stream(reply, piece, request.url.path, started),
                                 media_type="text/event-stream")

    return app


def server_implementation():
    """uvicorn's event loop and HTTP parser: uvloop and httptools (C, from the role's package list) where
    they are installed, else asyncio and h11 (pure Python). Measured with tests/bench/openai_overhead.py:
    the pure-Python pair added a fixed few milliseconds to every first token."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def main():
    import uvicorn

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    for noisy in ("httpx", "httpcore"):  # one line per request: ours
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings()
    loop, http = server_implementation()
    LOG.info("serving on %s:%d, backend %s (%s), template %s, API key %s, %s + %s", settings.host, settings.port,
             settings.llama_url, settings.mode, settings.template, "required" if settings.api_key else "not set",
             loop, http)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False,
                log_level="warning", loop=loop, http=http)


if __name__ == "__main__":
    main()
