"""module_utils/edge_llama_hub.py: what hf_model and gguf_info share about the hub, against a real HTTP
server with the hub's resolve layout (tests/unit/hubserver.py)."""

import pytest

from ansible.module_utils import edge_llama_hub as hub
from hubserver import Hub

REPO = "TheBloke/Llama-2-70B-chat-GGUF"
NAME = "llama-2-70b-chat.Q6_K.gguf"


@pytest.mark.parametrize("value,environ,expected", [
    ("http://mirror:8090/", {"HF_ENDPOINT": "http://other"}, "http://mirror:8090"),  # the module's own wins
    (None, {"HF_ENDPOINT": "http://mirror:8090/"}, "http://mirror:8090"),  # then HF_ENDPOINT
    ("", {}, "https://huggingface.co"),  # then the hub
])
def test_endpoint_precedence(value, environ, expected):
    assert hub.endpoint(value, environ) == expected


def test_file_url_quotes_what_the_hub_quotes():
    assert hub.file_url("http://h/", REPO, "refs/pr/1", "sub dir/a b.gguf") == \
        "http://h/%s/resolve/refs%%2Fpr%%2F1/sub%%20dir/a%%20b.gguf" % REPO


def test_split_names_are_thebloke_letters():
    assert hub.split_names(NAME, 3) == [NAME + "-split-a", NAME + "-split-b", NAME + "-split-c"]
    assert len(hub.split_names(NAME)) == hub.MAX_PARTS == 26


def test_open_file_finds_the_parts_and_sizes_them():
    files = {(REPO, NAME + "-split-a"): b"GGUF" + b"a" * 96, (REPO, NAME + "-split-b"): b"b" * 50}
    with Hub(files) as server:
        response, url, parts = hub.open_file(server.url, REPO, "main", NAME, token="hf_t")
        assert response.read(4) == b"GGUF"
        response.close()
        assert url.endswith("/" + NAME + "-split-a") and parts == [NAME + "-split-a", NAME + "-split-b"]
        assert hub.sizes_of(server.url, REPO, "main", parts, token="hf_t") == [100, 50]


def test_open_file_says_what_is_missing_without_the_token():
    with Hub({}) as server:
        with pytest.raises(hub.HubError) as caught:
            hub.open_file(server.url, REPO, "main", NAME, token="hf_sekrit")
    message = str(caught.value)
    assert "HTTP 404" in message and NAME in message and "no %s-split-a either" % NAME in message
    assert "hf_sekrit" not in message


def test_unreachable_hub_names_the_endpoint():
    with Hub({}) as server:
        url = server.url
    with pytest.raises(hub.HubError) as caught:
        hub.open_file(url, REPO, "main", NAME, timeout=5)
    assert "cannot reach %s" % url in str(caught.value) and "HF_ENDPOINT" in str(caught.value)


def test_scrub_hides_the_token():
    assert hub.scrub("401 for Bearer hf_abc", "hf_abc") == "401 for Bearer ***"
    assert hub.scrub("nothing", None) == "nothing"
