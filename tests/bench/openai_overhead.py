#!/usr/bin/env python3
"""Overhead of the OpenAI endpoint (openai_api.py) over llama.cpp's server (not a test: it prints figures).

The same chat request, on the same model, is sent through the endpoint and directly to llama.cpp, in
turns (direct, endpoint, direct, endpoint, ...; one warm-up pair not counted), with and without streaming:

  streaming      TTFT: from sending the request to the first non-empty content;
                 tokens/s: (generated tokens - 1) / (time of the last token - time of the first), the
                 count from the final usage / timings (llama.cpp's tokens_predicted, OpenAI usage with
                 stream_options.include_usage), else the number of content events.
  non-streaming  latency of the whole request (TTFT is not observable); tokens/s: tokens / latency.

It prints the median (min-max) of each figure for both paths and the ratio, defined so that higher is
better and 1.0 is no overhead: direct TTFT / endpoint TTFT, endpoint tokens/s / direct tokens/s (goal:
0.95 or more).

"Directly" means the request the endpoint itself makes, so that the model does the same work:
  - endpoint in "native" mode (a current llama.cpp with its own /v1 API): the same body to llama.cpp's
    POST /v1/chat/completions;
  - endpoint in "completion" mode (the tutorial's 2023 server): POST /completion with the prompt rendered
    by the endpoint's own template code (render() and DEFAULT_STOPS of openai_api.py, imported by path:
    --app, default the repository's roles/services/files/openai_api.py, else the appliance's
    /opt/edge-llama/apps/openai_api.py) and the payload the endpoint builds (n_predict = max_tokens,
    temperature 0, the seed, cache_prompt true, the template's stop strings).
The mode is what the endpoint's /health reports, else guessed from llama.cpp (GET /v1/models or /health
answering: a current server; otherwise the 2023 one). The prompt tokens, generated tokens and texts of
both paths are compared afterwards; a difference (e.g. --template not the endpoint's) is reported.

From the repository (controller virtualenv):
    . tests/setup/env.sh && python tests/bench/openai_overhead.py [--runs 5] [--max-tokens 128] [--json]
On an appliance (the services' virtualenv has httpx, fastapi and openai; see tests/bench/README.md):
    /opt/edge-llama/venvs/services/bin/python openai_overhead.py --app /opt/edge-llama/apps/openai_api.py

Exit status: 0 when the figures were printed, 2 when a service cannot be reached (or is still loading the
model), 1 for other failures (an HTTP error, a wrong API key, the template code not importable).
"""

import argparse
import importlib.util
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

GOAL = 0.95
APPLIANCE_APP = Path("/opt/edge-llama/apps/openai_api.py")
DEFAULT_PROMPT = "Write a short story about a robot who learns to paint."
DEFAULT_SYSTEM = "You are a helpful AI assistant."


