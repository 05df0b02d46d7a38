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


# llama.cpp's /metrics with --metrics (names as tools/server/server.cpp prints them) and the 501 it answers
# without; the node exporter's page. The endpoint passes both through behind its key.
LLAMA_METRICS = ("# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
                 "# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 12\n"
                 "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.\n"
                 "# TYPE llamacpp:tokens_predicted_total counter\nllamacpp:tokens_predicted_total 34\n")
NODE_METRICS = ("# HELP edge_llama_gpu_query_success Whether nvidia-smi answered the last query\n"
                "# TYPE edge_llama_gpu_query_success gauge\nedge_llama_gpu_query_success 0\n")


def exporters(llama_status=200):
    asked = []

    def answer(request):
        asked.append(str(request.url))
        if request.url.port == 9100:
            return httpx.Response(200, text=NODE_METRICS, headers={"content-type": "text/plain; version=0.0.4"})
        if request.url.path == "/metrics" and llama_status == 200:
            return httpx.Response(200, text=LLAMA_METRICS, headers={"content-type": "text/plain; version=0.0.4"})
        return httpx.Response(llama_status, json={"error": {"code": 501, "message": "This server does not "
                                                            "support metrics endpoint."}})
    return answer, asked


def test_llama_cpp_and_node_exporter_metrics_pass_through_behind_the_key():
    answer, asked = exporters()
    settings = api.Settings({"EDGE_LLAMA_LLAMA_URL": "http://127.0.0.1:8080", "EDGE_LLAMA_API_KEY": "k-123",
                             "EDGE_LLAMA_NODE_METRICS_URL": "http://127.0.0.1:9100/metrics"})
    app = api.create_app(settings, transport=httpx.MockTransport(answer))
    with TestClient(app, base_url="http://testserver") as http:
        assert http.get("/metrics/llama").status_code == 401
        assert http.get("/metrics/node").status_code == 401
        assert asked == []  # nothing is fetched for a client without the key
        key = {"Authorization": "Bearer k-123"}
        llama = http.get("/metrics/llama", headers=key)
        node = http.get("/metrics/node", headers=key)
        after = scrape(http, **key)
    assert llama.status_code == 200 and samples(llama.text)[("llamacpp:tokens_predicted_total", frozenset())] == 34
    assert node.status_code == 200 and samples(node.text)[("edge_llama_gpu_query_success", frozenset())] == 0
    assert asked == ["http://127.0.0.1:8080/metrics", "http://127.0.0.1:9100/metrics"]
    assert value(after, "edge_llama_openai_requests_total", route="/metrics/llama", status="200") == 1
    assert value(after, "edge_llama_openai_requests_total", route="/metrics/node", status="401") == 1


def test_a_build_without_metrics_and_a_host_without_node_exporter_say_so():
    answer, _asked = exporters(llama_status=501)
    settings = api.Settings({"EDGE_LLAMA_LLAMA_URL": "http://127.0.0.1:8080"})
    app = api.create_app(settings, transport=httpx.MockTransport(answer))
    with TestClient(app, base_url="http://testserver") as http:
        llama = http.get("/metrics/llama")
        node = http.get("/metrics/node")
    assert llama.status_code == 404 and "b2258" in llama.json()["error"]["message"]
    assert node.status_code == 404 and "metrics_node_exporter" in node.json()["error"]["message"]
    assert llama.json()["error"]["code"] == node.json()["error"]["code"] == "metrics_not_served"


def test_an_exporter_that_does_not_answer_is_a_503_not_a_stack_trace():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    settings = api.Settings({"EDGE_LLAMA_LLAMA_URL": "http://127.0.0.1:9",
                             "EDGE_LLAMA_NODE_METRICS_URL": "http://127.0.0.1:9/metrics"})
    app = api.create_app(settings, transport=httpx.MockTransport(refuse))
    with TestClient(app, base_url="http://testserver") as http:
        reply = http.get("/metrics/node")
    assert reply.status_code == 503
    assert reply.json()["error"]["message"] == ("the node exporter did not answer at http://127.0.0.1:9/metrics "
                                                "(ConnectError)")
