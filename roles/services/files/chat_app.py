"""The tutorial's Gradio chat app, for current Gradio and the current `openai` SDK (edge-llama).

Same behaviour as the tutorial's chatbot.py: a system prompt, the answer streamed into the chat, a
Clear button. The tutorial's `openai.ChatCompletion` no longer exists; this uses
`OpenAI(...).chat.completions.create(stream=True)` against the local OpenAI-compatible endpoint.
A backend error (model loading, server down) shows up as a message in the chat instead of a hang.

Configuration (environment, usually /etc/edge-llama/chat-app.env):
  EDGE_LLAMA_CHAT_HOST (127.0.0.1), EDGE_LLAMA_CHAT_PORT (7860), EDGE_LLAMA_OPENAI_URL
  (http://127.0.0.1:8081/v1), EDGE_LLAMA_OPENAI_API_KEY, EDGE_LLAMA_MODEL_ALIAS (llama_2),
  EDGE_LLAMA_SYSTEM_PROMPT, EDGE_LLAMA_TEMPERATURE (0), EDGE_LLAMA_MAX_TOKENS (512),
  EDGE_LLAMA_CHAT_USERNAME (edge-llama), EDGE_LLAMA_CHAT_PASSWORD (empty: no login page).
"""

import os

# The appliance is offline: no Gradio analytics or version check, no Hugging Face Hub calls.
for _name, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                      ("HF_HUB_DISABLE_TELEMETRY", "1"), ("DO_NOT_TRACK", "1")):
    os.environ.setdefault(_name, _value)

import gradio as gr  # noqa: E402
import openai  # noqa: E402

DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant."
# How the app marks its own notices in an answer (a backend error); they are not sent back to the model.
NOTICE = "\n\n\u26a0\ufe0f "


class Settings:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.host = env.get("EDGE_LLAMA_CHAT_HOST", "127.0.0.1")
        self.port = int(env.get("EDGE_LLAMA_CHAT_PORT", "7860"))
        self.base_url = env.get("EDGE_LLAMA_OPENAI_URL", "http://127.0.0.1:8081/v1")
        self.api_key = env.get("EDGE_LLAMA_OPENAI_API_KEY", "") or "none"
        self.model = env.get("EDGE_LLAMA_MODEL_ALIAS", "llama_2")
        self.system_prompt = env.get("EDGE_LLAMA_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT)
        self.username = env.get("EDGE_LLAMA_CHAT_USERNAME", "") or "edge-llama"
        self.password = env.get("EDGE_LLAMA_CHAT_PASSWORD", "")
        try:
            self.temperature = float(env.get("EDGE_LLAMA_TEMPERATURE", "0"))
            self.max_tokens = int(env.get("EDGE_LLAMA_MAX_TOKENS", "512"))
        except ValueError as exc:
            raise SystemExit("EDGE_LLAMA_TEMPERATURE / EDGE_LLAMA_MAX_TOKENS: %s" % exc) from None


def content_text(content):
    """Text of a Gradio message content (a string, or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(content_text(part) for part in content)
    return str(content)


def to_oai_chat(history, system_prompt):
    """Gradio chat history -> OpenAI messages, with the system prompt first.

    Gradio 6 gives messages as dicts with `role` and `content`; older pairs [user, bot] are accepted too.
    """
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for item in history or []:
        if isinstance(item, dict):
            role, text = item.get("role"), content_text(item.get("content"))
            if role == "assistant":
                text = without_notice(text)
            if role in ("user", "assistant") and text:
                chat.append({"role": role, "content": text})
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            if item[0]:
                chat.append({"role": "user", "content": content_text(item[0])})
            if item[1] and without_notice(content_text(item[1])):
                chat.append({"role": "assistant", "content": without_notice(content_text(item[1]))})
    return chat


def without_notice(text):
    """An answer without the app's error notice (which the model must not see and repeat)."""
    return text.split(NOTICE.strip(), 1)[0].strip() if text else text


def stream_answer(client, settings, history):
    """Yield the history with the assistant's answer growing; an error becomes the answer."""
    history = list(history or [])
    messages = to_oai_chat(history, settings.system_prompt)
    if messages[-1:] == [] or messages[-1]["role"] != "user":  # nothing asked (an empty message)
        yield history
        return
    answer = {"role": "assistant", "content": ""}
    history.append(answer)
    try:
        stream = client.chat.completions.create(
            model=settings.model, messages=messages, stream=True,
            temperature=settings.temperature, max_tokens=settings.max_tokens,
        )
        for chunk in stream:
            if not chunk.choices:
                continue
            token = chunk.choices[0].delta.content
            if token:
                answer["content"] += token
                yield history
        if not answer["content"]:
            answer["content"] = "(the model returned an empty answer)"
        yield history
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body)
        detail = error.get("message", exc.message) if isinstance(error, dict) else exc.message
        answer["content"] += NOTICE + "The model endpoint answered %d: %s" % (exc.status_code, detail)
        yield history
    except openai.APIConnectionError as exc:  # refused, reset, timed out
        answer["content"] += NOTICE + "The model endpoint is not reachable (%s). It may be restarting; " \
                             "try again in a moment." % type(exc).__name__
        yield history
    except Exception as exc:  # an error event mid-stream, a malformed reply: say so in the chat
        answer["content"] += NOTICE + "The answer was cut off: %s" % (getattr(exc, "message", None) or exc)
        yield history


def build(settings=None, client=None):
    settings = settings or Settings()
    client = client or openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key, timeout=600, max_retries=0)
    with gr.Blocks(title="edge-llama chat", analytics_enabled=False) as demo:
        gr.Markdown("### edge-llama: %s on this machine" % settings.model)
        chatbot = gr.Chatbot(height=650, label="Chat")
        msg = gr.Textbox(label="Message", placeholder="Ask something and press Enter")
        clear = gr.Button("Clear")

        def user(user_message, history):
            """Append the submitted question to the history."""
            if not (user_message or "").strip():
                return "", list(history or [])
            return "", list(history or []) + [{"role": "user", "content": user_message}]

        def bot(history):
            yield from stream_answer(client, settings, history)

        msg.submit(user, [msg, chatbot], [msg, chatbot], queue=False).then(bot, chatbot, chatbot)
        clear.click(lambda: [], None, chatbot, queue=False)
    demo.queue()
    return demo


def launch_options(settings):
    """Arguments of Blocks.launch: a login page when a password is set (always on the LAN)."""
    options = {"server_name": settings.host, "server_port": settings.port, "share": False,
               "show_error": False, "ssr_mode": False}
    if settings.password:
        options["auth"] = (settings.username, settings.password)
        options["auth_message"] = "edge-llama: log in with the chat app's user name and password."
    return options


def main():
    settings = Settings()
    print("edge-llama chat on %s:%d, endpoint %s, model %s, login %s" % (
        settings.host, settings.port, settings.base_url, settings.model,
        "required" if settings.password else "off"), flush=True)
    build(settings).launch(**launch_options(settings))


if __name__ == "__main__":
    main()
