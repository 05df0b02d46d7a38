"""A user of the appliance's OpenAI endpoint with the official `openai` SDK; prints one JSON object.

Usage: openai_sdk.py CHECK --base-url http://HOST:8081/v1     (the key, if any, in OPENAI_API_KEY)

CHECK is one of:
  chat          chat.completions.create, not streamed
  stream        chat.completions.create(stream=True) with the sync client
  async_stream  the same with AsyncOpenAI
  completions   the legacy completions API (client.completions.create)
  models        models.list()
  bad_request   a request the endpoint must refuse (temperature "hot"): the SDK's error
  all           the six above, one after the other: {"chat": {...}, "stream": {...}, ...}
  backend_down  waits for a line on stdin, then asks until the endpoint answers with an error status
                (at most --within seconds); prints what it answered and when
"status" is the HTTP status the SDK saw (200, or the status of the APIStatusError it raised, with the
SDK's exception class and the JSON body the endpoint sent).

run by tests/molecule/shared/test_clients.py on the test controller, in the test host's network
namespace (the endpoint on its 127.0.0.1) or from outside it (the LAN).
"""

import argparse
import asyncio
import json
import os
import sys
import time

import openai

QUESTION = [{"role": "system", "content": "You are a helpful AI assistant."},
            {"role": "user", "content": "What is the capital of France?"}]
COUNT = [{"role": "user", "content": "Count from one to ten."}]


def client(args, **kwargs):
    kwargs.setdefault("max_retries", 0)  # an error must show as it is, not be retried away
    return openai.OpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY") or "unused",
                         timeout=args.timeout, **kwargs)


def status_error(exc):
    """What an APIStatusError tells a user: the status, the SDK's class and the JSON body as sent."""
    try:
        sent = exc.response.json()
    except ValueError:
        sent = exc.response.text[:500]
    return {"status": exc.status_code, "exception": type(exc).__name__, "body": exc.body, "response": sent}


def chat(args):
    r = client(args).chat.completions.create(model="llama_2", temperature=0, max_tokens=32, messages=QUESTION)
    choice = r.choices[0]
    return {"object": r.object, "model": r.model, "role": choice.message.role, "content": choice.message.content,
            "finish_reason": choice.finish_reason,
            "usage": r.usage.model_dump() if r.usage is not None else None}


def summarize_chunks(chunks):
    parts, finish, roles = [], None, []
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return {"chunks": len(chunks), "content_chunks": len(parts), "text": "".join(parts),
            "finish_reason": finish, "roles": sorted(set(roles))}


def stream(args):
    chunks = list(client(args).chat.completions.create(
        model="llama_2", temperature=0, max_tokens=32, stream=True, messages=COUNT))
    return summarize_chunks(chunks)


def async_stream(args):
    async def go():
        async with openai.AsyncOpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY") or "unused",
                                      timeout=args.timeout, max_retries=0) as aclient:
            response = await aclient.chat.completions.create(
                model="llama_2", temperature=0, max_tokens=32, stream=True, messages=COUNT)
            return [chunk async for chunk in response]

    return summarize_chunks(asyncio.run(go()))


def completions(args):
    r = client(args).completions.create(model="llama_2", prompt="The capital of France is", max_tokens=16,
                                        temperature=0)
    return {"object": r.object, "text": r.choices[0].text, "finish_reason": r.choices[0].finish_reason,
            "usage": r.usage.model_dump() if r.usage is not None else None}


def models(args):
    return {"ids": [m.id for m in client(args).models.list()]}


def bad_request(args):
    try:
        r = client(args).chat.completions.create(model="llama_2", temperature="hot", max_tokens=8, messages=QUESTION)
    except openai.APIStatusError as exc:
        return status_error(exc)
    return {"status": 200, "content": r.choices[0].message.content}


def backend_down(args):
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    sdk, started, answered = client(args), time.monotonic(), 0
    last = None
    while time.monotonic() - started < args.within:
        try:
            sdk.chat.completions.create(model="llama_2", temperature=0, max_tokens=4, messages=QUESTION)
            answered += 1  # the server had not died yet
        except openai.APIStatusError as exc:
            return dict(status_error(exc), after_s=round(time.monotonic() - started, 2), answered_before=answered)
        except openai.APIConnectionError as exc:  # the endpoint itself not reachable: that is a failure too
            last = "%s: %s" % (type(exc).__name__, exc)
        time.sleep(0.1)
    return {"status": None, "answered_before": answered, "last_error": last, "after_s": args.within}


CHECKS = {f.__name__: f for f in (chat, stream, async_stream, completions, models, bad_request, backend_down)}
# `all`: these one after the other in one process (one interpreter start instead of six).
ALL = ("chat", "stream", "async_stream", "completions", "models", "bad_request")


def run_check(name, args):
    started = time.monotonic()
    try:
        result = dict({"status": 200}, **CHECKS[name](args))
    except openai.APIStatusError as exc:  # e.g. 401 without the key: the test decides whether that is right
        result = status_error(exc)
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def run_all(args):
    results = {}
    for name in ALL:
        try:
            results[name] = run_check(name, args)
        except Exception as exc:  # one broken check must not hide the others' results
            results[name] = {"status": None, "exception": type(exc).__name__, "error": str(exc)[:2000]}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=sorted(CHECKS) + ["all"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--within", type=float, default=5, help="backend_down: give up after this many seconds")
    args = parser.parse_args()
    result = run_all(args) if args.check == "all" else run_check(args.check, args)
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
