"""The Gradio chat app's logic: history conversion, and streaming through the real stack
(chat app -> official openai SDK -> OpenAI endpoint -> llama.cpp stand-in)."""

import pytest

pytest.importorskip("gradio")
openai = pytest.importorskip("openai")

from fake_llama import FakeLlama  # noqa: E402
from services_apps import RunningAPI, load  # noqa: E402

chat = load("chat_app")


def test_messages_history_becomes_openai_chat_with_system_prompt_first():
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}]
    assert chat.to_oai_chat(history, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"},
    ]


def test_the_apps_own_error_notices_are_not_sent_back_to_the_model():
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": chat.NOTICE.lstrip() + "The model endpoint answered 503: loading"},
               {"role": "user", "content": "Hi again"},
               {"role": "assistant", "content": "Hello" + chat.NOTICE + "The answer was cut off: reset"},
               {"role": "user", "content": "Still there?"}]
    assert chat.to_oai_chat(history, "") == [
        {"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi again"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Still there?"}]


def test_tutorial_pairs_are_still_understood():
    assert chat.to_oai_chat([["Hi", "Hello!"], ["Again", None]], "") == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"}]


def test_history_as_current_gradio_hands_it_over():
    """What Gradio 6's Chatbot gives an event handler: content as a list of text parts, plus metadata."""
    import gradio as gr

    box = gr.Chatbot()
    shown = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Capital of France?"}]
    handed_over = box.preprocess(box.postprocess(shown))
    assert chat.to_oai_chat(handed_over, "Be brief.") == [{"role": "system", "content": "Be brief."}] + shown


def test_settings_defaults():
    settings = chat.Settings({})
    assert (settings.host, settings.port, settings.base_url) == ("127.0.0.1", 7860, "http://127.0.0.1:8081/v1")
    assert (settings.model, settings.temperature, settings.max_tokens) == ("llama_2", 0.0, 512)
    assert settings.system_prompt == "You are a helpful AI assistant."
    assert settings.api_key == "none"  # the SDK insists on a key; the endpoint ignores it when it has none
    with pytest.raises(SystemExit):
        chat.Settings({"EDGE_LLAMA_MAX_TOKENS": "many"})


def sdk_over(handler):
    import httpx

    return openai.OpenAI(base_url="http://endpoint.invalid/v1", api_key="none", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_request_carries_the_settings_and_an_empty_message_sends_nothing():
    import json

    import httpx

    sent = []

    def handler(request):
        sent.append(json.loads(request.content))
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=(
            b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"llama_2","choices":'
            b'[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}]}\n\n'
            b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"llama_2","choices":'
            b'[{"index":0,"delta":{"content":"Paris"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'))

    settings = chat.Settings({"EDGE_LLAMA_TEMPERATURE": "0.2", "EDGE_LLAMA_MAX_TOKENS": "64"})
    steps = list(chat.stream_answer(sdk_over(handler), settings, [{"role": "user", "content": "Capital?"}]))
    assert steps[-1][-1] == {"role": "assistant", "content": "Paris"}
    assert sent[0]["stream"] is True and sent[0]["temperature"] == 0.2 and sent[0]["max_tokens"] == 64
    assert sent[0]["model"] == "llama_2" and sent[0]["messages"][0]["role"] == "system"
    # An empty submission adds nothing, and the bot then asks nothing.
    assert list(chat.stream_answer(sdk_over(handler), settings, [])) == [[]]
    assert len(sent) == 1


def test_error_in_the_middle_of_a_stream_ends_the_answer_with_a_message():
    import httpx

    def handler(request):
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=(
            b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"llama_2","choices":'
            b'[{"index":0,"delta":{"role":"assistant","content":"Par"},"finish_reason":null}]}\n\n'
            b'data: {"error":{"message":"the model server stopped answering (ReadError)",'
            b'"type":"server_error","code":"backend_unavailable"}}\n\n'))

    history = [{"role": "user", "content": "Hi"}]
    steps = [h[-1]["content"] for h in chat.stream_answer(sdk_over(handler), chat.Settings({}), history)]
    assert steps[0] == "Par"
    assert steps[-1].startswith("Par\n\n⚠️")
    assert "stopped answering" in steps[-1]


@pytest.fixture
def stack():
    llama = FakeLlama()
    api = RunningAPI({"EDGE_LLAMA_LLAMA_URL": llama.url})
    settings = chat.Settings({"EDGE_LLAMA_OPENAI_URL": api.url + "/v1", "EDGE_LLAMA_SYSTEM_PROMPT": "Be brief."})
    client = openai.OpenAI(base_url=settings.base_url, api_key="none", max_retries=0)
    yield llama, api, settings, client
    api.close()
    llama.close()


def test_answer_streams_into_the_chat(stack):
    llama, _api, settings, client = stack
    history = [{"role": "user", "content": "What is the capital of France?"}]
    steps = [h[-1]["content"] for h in chat.stream_answer(client, settings, history)]
    assert steps[0] == "Paris"
    assert steps[-1] == "Paris is the capital."
    assert len(set(steps)) >= 5  # it grew token by token
    assert "<<SYS>>\nBe brief.\n<</SYS>>" in llama.requests[-1][1]["prompt"]


def test_backend_down_shows_an_error_in_the_chat(stack):
    llama, _api, settings, client = stack
    llama.close()
    steps = list(chat.stream_answer(client, settings, [{"role": "user", "content": "Hi"}]))
    assert "503" in steps[-1][-1]["content"]
    assert "not available" in steps[-1][-1]["content"]


def test_endpoint_down_shows_an_error_in_the_chat():
    settings = chat.Settings({"EDGE_LLAMA_OPENAI_URL": "http://127.0.0.1:9/v1"})
    client = openai.OpenAI(base_url=settings.base_url, api_key="none", max_retries=0, timeout=5)
    steps = list(chat.stream_answer(client, settings, [{"role": "user", "content": "Hi"}]))
    assert "not reachable" in steps[-1][-1]["content"]


def test_the_page_builds_with_current_gradio():
    demo = chat.build(chat.Settings({}), client=object())
    assert demo.title == "edge-llama chat"


def test_chat_page_answers_through_gradios_own_client(stack):
    """The page's events (submit -> user, then bot) driven over Gradio's HTTP protocol."""
    from gradio_client import Client

    from services_apps import free_port

    _llama, _api, settings, client = stack
    settings.port = free_port()
    demo = chat.build(settings, client=client)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, ssr_mode=False)
    try:
        gc = Client("http://127.0.0.1:%d/" % settings.port, verbose=False)
        cleared, history = gc.predict("What is the capital of France?", [], api_name="/user")
        assert cleared == ""
        history = gc.predict(history, api_name="/bot")
        assert history[-1]["role"] == "assistant"
        assert chat.content_text(history[-1]["content"]) == "Paris is the capital."
    finally:
        demo.close()


