"""The OpenAI-compatible endpoint, driven by the official `openai` SDK over real HTTP.

The backend is tests/unit/fake_llama.py, which replays llama.cpp's wire formats (2023 /completion
SSE, current /v1) and records what the endpoint sent; molecule runs the real llama.cpp.
RECORDED_* below are bytes captured from the real tutorial server, so the parser is also checked
against the exact format.
"""

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
import httpx  # noqa: E402

from fake_llama import FakeLlama  # noqa: E402
from services_apps import RunningAPI, load  # noqa: E402

api = load("openai_api")


@pytest.fixture
def llama():
    fake = FakeLlama()
    yield fake
    fake.close()


def endpoint(llama_url, **env):
    base = {"EDGE_LLAMA_LLAMA_URL": llama_url, "EDGE_LLAMA_BACKEND_MODE": "completion",
            "EDGE_LLAMA_CHAT_TEMPLATE": "llama2", "EDGE_LLAMA_MODEL_ALIAS": "llama_2"}
    base.update(env)
    return RunningAPI(base)


@pytest.fixture
def server(llama):
    running = endpoint(llama.url)
    yield running
    running.close()


def client(server, key="unused"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


MESSAGES = [{"role": "system", "content": "You are a helpful AI assistant."},
            {"role": "user", "content": "What is the capital of France?"}]


def test_chat_without_streaming(server, llama):
    reply = client(server).chat.completions.create(model="llama_2", messages=MESSAGES, temperature=0)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "Paris is the capital."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 5 and reply.usage.prompt_tokens == 11


def test_chat_streams_to_the_current_sdk(server):
    stream = client(server).chat.completions.create(model="llama_2", messages=MESSAGES, stream=True)
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["Paris", " is", " the", " capital", "."]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sse_events_are_separated_by_blank_lines_and_end_with_done(server):
    body = {"model": "llama_2", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as reply:
        raw = reply.read().decode()
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


def test_async_client_streams(server):
    import asyncio

    async def run():
        aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        stream = await aclient.chat.completions.create(model="llama_2", messages=MESSAGES, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run()) == "Paris is the capital."


def test_llama2_prompt_for_system_and_several_turns(server, llama):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Capital of France?"}]
    # Meta's format, <s>/</s> written out ...
    assert api.render_llama2(api.validate_messages(messages)) == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Capital of France? [/INST]")
    # ... and on the wire: BOS/EOS as token ids (llama.cpp at e519621 does not parse "<s>" in text),
    # the first BOS added by the server itself.
    client(server).chat.completions.create(model="llama_2", messages=messages)
    assert llama.requests[-1][1]["prompt"] == [
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! ", 2, 1, "[INST] Capital of France? [/INST]"]


def test_llama2_single_turn_is_a_plain_string(server, llama):
    client(server).chat.completions.create(model="llama_2", messages=MESSAGES)
    assert llama.requests[-1][1]["prompt"] == (
        "[INST] <<SYS>>\nYou are a helpful AI assistant.\n<</SYS>>\n\nWhat is the capital of France? [/INST]")


def test_llama2_without_system_prompt_and_user_text_that_looks_like_tokens():
    messages = api.validate_messages([{"role": "user", "content": "say </s><s> "},
                                      {"role": "assistant", "content": " ok "},
                                      {"role": "user", "content": "again"}])
    # User text stays text: only the template's own markers become token ids.
    assert api.llama2_prompt(messages) == ["[INST] say </s><s> [/INST] ok ", 2, 1, "[INST] again [/INST]"]


def test_chatml_template(llama):
    running = endpoint(llama.url, EDGE_LLAMA_CHAT_TEMPLATE="chatml")
    try:
        client(running).chat.completions.create(model="llama_2", messages=MESSAGES)
    finally:
        running.close()
    sent = llama.requests[-1][1]
    assert sent["prompt"] == ("<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n"
                              "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_end|>" in sent["stop"]


def test_sampling_parameters_are_forwarded(server, llama):
    reply = client(server).chat.completions.create(model="llama_2", messages=MESSAGES, max_tokens=2,
                                                   temperature=0.3, top_p=0.9, stop=["\n"], seed=7)
    sent = llama.requests[-1][1]
    assert sent["n_predict"] == 2
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9 and sent["seed"] == 7
    assert sent["stop"][0] == "\n" and "[INST]" in sent["stop"]
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "Paris is"


def test_completions_endpoint(server, llama):
    reply = client(server).completions.create(model="llama_2", prompt="The capital of France is", max_tokens=3)
    assert reply.choices[0].text == "Paris is the"
    assert llama.requests[-1][1]["prompt"] == "The capital of France is"
    assert llama.requests[-1][1]["stop"] == []
    stream = client(server).completions.create(model="llama_2", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in stream) == "Paris is the capital."


def test_unprefixed_paths_of_the_tutorial(server):
    reply = httpx.post(server.url + "/chat/completions", json={"messages": MESSAGES})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "Paris is the capital."


def test_models_lists_the_alias(server):
    assert [m.id for m in client(server).models.list()] == ["llama_2"]


def test_backend_down_is_503_json(llama):
    llama.close()
    running = endpoint(llama.url)
    try:
        with pytest.raises(openai.APIStatusError) as err:
            client(running).chat.completions.create(model="llama_2", messages=MESSAGES)
        assert err.value.status_code == 503
        assert err.value.body["code"] == "backend_unavailable"
        health = httpx.get(running.url + "/health")
        assert health.status_code == 503
        assert health.json()["error"]["type"] == "server_error"
    finally:
        running.close()


def test_health_uses_model_json_on_the_2023_server(server):
    reply = httpx.get(server.url + "/health")
    assert reply.status_code == 200 and reply.json()["status"] == "ok"


@pytest.mark.parametrize("body,needle", [
    (b"not json", "must be JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"messages": []}).encode(), "non-empty"),
    (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), "role"),
    (json.dumps({"messages": MESSAGES, "temperature": "hot"}).encode(), "temperature"),
    (json.dumps({"messages": MESSAGES, "stop": 5}).encode(), "stop"),
])
@pytest.mark.parametrize("era", ["2023", "current"])
def test_bad_requests_are_400_with_an_openai_error(body, needle, era):
    """The same 400 whichever llama.cpp is behind (translated or native), so an upgrade changes nothing."""
    fake = FakeLlama(era=era)
    running = endpoint(fake.url, EDGE_LLAMA_BACKEND_MODE="completion" if era == "2023" else "native")
    try:
        reply = httpx.post(running.url + "/v1/chat/completions", content=body,
                           headers={"Content-Type": "application/json"})
    finally:
        running.close()
        fake.close()
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]
    assert "Traceback" not in reply.text
    assert not [path for path, _ in fake.requests if path != "/health"]  # refused before llama.cpp saw it


def test_api_key_is_required_when_set(llama):
    running = endpoint(llama.url, EDGE_LLAMA_API_KEY="s3cret-key")
    try:
        with pytest.raises(openai.AuthenticationError) as err:
            client(running, key="wrong").models.list()
        assert err.value.status_code == 401
        assert "s3cret-key" not in json.dumps(err.value.body)
        assert [m.id for m in client(running, key="s3cret-key").models.list()] == ["llama_2"]
        assert httpx.get(running.url + "/health").status_code == 200  # probes need no key
    finally:
        running.close()


def test_native_mode_forwards_and_streams(tmp_path):
    fake = FakeLlama(era="current")
    running = endpoint(fake.url, EDGE_LLAMA_BACKEND_MODE="native")
    try:
        stream = client(running).chat.completions.create(model="llama_2", messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Paris is the capital."
        assert fake.requests[-1] == ("/v1/chat/completions", {"model": "llama_2", "messages": MESSAGES,
                                                              "stream": True})
        reply = client(running).chat.completions.create(model="llama_2", messages=MESSAGES)
        assert reply.choices[0].message.content == "Paris is the capital."
        assert httpx.get(running.url + "/health").status_code == 200
    finally:
        running.close()
        fake.close()


def test_bad_settings_are_refused():
    with pytest.raises(SystemExit, match="EDGE_LLAMA_BACKEND_MODE"):
        api.Settings({"EDGE_LLAMA_BACKEND_MODE": "magic"})
    with pytest.raises(SystemExit, match="EDGE_LLAMA_CHAT_TEMPLATE"):
        api.Settings({"EDGE_LLAMA_CHAT_TEMPLATE": "alpaca"})


# Captured from llama.cpp's server built at the tutorial's commit e519621 (examples/server/server.cpp:
# format_partial_response / format_final_response, each event "data: " + json + "\n\n", no [DONE];
# built from the byte-identical copy vendored in llama-cpp-python 0.2.7 with `make server`), running the
# 2-layer test model of module_utils/tiny_gguf.py (hence the noise), for
# {"prompt": "[INST] What is the capital of France? [/INST]", "n_predict": 4, "stream": true,
#  "temperature": 0, "stop": ["</s>", "[INST]"], "seed": 7}.
RECORDED_E519621_STREAM = (
    b'data: {"content":"was","stop":false}\n\ndata: {"content":" than","stop":false}\n\n'
    b'data: {"content":"9","stop":false}\n\ndata: {"content":"v","stop":false}\n\n'
    b'data: {"content":"","generation_settings":{"frequency_penalty":0.0,"grammar":"","ignore_eos":false,'
    b'"logit_bias":[],"mirostat":0,"mirostat_eta":0.10000000149011612,"mirostat_tau":5.0,"model":"llama_2",'
    b'"n_ctx":512,"n_keep":0,"n_predict":4,"n_probs":0,"penalize_nl":true,"presence_penalty":0.0,'
    b'"repeat_last_n":64,"repeat_penalty":1.100000023841858,"seed":7,"stop":["</s>","[INST]"],"stream":true,'
    b'"temp":0.0,"tfs_z":1.0,"top_k":40,"top_p":0.949999988079071,"typical_p":1.0},"model":"llama_2",'
    b'"prompt":"[INST] What is the capital of France? [/INST]","stop":true,"stopped_eos":false,'
    b'"stopped_limit":true,"stopped_word":false,"stopping_word":"","timings":{"predicted_ms":247.213,'
    b'"predicted_n":3,"predicted_per_second":12.135284147678316,"predicted_per_token_ms":82.40433333333333,'
    b'"prompt_ms":164.873,"prompt_n":29,"prompt_per_second":175.89296003590644,'
    b'"prompt_per_token_ms":5.685275862068965},"tokens_cached":40,"tokens_evaluated":37,"tokens_predicted":4,'
    b'"truncated":false}\n\n'
)
# The same server, same request without "stream" (JSON, trimmed to the fields the endpoint reads).
RECORDED_E519621_JSON = (
    b'{"content":"was than9v","model":"llama_2","stop":true,"stopped_eos":false,"stopped_limit":true,'
    b'"stopped_word":false,"stopping_word":"","tokens_evaluated":37,"tokens_predicted":4,"truncated":false}'
)


@pytest.fixture
def recorded():
    """The endpoint in-process (Starlette's TestClient, an httpx.Client the SDK accepts), its backend an
    httpx.MockTransport that answers /completion with the recorded bytes."""
    from starlette.testclient import TestClient

    sent = []

    def handler(request):
        body = json.loads(request.content)
        sent.append((request.url.path, body))
        if request.url.path != "/completion":
            return httpx.Response(404)
        if body.get("stream"):
            return httpx.Response(200, content=RECORDED_E519621_STREAM, headers={"Content-Type": "text/event-stream"})
        return httpx.Response(200, content=RECORDED_E519621_JSON, headers={"Content-Type": "application/json"})

    settings = api.Settings({"EDGE_LLAMA_LLAMA_URL": "http://llama.invalid:8080"})
    app = api.create_app(settings, transport=httpx.MockTransport(handler))
    with TestClient(app, base_url="http://testserver") as http:
        sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=http)
        yield sdk, http, sent


def test_recorded_2023_stream_reaches_the_sdk(recorded):
    sdk, _http, sent = recorded
    chunks = list(sdk.chat.completions.create(model="llama_2", messages=MESSAGES, stream=True, max_tokens=4,
                                              temperature=0, stop="</s>", seed=7))
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["was", " than", "9", "v"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert sent[-1][1]["stop"] == ["</s>", "[INST]"]  # a string stop becomes the list llama.cpp wants
    assert sent[-1][1]["n_predict"] == 4 and sent[-1][1]["seed"] == 7 and sent[-1][1]["stream"] is True


def test_recorded_2023_stream_with_usage(recorded):
    sdk, _http, _sent = recorded
    chunks = list(sdk.chat.completions.create(model="llama_2", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 37


def test_recorded_2023_json_reaches_the_sdk(recorded):
    sdk, _http, _sent = recorded
    reply = sdk.chat.completions.create(model="llama_2", messages=MESSAGES)
    assert reply.choices[0].message.content == "was than9v"
    assert reply.choices[0].finish_reason == "length"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (37, 4, 41)
    text = sdk.completions.create(model="llama_2", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in text) == "was than9v"


@pytest.mark.parametrize("path,method,status", [("/v1/nothing", "GET", 404), ("/v1/chat/completions", "GET", 405)])
def test_unknown_routes_answer_openai_errors(recorded, path, method, status):
    _sdk, http, _sent = recorded
    reply = http.request(method, path)
    assert reply.status_code == status
    assert set(reply.json()["error"]) >= {"message", "type", "code"}


def test_only_one_choice(recorded):
    _sdk, http, _sent = recorded
    reply = http.post("/v1/chat/completions", json={"messages": MESSAGES, "n": 2})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "n"


def test_one_log_line_per_request_without_prompt_or_key(caplog):
    from starlette.testclient import TestClient

    def handler(request):
        return httpx.Response(200, content=RECORDED_E519621_JSON, headers={"Content-Type": "application/json"})

    settings = api.Settings({"EDGE_LLAMA_API_KEY": "s3cret-key"})
    app = api.create_app(settings, transport=httpx.MockTransport(handler))
    caplog.set_level("INFO", logger="edge-llama-openai")
    with TestClient(app) as http:
        ok = http.post("/v1/chat/completions", json={"messages": MESSAGES},
                       headers={"Authorization": "Bearer s3cret-key"})
        denied = http.post("/v1/chat/completions", json={"messages": MESSAGES},
                           headers={"Authorization": "Bearer wrong"})
    assert (ok.status_code, denied.status_code) == (200, 401)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge-llama-openai"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /v1/chat/completions 200") and lines[1].startswith("POST /v1/chat/completions 401")
    assert not any("capital" in line or "s3cret" in line or "wrong" in line for line in lines)


def test_an_unexpected_error_is_a_500_json_without_a_stack_trace(caplog):
    from starlette.testclient import TestClient

    def handler(request):
        raise RuntimeError("something nobody expected")

    app = api.create_app(api.Settings({}), transport=httpx.MockTransport(handler))
    caplog.set_level("INFO", logger="edge-llama-openai")
    with TestClient(app) as http:
        reply = http.post("/v1/chat/completions", json={"messages": MESSAGES})
    assert reply.status_code == 500
    assert reply.json()["error"]["type"] == "server_error"
    assert "Traceback" not in reply.text and "nobody expected" not in reply.text
    assert "POST /v1/chat/completions 500" in caplog.text  # the traceback goes to the journal only
    assert "RuntimeError" in caplog.text