class Failure(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def repo_app():
    here = Path(__file__).resolve()
    if len(here.parents) > 2:
        candidate = here.parents[2] / "roles" / "services" / "files" / "openai_api.py"
        if candidate.is_file():
            return candidate
    return None


def load_app(path):
    """openai_api.py imported by path, for render(), DEFAULT_STOPS and completion_payload() (it imports
    fastapi and httpx)."""
    if path is None:
        path = repo_app() or APPLIANCE_APP
    path = Path(path)
    if not path.is_file():
        raise Failure("the endpoint's template code is not at %s (give --app PATH to openai_api.py)" % path)
    sys.dont_write_bytecode = True  # no __pycache__ next to the installed app
    spec = importlib.util.spec_from_file_location("edge_llama_openai_api", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise Failure("cannot import %s (%s); run this with a Python that has the services' packages, e.g. "
                      "/opt/edge-llama/venvs/services/bin/python or the controller's .venv" % (path, exc)) from None
    for name in ("render", "DEFAULT_STOPS", "completion_payload"):
        if not hasattr(module, name):
            raise Failure("%s has no %s: not edge-llama's openai_api.py?" % (path, name))
    return path, module


# --- HTTP --------------------------------------------------------------------------------------------------------

def unreachable(what, url, exc):
    detail = str(exc) or type(exc).__name__
    return Failure("%s at %s cannot be reached (%s: %s)" % (what, url, type(exc).__name__, detail), 2)


def http_failure(what, url, reply, body=None):
    text = body if body is not None else reply.text
    try:
        error = json.loads(text).get("error")
        text = error.get("message", text) if isinstance(error, dict) else (error or text)
    except (ValueError, AttributeError):
        pass
    code = 2 if reply.status_code in (502, 503, 504) else 1
    hint = " (give the endpoint's key with --api-key or EDGE_LLAMA_API_KEY)" if reply.status_code == 401 else ""
    return Failure("%s answered HTTP %d for %s: %s%s" % (what, reply.status_code, url, str(text)[:300], hint), code)


def http_client(timeout):
    """A keep-alive client straight to the given address (no proxy from the environment), with TCP_NODELAY
    like the endpoint's own asyncio client to llama.cpp: httpx's sync client writes a request's headers and
    body separately, and without it Nagle's algorithm and the server's delayed ACK can stall a request on
    a reused connection by 40 ms, which would be counted against one path only."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(timeout=timeout, trust_env=False, transport=transport)


def get(client, what, url, headers=None):
    try:
        return client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise unreachable(what, url, exc) from None


def endpoint_health(client, root):
    """The endpoint's /health: its backend mode ("completion"/"native"), or None when it does not say."""
    url = root + "/health"
    reply = get(client, "the OpenAI endpoint", url)
    if reply.status_code == 404:
        return None
    if reply.status_code != 200:
        raise http_failure("the OpenAI endpoint", url, reply)
    try:
        return reply.json().get("backend")
    except (ValueError, AttributeError):
        return None


def detect_llama(client, base):
    """("current", model id) for a server with its own /v1 API, ("2023", model) for the tutorial's."""
    reply = get(client, "llama.cpp's server", base + "/v1/models")
    if reply.status_code == 200:
        try:
            data = reply.json().get("data") or [{}]
            return "current", data[0].get("id")
        except (ValueError, AttributeError, IndexError):
            return "current", None
    reply = get(client, "llama.cpp's server", base + "/health")
    if reply.status_code == 200:
        return "current", None
    if reply.status_code == 503:
        raise http_failure("llama.cpp's server (still loading the model?)", base + "/health", reply)
    reply = get(client, "llama.cpp's server", base + "/model.json")
    model = None
    if reply.status_code == 200:
        try:
            model = reply.json().get("model")
        except (ValueError, AttributeError):
            pass
    return "2023", model


def endpoint_model(client, api, headers):
    url = api + "/models"
    reply = get(client, "the OpenAI endpoint", url, headers)
    if reply.status_code != 200:
        raise http_failure("the OpenAI endpoint", url, reply)
    try:
        return reply.json()["data"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise Failure("the OpenAI endpoint's %s lists no model (give --model)" % url) from None


# --- one request -------------------------------------------------------------------------------------------------

def read_event(event, kind, sample):
    """(content, generation ended) of one parsed event; counts go into sample."""
    if isinstance(event.get("error"), (dict, str)):
        raise Failure("the stream carried an error: %s" % json.dumps(event["error"])[:300])
    timings = event.get("timings")
    if isinstance(timings, dict) and timings.get("predicted_n") is not None:
        sample.setdefault("counts", {})["timings"] = int(timings["predicted_n"])
    if kind == "completion":
        if event.get("tokens_predicted") is not None:
            sample.setdefault("counts", {})["tokens_predicted"] = int(event["tokens_predicted"])
        if event.get("tokens_evaluated") is not None:
            sample["prompt_tokens"] = int(event["tokens_evaluated"])
        return event.get("content"), bool(event.get("stop"))
    usage = event.get("usage")
    if isinstance(usage, dict):
        if usage.get("completion_tokens") is not None:
            sample.setdefault("counts", {})["usage"] = int(usage["completion_tokens"])
        if usage.get("prompt_tokens") is not None:
            sample["prompt_tokens"] = int(usage["prompt_tokens"])
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return None, False
    choice = choices[0]
    part = choice.get("delta") if "delta" in choice else choice.get("message")
    content = part.get("content") if isinstance(part, dict) else choice.get("text")
    return content, bool(choice.get("finish_reason"))


def generated(sample, events):
    counts = sample.pop("counts", {})
    for source in ("usage", "tokens_predicted", "timings"):
        if counts.get(source) is not None:
            return counts[source], source
    return events, "content events" if events is not None else "nowhere (no usage in the reply)"


def run_httpx(client, target, body, stream):
    """One request with httpx: target = (what, url, headers, kind)."""
    what, url, headers, kind = target
    sample = {}
    started = time.perf_counter()
    try:
        if not stream:
            reply = client.post(url, json=body, headers=headers)
            sample["latency"] = time.perf_counter() - started
            if reply.status_code != 200:
                raise http_failure(what, url, reply)
            try:
                result = reply.json()
            except ValueError:
                raise Failure("%s sent a reply that is not JSON for %s" % (what, url)) from None
            content, _ = read_event(result, kind, sample)
            sample["text"] = content or ""
            sample["tokens"], sample["counted"] = generated(sample, None)
            return finish(sample, stream)
        first = last = end = None
        events, text = 0, []
        with client.stream("POST", url, json=body, headers=headers) as reply:
            if reply.status_code != 200:
                raise http_failure(what, url, reply, reply.read().decode("utf-8", "replace"))
            for line in reply.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                now = time.perf_counter()
                content, done = read_event(event, kind, sample)
                if content:
                    first = now if first is None else first
                    last = now
                    events += 1
                    text.append(content)
                if done and end is None:
                    end = now
    except httpx.HTTPError as exc:
        raise unreachable(what, url, exc) from None
    sample["latency"] = time.perf_counter() - started
    return stream_sample(sample, started, first, last, end, events, text)


def stream_sample(sample, started, first, last, end, events, text):
    sample["text"] = "".join(text)
    sample["tokens"], sample["counted"] = generated(sample, events)
    if first is not None:
        sample["ttft"] = first - started
        sample["span"] = max(last, end or last) - first  # the last token: the last content or the end event
    return finish(sample, True)


def finish(sample, stream):
    tokens = sample.get("tokens")
    if stream:
        span = sample.get("span")
        sample["tok_s"] = (tokens - 1) / span if tokens and tokens > 1 and span else None
    else:
        sample["tok_s"] = tokens / sample["latency"] if tokens and sample["latency"] > 0 else None
    return sample


def run_sdk(sdk, body, stream):
    """One request through the official openai SDK (--client openai)."""
    import openai

    args = {k: v for k, v in body.items() if k not in ("cache_prompt",)}
    extra = {k: v for k, v in body.items() if k == "cache_prompt"}
    sample = {}
    started = time.perf_counter()
    try:
        if not stream:
            reply = sdk.chat.completions.create(**args, extra_body=extra)
            sample["latency"] = time.perf_counter() - started
            sample["text"] = reply.choices[0].message.content or "" if reply.choices else ""
            if reply.usage is not None:
                sample["counts"] = {"usage": reply.usage.completion_tokens}
                sample["prompt_tokens"] = reply.usage.prompt_tokens
            sample["tokens"], sample["counted"] = generated(sample, None)
            return finish(sample, False)
        first = last = end = None
        events, text = 0, []
        for chunk in sdk.chat.completions.create(**args, extra_body=extra):
            now = time.perf_counter()
            if chunk.usage is not None:
                sample["counts"] = {"usage": chunk.usage.completion_tokens}
                sample["prompt_tokens"] = chunk.usage.prompt_tokens
            if chunk.choices:
                content = chunk.choices[0].delta.content if chunk.choices[0].delta else None
                if content:
                    first = now if first is None else first
                    last = now
                    events += 1
                    text.append(content)
                if chunk.choices[0].finish_reason and end is None:
                    end = now
    except openai.APIConnectionError as exc:
        raise unreachable("the OpenAI endpoint", str(sdk.base_url), exc.__cause__ or exc) from None
    except openai.APIStatusError as exc:
        raise http_failure("the OpenAI endpoint", str(sdk.base_url), exc.response) from None
    sample["latency"] = time.perf_counter() - started
    return stream_sample(sample, started, first, last, end, events, text)


# --- figures -----------------------------------------------------------------------------------------------------

def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def ratio(direct, endpoint, higher_is_better):
    if not direct or not endpoint or not direct["median"] or not endpoint["median"]:
        return None
    if higher_is_better:
        return endpoint["median"] / direct["median"]
    return direct["median"] / endpoint["median"]


def num(value):
    if value is None:
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000 or float(value).is_integer():
        return "%.0f" % value
    if magnitude >= 100:
        return "%.1f" % value
    if magnitude >= 10:
        return "%.2f" % value
    return "%.3f" % value


def cell(stats):
    if stats is None:
        return "n/a"
    return "%s (%s-%s)" % (num(stats["median"]), num(stats["min"]), num(stats["max"]))


def metrics(pairs, stream):
    """{name: {"direct", "endpoint", "ratio", "unit"}} from the (direct, endpoint) samples."""
    scale = {"ms": 1000.0, "tok/s": 1.0, "": 1.0}
    spec = []
    if stream:
        spec.append(("ttft_ms", "TTFT (ms)", "ttft", "ms", False))
    else:
        spec.append(("latency_ms", "latency (ms)", "latency", "ms", False))
    spec.append(("tokens_per_s", "tokens/s", "tok_s", "tok/s", True))
    out = {}
    for name, label, key, unit, higher in spec:
        sides = {}
        for index, side in enumerate(("direct", "endpoint")):
            values = [p[index].get(key) for p in pairs]
            sides[side] = summary([v * scale[unit] if v is not None else None for v in values])
        out[name] = dict(sides, label=label, ratio=ratio(sides["direct"], sides["endpoint"], higher))
    tokens = {side: summary([p[i].get("tokens") for p in pairs]) for i, side in enumerate(("direct", "endpoint"))}
    out["tokens"] = dict(tokens, label="generated tokens", ratio=None)
    return out


def same_work(pairs, label):
    """Warnings when the two paths did not do the same work."""
    warnings = []
    differing = sum(1 for d, e in pairs if d.get("text") != e.get("text"))
    if differing:
        warnings.append("%s: the direct and endpoint texts differ in %d of %d pairs (temperature 0, same seed)"
                        % (label, differing, len(pairs)))
    prompt = {(d.get("prompt_tokens"), e.get("prompt_tokens")) for d, e in pairs}
    prompt = {p for p in prompt if None not in p and p[0] != p[1]}
    if prompt:
        warnings.append("%s: prompt tokens differ (direct, endpoint): %s; is --template the endpoint's "
                        "EDGE_LLAMA_CHAT_TEMPLATE?" % (label, ", ".join("%d vs %d" % p for p in sorted(prompt))))
    tokens = {(d.get("tokens"), e.get("tokens")) for d, e in pairs if d.get("tokens") != e.get("tokens")}
    if tokens:
        warnings.append("%s: generated tokens differ (direct, endpoint): %s" % (
            label, ", ".join("%s vs %s" % p for p in sorted(tokens, key=str))))
    return warnings


def print_table(results):
    width = 34
    print("%-22s %-*s %-*s %s" % ("", width, "direct llama.cpp", width, "endpoint", "ratio (goal >= %.2f)" % GOAL))
    for mode, title in (("streaming", "streaming"), ("non_streaming", "non-streaming (TTFT not observable)")):
        print(title)
        for name, row in results[mode].items():
            if not isinstance(row, dict) or "label" not in row:
                continue
            if name == "tokens":
                print("  %-20s %-*s %s" % (row["label"], width, cell(row["direct"]), cell(row["endpoint"])))
                continue
            mark = "" if row["ratio"] is None else ("ok" if row["ratio"] >= GOAL else "BELOW GOAL")
            print("  %-20s %-*s %-*s %s %s" % (row["label"], width, cell(row["direct"]), width, cell(row["endpoint"]),
                                               num(row["ratio"]), mark))
    print("figures: median (min-max) of %d runs each; ratios: direct/endpoint for times, endpoint/direct for "
          "tokens/s (1.0 = no overhead)" % results["runs"])
    counted = {side: sorted(set(results["streaming"]["counted_from"][side])
                            | set(results["non_streaming"]["counted_from"][side])) for side in ("direct", "endpoint")}
    print("generated tokens counted from: %s" % "; ".join(
        "%s %s" % (side, "/".join(sources)) for side, sources in counted.items()))


# --- main --------------------------------------------------------------------------------------------------------

def progress(text):
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()


def bench(opts):
    api = opts.api.rstrip("/")
    llama = opts.llama.rstrip("/")
    root = api[:-3] if api.endswith("/v1") else api
    headers = {"Authorization": "Bearer " + opts.api_key} if opts.api_key else {}
    timeout = httpx.Timeout(opts.timeout, connect=5.0)
    endpoint_http, direct_http = http_client(timeout), http_client(timeout)

    backend = endpoint_health(endpoint_http, root)
    flavour, llama_model = detect_llama(direct_http, llama)
    model = opts.model or endpoint_model(endpoint_http, api, headers)
    if backend not in ("completion", "native"):
        backend = "native" if flavour == "current" else "completion"
    if backend == "native" and flavour == "2023":
        raise Failure("the endpoint forwards to llama.cpp's /v1 API (native mode) but %s is the 2023 server "
                      "without one: is --llama the endpoint's EDGE_LLAMA_LLAMA_URL?" % llama)

    messages = ([{"role": "system", "content": opts.system}] if opts.system else [])
    messages.append({"role": "user", "content": opts.prompt})
    app_path = template = None
    if backend == "completion":
        app_path, app = load_app(opts.app)
        template = opts.template
        if template not in app.DEFAULT_STOPS:
            raise Failure("--template %s: %s knows %s" % (template, app_path, ", ".join(sorted(app.DEFAULT_STOPS))))
        prompt = app.render(template, messages)

    def endpoint_body(stream):
        body = {"model": model, "messages": messages, "max_tokens": opts.max_tokens, "temperature": 0.0,
                "seed": opts.seed, "stream": stream, "cache_prompt": True}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def direct_body(stream):
        if backend == "native":  # what the endpoint forwards: the body as it came
            return endpoint_body(stream)
        # what the endpoint itself builds for this request (its own completion_payload)
        return app.completion_payload(endpoint_body(stream), prompt, app.DEFAULT_STOPS[template], stream)

    direct_target = ("llama.cpp's server", llama + ("/v1/chat/completions" if backend == "native" else "/completion"),
                     {}, "openai" if backend == "native" else "completion")
    endpoint_target = ("the OpenAI endpoint", api + "/chat/completions", headers, "openai")
    if opts.client == "openai":
        import openai

        sdk = openai.OpenAI(base_url=api, api_key=opts.api_key or "none", max_retries=0, timeout=timeout,
                            http_client=http_client(timeout))

        def via_endpoint(stream):
            return run_sdk(sdk, endpoint_body(stream), stream)
    else:
        def via_endpoint(stream):
            return run_httpx(endpoint_http, endpoint_target, endpoint_body(stream), stream)

    def via_direct(stream):
        return run_httpx(direct_http, direct_target, direct_body(stream), stream)

    print("OpenAI endpoint overhead: %s (backend %s, model %s, client %s)" % (api, backend, model, opts.client))
    print("llama.cpp: %s (%s server%s), direct path POST %s%s" % (
        llama, flavour, ", model %s" % llama_model if llama_model else "", direct_target[1][len(llama):],
        ", template %s from %s" % (template, app_path) if template else ""))
    print("max_tokens %d, temperature 0, seed %d, %d runs + 1 warm-up each, direct and endpoint in turns"
          % (opts.max_tokens, opts.seed, opts.runs), flush=True)

    results = {"api": api, "llama": llama, "llama_flavour": flavour, "backend": backend,
               "direct_path": direct_target[1][len(llama):], "template": template,
               "app": str(app_path) if app_path else None, "model": model, "llama_model": llama_model,
               "client": opts.client, "runs": opts.runs, "warmup": 1, "max_tokens": opts.max_tokens,
               "seed": opts.seed, "prompt": opts.prompt, "system": opts.system, "goal": GOAL}
    warnings = []
    for mode, stream in (("streaming", True), ("non_streaming", False)):
        pairs = []
        for run in range(opts.runs + 1):
            progress("%s: %s" % (mode, "warm-up" if run == 0 else "run %d/%d" % (run, opts.runs)))
            direct = via_direct(stream)
            endpoint = via_endpoint(stream)
            if run:
                pairs.append((direct, endpoint))
        progress("")
        results[mode] = metrics(pairs, stream)
        results[mode]["counted_from"] = {side: sorted({p[i]["counted"] for p in pairs})
                                         for i, side in enumerate(("direct", "endpoint"))}
        results[mode]["prompt_tokens"] = {"direct": pairs[0][0].get("prompt_tokens"),
                                          "endpoint": pairs[0][1].get("prompt_tokens")}
        if stream and any(s.get("ttft") is None for pair in pairs for s in pair):
            warnings.append("streaming: some runs produced no content")
        warnings += same_work(pairs, mode)
    results["warnings"] = warnings
    results["below_goal"] = [
        "%s.%s" % (mode, name) for mode in ("streaming", "non_streaming") for name, row in results[mode].items()
        if isinstance(row, dict) and row.get("ratio") is not None and row["ratio"] < GOAL]
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8081/v1",
                        help="the OpenAI endpoint's base URL (default http://127.0.0.1:8081/v1)")
    parser.add_argument("--llama", default=os.environ.get("EDGE_LLAMA_LLAMA_URL") or "http://127.0.0.1:8080",
                        help="llama.cpp's server (default: $EDGE_LLAMA_LLAMA_URL, else http://127.0.0.1:8080)")
    parser.add_argument("--api-key", default=os.environ.get("EDGE_LLAMA_API_KEY", ""),
                        help="the endpoint's API key (default: $EDGE_LLAMA_API_KEY)")
    parser.add_argument("--runs", type=int, default=5, help="counted runs of each path and mode (default 5)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens to generate (default 128)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the user message (default: %(default)r)")
    parser.add_argument("--system", default=DEFAULT_SYSTEM,
                        help="the system message, empty for none (default: %(default)r)")
    parser.add_argument("--template", default=os.environ.get("EDGE_LLAMA_CHAT_TEMPLATE", "llama2"),
                        help="completion mode: the endpoint's prompt template, llama2 or chatml "
                             "(default: $EDGE_LLAMA_CHAT_TEMPLATE, else llama2)")
    parser.add_argument("--app", default=None,
                        help="openai_api.py to take the template code from (default: the repository's "
                             "roles/services/files/openai_api.py, else %s)" % APPLIANCE_APP)
    parser.add_argument("--model", default=None, help="model id to send (default: the endpoint's /v1/models)")
    parser.add_argument("--seed", type=int, default=1234, help="sampling seed sent on both paths (default 1234)")
    parser.add_argument("--client", choices=("httpx", "openai"), default="httpx",
                        help="client for the endpoint path: httpx, like the direct path (default), or the "
                             "official openai SDK, as applications use it (adds its parsing to the endpoint side)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per request (default 600)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object (last line)")
    opts = parser.parse_args(argv)
    if opts.runs < 1 or opts.max_tokens < 1:
        parser.error("--runs and --max-tokens must be at least 1")
    try:
        results = bench(opts)
    except Failure as exc:
        progress("")
        print("openai_overhead: %s" % exc, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        progress("")
        return 130
    print()
    print_table(results)
    for warning in results["warnings"]:
        print("warning: %s" % warning)
    if opts.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.run_recorded('openai_overhead', 'What the OpenAI endpoint costs', main))
