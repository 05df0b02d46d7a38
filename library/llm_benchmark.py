#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: llm_benchmark
short_description: Measure a llama.cpp server's prompt and generation speed against the GPU's ceiling
description:
  - Sends a fixed prompt to llama.cpp's C(POST /completion) I(repeat) times, with C(temperature) 0,
    C(seed) 42, C(cache_prompt) false and C(ignore_eos) true (so that every run generates I(n_predict)
    tokens), and reads the server's own C(timings) (C(prompt_n), C(prompt_per_second), C(predicted_n),
    C(predicted_per_second)), which the 2023 server (commit e519621) and current ones both report.
  - The figures reported are the median of the runs, each figure on its own.
  - Each run's prompt begins with its run number. The 2023 server reuses the longest common prefix of
    the previous request whatever C(cache_prompt) says; a different first word makes it evaluate the
    whole prompt each time.
  - The ceiling is the fastest generation the memory allows, I(gpu_names)' bandwidth divided by the
    model's bytes (C(module_utils/edge_llama_ceiling.py) holds the bandwidth table, with the source of each
    figure); I(ratio) is the measured generation speed divided by it. Without a GPU, with a GPU not in the
    table, or without I(model_path), both are null and I(note) says why.
  - Fails, naming the URL, when the server does not answer, answers an HTTP error, or answers without
    C(timings).
  - HTTP goes through Python's standard library; proxies from the environment are not used.
    I(api_key) is never part of a message or of the result.
