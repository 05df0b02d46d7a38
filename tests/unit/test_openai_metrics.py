"""The OpenAI endpoint's /metrics, read with prometheus-client's own parser after real requests.

The 2023 server's bytes are those captured from the tutorial's e519621 (test_openai_api.RECORDED_*), the
current server's are tests/unit/fake_llama.py's; molecule scrapes the real endpoint in front of llama.cpp.
"""

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from fake_llama import FakeLlama
from services_apps import load
from test_openai_api import MESSAGES, recorded  # noqa: F401 (the fixture: the recorded 2023 server)

api = load("openai_api")


def samples(text):
    """{(name, frozenset(labels)): value} of every sample in a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scrape, name, **labels):
    return scrape.get((name, frozenset(labels.items())))


def scrape(http, **headers):
    reply = http.get("/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return samples(reply.text)


def test_a_streamed_chat_counts_and_observes_the_2023_servers_own_figures(recorded):  # noqa: F811
    sdk, http, _sent = recorded
    before = scrape(http)
    assert value(before, "edge_llama_openai_requests_total", route="/v1/chat/completions", status="200") is None
    assert value(before, "edge_llama_openai_streams_in_flight") == 0
    list(sdk.chat.completions.create(model="llama_2", messages=MESSAGES, stream=True, max_tokens=4))
    after = scrape(http)
    route = "/v1/chat/completions"
    assert value(after, "edge_llama_openai_requests_total", route=route, status="200") == 1
    assert value(after, "edge_llama_openai_time_to_first_token_seconds_count", route=route) == 1
    assert value(after, "edge_llama_openai_time_to_first_token_seconds_sum", route=route) > 0
    # llama.cpp's own figures from the stream's last event: predicted_n 3, predicted_per_second 12.135...
    assert value(after, "edge_llama_openai_completion_tokens_sum", route=route) == 3
    assert value(after, "edge_llama_openai_tokens_per_second_sum", route=route) == pytest.approx(12.1353, abs=1e-3)
    assert value(after, "edge_llama_openai_tokens_per_second_bucket", route=route, le="16.0") == 1
    assert value(after, "edge_llama_openai_tokens_per_second_bucket", route=route, le="12.0") == 0
    assert value(after, "edge_llama_openai_streams_in_flight") == 0
    # the scrape before counts itself too
    assert value(after, "edge_llama_openai_requests_total", route="/metrics", status="200") == 1


def test_an_answer_not_streamed_is_observed_from_what_the_server_reported(recorded):  # noqa: F811
    sdk, http, _sent = recorded
    sdk.completions.create(model="llama_2", prompt="Paris is", max_tokens=4)
    after = scrape(http)
    assert value(after, "edge_llama_openai_requests_total", route="/v1/completions", status="200") == 1
    assert value(after, "edge_llama_openai_completion_tokens_sum", route="/v1/completions") == 4  # tokens_predicted
    # the trimmed recording has no timings: no time to first token is made up
    assert value(after, "edge_llama_openai_time_to_first_token_seconds_count", route="/v1/completions") is None


def test_unknown_paths_are_one_series_and_a_backend_that_is_down_is_counted():
    settings = api.Settings({"EDGE_LLAMA_LLAMA_URL": "http://127.0.0.1:9"})  # nothing listens on port 9

    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    app = api.create_app(settings, transport=httpx.MockTransport(refuse))
    with TestClient(app, base_url="http://testserver") as http:
        for path in ("/a", "/b", "/c/d"):
            assert http.get(path).status_code == 404
        assert http.post("/v1/chat/completions", json={"messages": MESSAGES}).status_code == 503
        after = scrape(http)
    assert value(after, "edge_llama_openai_requests_total", route="other", status="404") == 3
    assert not [k for k in after if dict(k[1]).get("route") in ("/a", "/b", "/c/d")]
    assert value(after, "edge_llama_openai_requests_total", route="/v1/chat/completions", status="503") == 1
    assert value(after, "edge_llama_openai_backend_unavailable_total") == 1


def test_metrics_want_the_api_key_when_one_is_set():
    settings = api.Settings({"EDGE_LLAMA_LLAMA_URL": "http://127.0.0.1:9", "EDGE_LLAMA_API_KEY": "s3cret-key"})
    with TestClient(api.create_app(settings), base_url="http://testserver") as http:
        assert http.get("/metrics").status_code == 401
        scraped = scrape(http, Authorization="Bearer s3cret-key")
    assert value(scraped, "edge_llama_openai_requests_total", route="/metrics", status="401") == 1


def test_a_native_stream_is_observed_as_it_is_relayed():
    """The current server's /v1 stream passes through byte for byte; its text events are read on the side."""
    fake = FakeLlama(era="current")
    settings = api.Settings({"EDGE_LLAMA_LLAMA_URL": fake.url, "EDGE_LLAMA_BACKEND_MODE": "native"})
    try:
        with TestClient(api.create_app(settings), base_url="http://testserver") as http:
            sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="x", max_retries=0, http_client=http)
            text = "".join(c.choices[0].delta.content or "" for c in
                           sdk.chat.completions.create(model="llama_2", messages=MESSAGES, stream=True) if c.choices)
            sdk.chat.completions.create(model="llama_2", messages=MESSAGES)
            after = scrape(http)
    finally:
        fake.close()
    assert text == "Paris is the capital."
    route = "/v1/chat/completions"
    assert value(after, "edge_llama_openai_requests_total", route=route, status="200") == 2
    assert value(after, "edge_llama_openai_time_to_first_token_seconds_count", route=route) == 1
    # five text events (the stream has no usage); the answer that was not streamed says 5 in its usage
    assert value(after, "edge_llama_openai_completion_tokens_sum", route=route) == 10
    assert value(after, "edge_llama_openai_tokens_per_second_count", route=route) == 1
    assert value(after, "edge_llama_openai_streams_in_flight") == 0
