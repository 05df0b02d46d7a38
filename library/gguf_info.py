#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gguf_info
short_description: Read a GGUF model's header and estimate the memory it needs at a context size
description:
  - Reads the header and tensor table of a GGUF file (versions 1, 2 and 3), from a local I(path) or, before
    the download, from the hub with a streaming GET that stops once the tensor table is read (a few MB of a
    41 GB file; servers that ignore C(Range) are fine).
  - A file the hub holds only in parts (C(<filename>-split-a), C(-split-b), ..., as TheBloke splits files over
    50 GB, and as hf_model joins them) is read from its first part, which starts with the header.
  - Estimates the memory a full offload (C(-ngl) above the layer count) needs at I(context_size), and with
    I(memory_mib) tells whether that fits and the largest C(-ngl) that does.
  - "Weights: the sum of the tensor sizes, from ggml's block size and type size of each tensor's type
    (a type this module does not know is sized by the gap to the next tensor's offset)."
  - "KV cache: context_size x n_layer x head_count_kv x (key_length + value_length) x bytes per element,
    C(key_length) and C(value_length) defaulting to C(embedding_length / head_count). For Llama-2 70B
    (80 layers, 8 KV heads of 128) at C(-c 4096) in f16 that is 1280 MiB."
  - "Total: weights + KV cache + I(overhead_mib), each rounded up to MiB."
  - "C(max_gpu_layers): the largest k (0 to the layer count) with I(overhead_mib) + the k largest layers'
    weights + k layers' KV cache <= I(memory_mib); the layer count + 1 (which also offloads the output layer)
    when the whole total fits."
  - Pure Python standard library, so it runs with the target's system python before anything is installed.
version_added: "0.1.0"
author: edge-llama contributors
options:
  path:
    description:
      - Local GGUF file. Read when it exists; otherwise the header is read from the hub (I(repo_id)).
    type: path
  repo_id:
    description: Repository on the hub, for example C(TheBloke/Llama-2-70B-chat-GGUF).
    type: str
  filename:
    description: File inside the repository.
    type: str
  revision:
    description: Branch, tag or commit.
    type: str
    default: main
  endpoint:
    description: Hub or mirror URL; empty uses C(HF_ENDPOINT) or huggingface.co, as hf_model does.
    type: str
  token:
    description:
      - Hugging Face token for gated or private repositories. Sent only to the host of I(endpoint), never
        across a redirect to another host (the CDN that serves LFS files).
    type: str
  timeout:
    description: Seconds to wait for the server.
    type: int
    default: 30
  context_size:
    description: Context (C(-c)) the server will run with.
    type: int
    default: 4096
  kv_cache_type:
    description: Type of the K/V cache (2, 4, 34/32 or 18/32 bytes per element).
    type: str
    choices: [f16, f32, q8_0, q4_0]
    default: f16
  overhead_mib:
    description: Compute and scratch buffers and the CUDA context, added to the total.
    type: int
    default: 512
  memory_mib:
    description: Memory to fit into (free VRAM of the GPU, or RAM on a CPU host). Enables I(fits) and I(max_gpu_layers).
    type: int
notes:
  - Supports check mode; never changes anything.
  - The estimate is an upper bound of the usual kind, not llama.cpp's allocator; keep a margin.
"""

EXAMPLES = r"""
- name: Will the tutorial's model fit, before downloading 41 GB?
  gguf_info:
    repo_id: TheBloke/Llama-2-70B-chat-GGUF
    filename: llama-2-70b-chat.Q4_K_M.gguf
    path: /media/m2/models/llama-2-70b-chat.Q4_K_M.gguf
    context_size: 4096
    memory_mib: "{{ gpu_free_mib }}"
  register: gguf

- name: Offload what fits
  ansible.builtin.set_fact:
    llama_server_ngl: "{{ gguf.max_gpu_layers }}"
"""

RETURN = r"""
source:
  description: The file read, a path or the URL (never with a token).
  returned: success
  type: str
  sample: https://huggingface.co/TheBloke/Llama-2-70B-chat-GGUF/resolve/main/llama-2-70b-chat.Q4_K_M.gguf
parts:
  description: The hub's parts of a split file, in order; empty for a local file or one the hub holds whole.
  returned: success
  type: list
  elements: str
  sample: [llama-2-70b-chat.Q6_K.gguf-split-a, llama-2-70b-chat.Q6_K.gguf-split-b]
gguf_version: {description: GGUF format version (1 to 3)., returned: success, type: int, sample: 2}
architecture: {description: C(general.architecture)., returned: success, type: str, sample: llama}
name: {description: "C(general.name); null if absent.", returned: success, type: str, sample: LLaMA v2}
file_type: {description: "C(general.file_type) (15: Q4_K_M); null if absent.", returned: success, type: int, sample: 15}
block_count: {description: Number of layers., returned: success, type: int, sample: 80}
context_length: {description: "Trained context; null if absent.", returned: success, type: int, sample: 4096}
embedding_length: {description: Embedding width., returned: success, type: int, sample: 8192}
head_count: {description: Attention heads., returned: success, type: int, sample: 64}
head_count_kv: {description: K/V heads (grouped-query attention)., returned: success, type: int, sample: 8}
tensor_count: {description: Number of tensors., returned: success, type: int, sample: 723}
weights_bytes: {description: Sum of the tensor sizes., returned: success, type: int, sample: 41466707968}
header_bytes:
  description: Bytes of header and tensor table parsed; reading stops there (give or take a 64 KiB read-ahead).
  returned: success
  type: int
  sample: 741056
context_size: {description: The I(context_size) estimated for., returned: success, type: int, sample: 4096}
estimate:
  description: Memory needed for a full offload, in MiB rounded up.
  returned: success
  type: dict
  contains:
    weights_mib: {description: All tensors., type: int, sample: 39546}
    kv_cache_mib: {description: K and V cache of all layers at I(context_size)., type: int, sample: 1280}
    overhead_mib: {description: I(overhead_mib)., type: int, sample: 512}
    total_mib: {description: Sum of the three above., type: int, sample: 41338}
    per_layer_mib: {description: Weights and KV cache of an average layer., type: int, sample: 506}
memory_mib: {description: The I(memory_mib) given., returned: when memory_mib is given, type: int, sample: 49140}
fits: {description: The full offload fits in I(memory_mib)., returned: when memory_mib is given, type: bool}
max_gpu_layers:
  description: "Largest C(-ngl) that fits: block_count + 1 when everything fits, 0 when no layer does."
  returned: when memory_mib is given
  type: int
  sample: 81
"""

import os
import struct

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.http_client import HTTPException
from ansible.module_utils import edge_llama_hub

MIB = 1024 * 1024
CHUNK = 64 * 1024
MAX_HEADER = 256 * MIB  # the largest real headers (256k-token vocabularies with merges) are tens of MB
MAX_STRING = 16 * MIB
MAX_COUNT = 1 << 24  # tensors, key/value pairs
MAX_DIMS = 8
USER_AGENT = "edge-llama/gguf_info"

# ggml type id: (name, block size in elements, bytes per block). From ggml's ggml_type_traits
# (ggml/src/ggml.c), as mirrored in gguf-py's GGML_QUANT_SIZES (gguf/constants.py); QK_K = 256.
# fmt: off
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}
# fmt: on
# K/V cache element types: (bytes per block, elements per block).
KV_TYPES = {"f16": (2, 1), "f32": (4, 1), "q8_0": (34, 32), "q4_0": (18, 32)}
# GGUF metadata value types with a fixed size: struct format. 8 is string, 9 array.
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class GGUFError(Exception):
    """A failure with a message meant for the user."""


class HeaderError(GGUFError):
    """What is wrong with the file's content (the caller names the file)."""


def ceil_div(a, b):
    return -(-a // b)


class Reader:
    """Reads a stream front to back through a small buffer, counting what the parser consumed."""

    def __init__(self, stream):
        self.stream = stream
        self.buf, self.at, self.pos = b"", 0, 0

    def read(self, n):
        if self.pos + n > MAX_HEADER:
            raise HeaderError("corrupt header: it would run past %d MiB" % (MAX_HEADER // MIB))
        parts, want = [], n
        while want:
            if self.at >= len(self.buf):
                self.buf, self.at = self.stream.read(max(CHUNK, min(want, 4 * MIB))), 0
                if not self.buf:
                    done = self.pos + n - want
                    raise HeaderError("truncated: the data ends at byte %d, inside the GGUF header" % done)
            take = self.buf[self.at : self.at + want]
            self.at += len(take)
            want -= len(take)
            parts.append(take)
        self.pos += n
        return b"".join(parts)

    def skip(self, n):
        if self.pos + n > MAX_HEADER:
            raise HeaderError("corrupt header: it would run past %d MiB" % (MAX_HEADER // MIB))
        while n > 0:
            step = min(n, 4 * MIB)
            self.read(step)
            n -= step

    def unpack(self, fmt):
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]


def parse(reader):
    """Parse a GGUF header and tensor table. Returns {version, metadata, tensors: [(name, dims, type, offset)]}."""
    magic = reader.read(4)
    if magic != b"GGUF":
        hint = " (a Git LFS pointer: fetch the real file)" if magic == b"vers" else ""
        raise HeaderError("not a GGUF file: it starts with %r, not b'GGUF'%s" % (magic, hint))
    version = reader.unpack("<I")
    if version not in (1, 2, 3):
        swapped = struct.unpack(">I", struct.pack("<I", version))[0]
        if swapped in (1, 2, 3):
            raise HeaderError("big-endian GGUF (version %d) is not supported" % swapped)
        raise HeaderError(
            "unsupported GGUF version %d (this module reads 1 to 3): corrupt file or a newer format" % version
        )
    size_fmt = "<I" if version == 1 else "<Q"

    def count(what, limit):
        n = reader.unpack(size_fmt)
        if n > limit:
            raise HeaderError("corrupt header: %d %s at byte %d" % (n, what, reader.pos))
        return n

    def string():
        return reader.read(count("bytes in a string", MAX_STRING)).decode("utf-8", "replace")

    def value(vtype):
        if vtype in SCALARS:
            return reader.unpack(SCALARS[vtype])
        if vtype == 8:
            return string()
        if vtype == 9:  # arrays (the vocabulary) are read through, not kept
            etype = reader.unpack("<I")
            n = count("array elements", MAX_HEADER)
            item = struct.calcsize(SCALARS.get(etype, size_fmt))  # a string or an array is at least its length
            if reader.pos + n * item > MAX_HEADER:
                raise HeaderError("corrupt header: an array of %d elements at byte %d" % (n, reader.pos))
            if etype in SCALARS:
                reader.skip(n * item)
            else:
                for _ in range(n):
                    value(etype)
            return None
        raise HeaderError("corrupt header: unknown value type %d at byte %d" % (vtype, reader.pos))

    n_tensors = count("tensors", MAX_COUNT)
    n_kv = count("key/value pairs", MAX_COUNT)
    metadata = {}
    for _ in range(n_kv):
        key = string()
        metadata[key] = value(reader.unpack("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = string()
        n_dims = reader.unpack("<I")
        if n_dims > MAX_DIMS:
            raise HeaderError("corrupt header: tensor %s has %d dimensions" % (name, n_dims))
        dims = [reader.unpack(size_fmt) for _ in range(n_dims)]
        ggml_type = reader.unpack("<I")
        tensors.append((name, dims, ggml_type, reader.unpack("<Q")))
    return {"version": version, "metadata": metadata, "tensors": tensors, "header_bytes": reader.pos}


def tensor_nbytes(ggml_type, dims):
    """Bytes of a tensor of a known ggml type (rows of ceil(ne0 / block) blocks); None for an unknown type."""
    if ggml_type not in GGML_TYPES:
        return None
    _name, block, type_size = GGML_TYPES[ggml_type]
    rows = 1
    for d in dims[1:]:
        rows *= d
    return ceil_div(dims[0] if dims else 1, block) * type_size * rows


def tensor_sizes(info, file_size=None):
    """[(name, bytes)] for the parsed tensors. A tensor of an unknown type is sized by its offset's gap to the
    next tensor (the last one: to the end of the file, which needs file_size)."""
    tensors = info["tensors"]
    align = info["metadata"].get("general.alignment")
    align = align if isinstance(align, int) and align > 0 else 32
    data_start = ceil_div(info["header_bytes"], align) * align
    offsets = sorted(set(t[3] for t in tensors))
    sizes = []
    for name, dims, ggml_type, offset in tensors:
        size = tensor_nbytes(ggml_type, dims)
        if size is None:
            later = [o for o in offsets if o > offset]
            if later:
                size = later[0] - offset
            elif file_size:
                size = max(0, file_size - data_start - offset)
            else:
                raise HeaderError(
                    "tensor %s has ggml type %d, unknown to this module, and the file size is not "
                    "known to size it" % (name, ggml_type)
                )
        sizes.append((name, size))
    return sizes


def hparams(metadata):
    """The model's shape from its metadata."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise HeaderError("the header has no general.architecture: not a model GGUF")

    def get(key, default=None):
        found = metadata.get("%s.%s" % (arch, key), default)
        if isinstance(found, bool) or not isinstance(found, int) or found < 0:
            raise HeaderError("the header lacks a valid %s.%s (%r): cannot estimate the KV cache" % (arch, key, found))
        return found

    n_embd, n_head = get("embedding_length"), get("attention.head_count")
    if not n_head:
        raise HeaderError("%s.attention.head_count is 0: cannot estimate the KV cache" % arch)
    return {
        "architecture": arch,
        "name": metadata.get("general.name"),
        "file_type": metadata.get("general.file_type"),
        "block_count": get("block_count"),
        "context_length": metadata.get("%s.context_length" % arch),
        "embedding_length": n_embd,
        "head_count": n_head,
        "head_count_kv": get("attention.head_count_kv", n_head),
        "key_length": get("attention.key_length", n_embd // n_head),
        "value_length": get("attention.value_length", n_embd // n_head),
    }


def estimate(hp, sizes, context_size, kv_cache_type="f16", overhead_mib=512, memory_mib=None):
    """Memory for the model of hparams hp with tensors sizes [(name, bytes)] at context_size."""
    n_layer = hp["block_count"]
    per_block, per_elems = KV_TYPES[kv_cache_type]
    kv_layer_elems = context_size * hp["head_count_kv"] * (hp["key_length"] + hp["value_length"])
    kv_layer = ceil_div(kv_layer_elems * per_block, per_elems)
    kv_bytes = kv_layer * n_layer
    layers = {}
    weights = 0
    for name, size in sizes:
        weights += size
        parts = name.split(".")
        if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit():
            layers[int(parts[1])] = layers.get(int(parts[1]), 0) + size
    est = {
        "weights_mib": ceil_div(weights, MIB),
        "kv_cache_mib": ceil_div(kv_bytes, MIB),
        "overhead_mib": overhead_mib,
        "per_layer_mib": ceil_div(sum(layers.values()) + kv_bytes, MIB * max(n_layer, 1)),
    }
    est["total_mib"] = est["weights_mib"] + est["kv_cache_mib"] + overhead_mib
    result = {"weights_bytes": weights, "estimate": est}
    if memory_mib is not None:
        fits = est["total_mib"] <= memory_mib
        biggest = sorted((layers.get(i, 0) for i in range(n_layer)), reverse=True)
        budget = (memory_mib - overhead_mib) * MIB
        used = k = 0
        for size in biggest:
            if used + size + kv_layer > budget:
                break
            used += size + kv_layer
            k += 1
        result.update(memory_mib=memory_mib, fits=fits, max_gpu_layers=n_layer + 1 if fits else k)
    return result


def read_remote(p):
    """Parse the header of the file on the hub, reading only as far as its tensor table. A file the hub
    holds in parts (-split-a, -split-b, ...) is read from its first part, which starts with the header;
    its size is the parts' sizes together. Returns (info, url of what was read)."""
    hub = edge_llama_hub.endpoint(p["endpoint"])
    what = "%s/%s at revision %s" % (p["repo_id"], p["filename"], p["revision"])
    try:
        response, url, parts = edge_llama_hub.open_file(hub, p["repo_id"], p["revision"], p["filename"],
                                                        token=p["token"], timeout=p["timeout"], user_agent=USER_AGENT)
    except edge_llama_hub.HubError as exc:
        raise GGUFError(edge_llama_hub.scrub(exc, p["token"])) from None
    try:
        size = response.headers.get("Content-Length") if response.getcode() == 200 else None
        info = parse(Reader(response))
        info["file_size"] = int(size) if size and size.isdigit() else None
    except HeaderError as exc:
        raise GGUFError("%s: %s" % (url, exc)) from None
    except (OSError, ValueError, HTTPException) as exc:  # a timeout or a reset in the middle of the header
        raise GGUFError("reading %s (%s) failed: %s" % (what, url, to_native(exc))) from None
    finally:
        response.close()  # stop the download: the tensor data is not needed
    info["parts"] = parts
    if parts:
        try:
            sizes = edge_llama_hub.sizes_of(hub, p["repo_id"], p["revision"], parts, token=p["token"],
                                            timeout=p["timeout"], user_agent=USER_AGENT)
        except edge_llama_hub.HubError as exc:
            raise GGUFError(edge_llama_hub.scrub(exc, p["token"])) from None
        info["file_size"] = None if None in sizes else sum(sizes)
    return info, url


def run(module):
    p = module.params
    if p["context_size"] < 1 or p["overhead_mib"] < 0 or (p["memory_mib"] or 0) < 0:
        raise GGUFError("context_size must be positive, overhead_mib and memory_mib not negative")
    local = bool(p["path"]) and os.path.isfile(p["path"])
    if local:
        source = p["path"]
    elif p["repo_id"] and p["filename"]:
        source = None
    elif p["path"]:
        raise GGUFError(
            "%s does not exist (or is not a file), and no repo_id/filename were given to read the "
            "header from the hub: download the model first or give repo_id and filename" % p["path"]
        )
    else:
        raise GGUFError("give path (a local GGUF file) or repo_id and filename")
    try:
        if local:
            with open(source, "rb") as handle:
                info = parse(Reader(handle))
            info["file_size"] = os.path.getsize(source)
        else:
            info, source = read_remote(p)
        hp = hparams(info["metadata"])
        sizes = tensor_sizes(info, info["file_size"])
    except HeaderError as exc:
        advice = ": an incomplete download? Delete the file and download it again" if local else ""
        raise GGUFError("%s: %s%s" % (source, exc, advice if "truncated" in str(exc) else "")) from None
    result = estimate(hp, sizes, p["context_size"], p["kv_cache_type"], p["overhead_mib"], p["memory_mib"])
    trained = hp["context_length"]
    if trained and p["context_size"] > trained:
        module.warn(
            "context_size %d is larger than the %d tokens %s was trained with: answers past that degrade"
            % (p["context_size"], trained, hp["name"] or "the model")
        )
    for key in ("architecture", "name", "file_type", "block_count", "context_length", "embedding_length"):
        result[key] = hp[key]
    result.update(head_count=hp["head_count"], head_count_kv=hp["head_count_kv"], tensor_count=len(info["tensors"]))
    result.update(parts=info.get("parts", []))
    result.update(changed=False, source=source, gguf_version=info["version"], header_bytes=info["header_bytes"])
    result["context_size"] = p["context_size"]
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path"),
            repo_id=dict(type="str"),
            filename=dict(type="str"),
            revision=dict(type="str", default="main"),
            endpoint=dict(type="str"),
            token=dict(type="str", no_log=True),
            timeout=dict(type="int", default=30),
            context_size=dict(type="int", default=4096),
            kv_cache_type=dict(type="str", default="f16", choices=list(KV_TYPES)),
            overhead_mib=dict(type="int", default=512),
            memory_mib=dict(type="int"),
        ),
        required_together=[("repo_id", "filename")],
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except GGUFError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg=to_native(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