version_added: "0.6.0"
author: edge-llama contributors
options:
  server_url:
    description: Base URL of llama.cpp's server, for example C(http://127.0.0.1:8080).
    type: str
    required: true
  prompt:
    description: The prompt (a fixed English paragraph of about 100 tokens and an instruction to continue).
    type: str
  n_predict:
    description: Tokens to generate in each run.
    type: int
    default: 128
  repeat:
    description: Number of runs; the median of each figure is reported.
    type: int
    default: 3
  timeout:
    description: Seconds each request may take.
    type: int
    default: 300
  gpu_names:
    description:
      - The names of the GPUs the server uses, as nvidia-smi reports them (C(nvidia_gpu_info)'s C(gpus[].name)).
      - Empty means a host without an NVIDIA GPU; no ceiling is known for it.
    type: list
    elements: str
    default: []
  platform:
    description:
      - C(nvidia_gpu_info)'s C(platform) (C(kind), C(model)). Needed for the integrated GPU of an Orin,
        which every Orin module reports as C(Orin (nvgpu)), whatever its bandwidth.
    type: dict
    default: {}
  model_path:
    description:
      - The GGUF the server serves; its size is the model's bytes. A split GGUF (C(-00001-of-00003.gguf))
        counts all its parts.
      - Empty leaves the model's bytes, the ceiling and the ratio null.
    type: path
  api_key:
    description: Bearer token the server wants (llama.cpp's C(--api-key)); empty sends no C(Authorization) header.
    type: str
    default: ""
notes:
  - Supports check mode. It only reads (HTTP requests and the model file's size), so it does the same in
    check mode; C(changed) is always false.
  - The benchmark competes with whatever else the server is answering at the time.
"""

EXAMPLES = r"""
- name: Read the GPUs
  nvidia_gpu_info:
  register: gpu

- name: Measure the serving model
  llm_benchmark:
    server_url: http://127.0.0.1:8080
    model_path: /media/m2/models/llama-2-7b-chat.Q4_0.gguf
    gpu_names: "{{ gpu.gpus | map(attribute='name') | list }}"
    platform: "{{ gpu.platform }}"
  register: bench

- name: Show the figures
  ansible.builtin.debug:
    msg: >-
      {{ bench.generation_tokens_per_second }} tokens/s generated, ceiling {{ bench.ceiling }}
      ({{ bench.note }})
"""

RETURN = r"""
url:
  description: The URL the runs were posted to.
  returned: always
  type: str
  sample: http://127.0.0.1:8080/completion
runs:
  description: The figures of each run, in order.
  returned: success
  type: list
  elements: dict
  sample:
    - {prompt_tokens: 112, prompt_tokens_per_second: 2890.4, generated_tokens: 127,
       generation_tokens_per_second: 97.3, prompt_ms: 38.7, generation_ms: 1305.2}
prompt_tokens_per_second:
  description: Median prompt evaluation speed (C(timings.prompt_per_second)).
  returned: success
  type: float
  sample: 2890.4
generation_tokens_per_second:
  description: Median generation speed (C(timings.predicted_per_second)).
  returned: success
  type: float
  sample: 97.3
prompt_tokens:
  description: Median number of prompt tokens the server evaluated (C(timings.prompt_n)).
  returned: success
  type: int
  sample: 112
generated_tokens:
  description: Median number of generated tokens the server timed (C(timings.predicted_n)).
  returned: success
  type: int
  sample: 127
model_bytes:
  description: Size of the model file(s), null without I(model_path).
  returned: success
  type: int
  sample: 3825807040
ceiling:
  description: >-
    Generation tokens/s the memory allows, bandwidth / model bytes; null when no bandwidth is known
    (CPU only, a GPU not in the table) or no model size.
  returned: success
  type: float
  sample: 200.7
ratio:
  description: I(generation_tokens_per_second) / I(ceiling), null without a ceiling.
  returned: success
  type: float
  sample: 0.485
bandwidth:
  description: The bandwidth the ceiling rests on.
  returned: success
  type: dict
  contains:
    bytes_per_second:
      description: Memory bandwidth in bytes per second, null when unknown.
      type: float
      sample: 768000000000.0
    source:
      description: Where the figure comes from (NVIDIA's page or datasheet).
      type: str
      sample: https://www.nvidia.com/en-us/design-visualization/rtx-a6000/
    matched:
      description: The table's pattern that matched the GPU name.
      type: str
      sample: \bRTX A6000\b
    gpu:
      description: The GPU whose bandwidth is used.
      type: str
      sample: NVIDIA RTX A6000
note:
  description: >-
    Why there is no ceiling (C(no ceiling known: CPU only (no NVIDIA GPU reported)),
    C(no bandwidth known for GPU NAME)), or how it was reached with several GPUs; empty otherwise.
  returned: success
  type: str
  sample: "no ceiling known: CPU only (no NVIDIA GPU reported)"
"""

import json
import os
import re
import socket
import statistics
from http.client import HTTPException
from urllib import error as urllib_error
from urllib import request as urllib_request

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edge_llama_ceiling import assess

DEFAULT_PROMPT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a lamp, a notebook and a "
    "thermos of strong tea. From the gallery he could see the fishing boats returning to the harbour, the "
    "gulls circling above the nets, and the long line of cliffs fading into the mist. One autumn night, a "
    "light appeared far out at sea where no ship should have been. It blinked three times, went dark, and "
    "then blinked again. He wrote the time in his notebook and watched.\n\n"
    "Continue the story in the same style for several paragraphs."
)
TEXT_LIMIT = 300
SPLIT = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$")


class BenchmarkError(Exception):
    pass


def model_size(path):
    """Bytes of a GGUF, all parts of a split one (NAME-00001-of-00003.gguf ...)."""
    match = SPLIT.match(path)
    if not match:
        return os.stat(path).st_size
    total = int(match.group("total"))
    return sum(os.stat("%s-%05d-of-%05d.gguf" % (match.group("stem"), part, total)).st_size
               for part in range(1, total + 1))


def run_prompt(prompt, index, repeat):
    """The prompt of run `index`: a different first word each run (see DOCUMENTATION)."""
    return "Run %d of %d. %s" % (index, repeat, prompt)


def number(timings, key):
    value = timings.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None  # current servers send -1 for a result they did not time
    return value


def figures(answer, url):
    """The figures of one answer, or BenchmarkError naming the URL."""
    timings = answer.get("timings") if isinstance(answer, dict) else None
    if not isinstance(timings, dict):
        raise BenchmarkError("%s answered without timings (is it llama.cpp's server?): %s"
                             % (url, json.dumps(answer)[:TEXT_LIMIT]))
    missing = [key for key in ("prompt_n", "prompt_per_second", "predicted_n", "predicted_per_second")
               if number(timings, key) is None]
    if missing:
        raise BenchmarkError("%s answered timings without %s: %s"
                             % (url, ", ".join(missing), json.dumps(timings)[:TEXT_LIMIT]))
    return {
        "prompt_tokens": int(timings["prompt_n"]),
        "prompt_tokens_per_second": round(float(timings["prompt_per_second"]), 2),
        "generated_tokens": int(timings["predicted_n"]),
        "generation_tokens_per_second": round(float(timings["predicted_per_second"]), 2),
        "prompt_ms": number(timings, "prompt_ms"),
        "generation_ms": number(timings, "predicted_ms"),
    }


class Benchmark(object):
    def __init__(self, params):
        self.url = params["server_url"].rstrip("/") + "/completion"
        self.api_key = params["api_key"] or ""
        self.prompt = params["prompt"] or DEFAULT_PROMPT
        self.n_predict = params["n_predict"]
        self.repeat = params["repeat"]
        self.timeout = params["timeout"]
        self.opener = urllib_request.build_opener(urllib_request.ProxyHandler({}))

    def scrub(self, text):
        text = "%s" % (text,)
        return text.replace(self.api_key, "********") if self.api_key else text

    def post(self, body):
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "edge-llama-benchmark"}
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        request = urllib_request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                         method="POST")
        try:
            response = self.opener.open(request, timeout=self.timeout)
            status, data = response.status, response.read()
        except urllib_error.HTTPError as exc:
            status, data = exc.code, exc.read()
        except (urllib_error.URLError, socket.timeout, OSError, HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise BenchmarkError("%s did not answer: %s" % (self.url, reason)) from None
        text = data.decode("utf-8", "replace")
        if status != 200:
            raise BenchmarkError("%s answered HTTP %s: %s" % (self.url, status, text.strip()[:TEXT_LIMIT]))
        try:
            return json.loads(text)
        except ValueError:
            raise BenchmarkError("%s answered something that is not JSON: %s"
                                 % (self.url, text.strip()[:TEXT_LIMIT])) from None

    def run(self):
        runs = []
        for index in range(1, self.repeat + 1):
            answer = self.post({"prompt": run_prompt(self.prompt, index, self.repeat), "n_predict": self.n_predict,
                                "temperature": 0, "cache_prompt": False, "seed": 42, "ignore_eos": True,
                                "stream": False})
            runs.append(figures(answer, self.url))
        return runs


def median_of(runs, key, kind=float):
    value = statistics.median(run[key] for run in runs)
    return int(round(value)) if kind is int else round(float(value), 2)


def report(runs, model_bytes, gpu_names, platform, url):
    """The module's result from the runs: medians, ceiling, ratio, note."""
    result = {
        "url": url,
        "runs": runs,
        "prompt_tokens_per_second": median_of(runs, "prompt_tokens_per_second"),
        "generation_tokens_per_second": median_of(runs, "generation_tokens_per_second"),
        "prompt_tokens": median_of(runs, "prompt_tokens", int),
        "generated_tokens": median_of(runs, "generated_tokens", int),
        "model_bytes": model_bytes,
    }
    bound = assess(gpu_names, model_bytes, platform)
    ceiling = bound["ceiling"]
    result["ceiling"] = round(ceiling, 2) if ceiling else None
    result["ratio"] = round(result["generation_tokens_per_second"] / ceiling, 3) if ceiling else None
    result["bandwidth"] = {key: bound[key] for key in ("bytes_per_second", "source", "matched", "gpu")}
    result["note"] = bound["note"]
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            server_url=dict(type="str", required=True),
            prompt=dict(type="str"),
            n_predict=dict(type="int", default=128),
            repeat=dict(type="int", default=3),
            timeout=dict(type="int", default=300),
            gpu_names=dict(type="list", elements="str", default=[]),
            platform=dict(type="dict", default={}),
            model_path=dict(type="path"),
            api_key=dict(type="str", default="", no_log=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    for key, least in (("n_predict", 1), ("repeat", 1), ("timeout", 1)):
        if params[key] < least:
            module.fail_json(msg="%s must be at least %d (got %s)" % (key, least, params[key]))
    benchmark = Benchmark(params)
    model_bytes = None
    if params["model_path"]:
        try:
            model_bytes = model_size(params["model_path"])
        except OSError as exc:
            module.fail_json(msg="cannot read the size of the model %s: %s" % (params["model_path"], exc.strerror),
                             url=benchmark.url)
    try:
        runs = benchmark.run()
    except BenchmarkError as exc:
        module.fail_json(msg=benchmark.scrub(exc), url=benchmark.url)
    module.exit_json(changed=False, **report(runs, model_bytes, params["gpu_names"], params["platform"],
                                             benchmark.url))


if __name__ == "__main__":
    main()
