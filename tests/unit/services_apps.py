"""Load the services' apps (roles/services/files) and run the endpoint on a free local port."""

import importlib.util
import socket
import threading
import time
from pathlib import Path

FILES = Path(__file__).resolve().parents[2] / "roles" / "services" / "files"


def load(name):
    spec = importlib.util.spec_from_file_location("edge_llama_" + name, FILES / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningAPI:
    """openai_api.py served by uvicorn in a thread, as systemd would run it."""

    def __init__(self, env):
        import uvicorn

        api = load("openai_api")
        self.port = free_port()
        env = dict(env, EDGE_LLAMA_API_PORT=str(self.port))
        self.settings = api.Settings(env)
        config = uvicorn.Config(api.create_app(self.settings), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 15
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("the endpoint did not start")
            time.sleep(0.05)
        self.url = "http://127.0.0.1:%d" % self.port

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)