def test_login_is_off_without_a_password_and_on_with_one():
    assert "auth" not in chat.launch_options(chat.Settings({}))
    options = chat.launch_options(chat.Settings({"EDGE_LLAMA_CHAT_HOST": "0.0.0.0",
                                                 "EDGE_LLAMA_CHAT_PASSWORD": "correct horse"}))
    assert options["auth"] == ("edge-llama", "correct horse")
    assert options["server_name"] == "0.0.0.0"


def test_a_password_puts_the_page_behind_gradios_login(stack):
    """With a password, Gradio's own login: the app's config and events refuse a client without the
    session cookie, a wrong password is refused, the right one gets an answer."""
    import httpx
    from gradio_client import Client

    from services_apps import free_port

    _llama, _api, settings, client = stack
    settings.port, settings.username, settings.password = free_port(), "alice", "correct horse"
    demo = chat.build(settings, client=client)
    options = dict(chat.launch_options(settings), prevent_thread_lock=True)
    demo.launch(**options)
    url = "http://127.0.0.1:%d/" % settings.port
    try:
        assert httpx.get(url + "config").status_code == 401
        wrong = httpx.post(url + "login", data={"username": "alice", "password": "wrong"})
        assert wrong.status_code == 400
        from gradio_client.exceptions import AuthenticationError

        with pytest.raises(AuthenticationError):
            Client(url, verbose=False)
        gc = Client(url, auth=("alice", "correct horse"), verbose=False)
        _, history = gc.predict("What is the capital of France?", [], api_name="/user")
        history = gc.predict(history, api_name="/bot")
        assert chat.content_text(history[-1]["content"]) == "Paris is the capital."
    finally:
        demo.close()
