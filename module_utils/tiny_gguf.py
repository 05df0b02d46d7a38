# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""A tiny Llama-architecture GGUF v2, written with the standard library alone.

2 layers, n_embd 64, 4 heads, an SPM vocabulary of ~500 pieces with byte fallback, weights from a seeded
generator: the same bytes every time, about 0.3 MB. The weight matrices are Q8_0, the quantised type real
models use, so that a server computing with it runs llama.cpp's quantised SIMD kernels (AVX2, AVX-512,
AMX, NEON: where a binary built for the wrong CPU dies), not only the F32 path; the norms and the token
embeddings stay F32. GGUF v2 so that both eras of llama.cpp read it: the tutorial's e519621 (GGUF v1/v2)
and current trees. Its answers are noise; it exists so that a freshly built server can be made to
compute a few tokens (llama_cpp_smoke) and so that tests have a
model that loads fast (tests/setup/sources.py serves the same file from its Hugging Face mirror).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import struct

WORDS = [
    "the", "a", "of", "and", "to", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "as",
    "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but",
    "not", "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each",
    "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then",
    "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time", "has", "look",
    "two", "more", "write", "go", "see", "number", "no", "way", "could", "people", "my", "than", "first",
    "water", "been", "call", "who", "oil", "its", "now", "find", "long", "down", "day", "did", "get",
    "come", "made", "may", "part", "Paris", "France", "capital", "hello", "llama", "edge", "Orin",
]
N_EMBD, N_HEAD, N_LAYER, N_FF, N_CTX = 64, 4, 2, 128, 4096
SEED = 20230927
ALIGNMENT = 32

# GGUF value types
_UINT32, _INT32, _FLOAT32, _STRING, _ARRAY = 4, 5, 6, 8, 9
_GGML_F32, _GGML_Q8_0 = 0, 8
QK8_0 = 32  # Q8_0 block: an fp16 scale and 32 int8 values (34 bytes), ggml's block_q8_0


def vocabulary():
    """(tokens as bytes, scores, token types) of the SPM vocabulary."""
    tokens, scores, types = [b"<unk>", b"<s>", b"</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for byte in range(256):  # byte fallback; the 2023 loader looks up <0x0A> for the linefeed token
        tokens.append(("<0x%02X>" % byte).encode())
        scores.append(0.0)
        types.append(6)
    pieces = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    pieces += ["\u2581" + w for w in WORDS] + ["\u2581", ".", ",", "?", "!", "\u2581" + "I"]
    pieces += ["\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += list(WORDS[:40])
    seen = set()
    for i, piece in enumerate(pieces):
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece.encode("utf-8"))
        scores.append(-float(i + 1))
        types.append(1)
    return tokens, scores, types


def _string(value):
    data = value if isinstance(value, bytes) else value.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _kv(key, kind, value):
    out = _string(key) + struct.pack("<I", kind)
    if kind == _STRING:
        return out + _string(value)
    if kind == _UINT32:
        return out + struct.pack("<I", value)
    if kind == _FLOAT32:
        return out + struct.pack("<f", value)
    raise ValueError(kind)


def _array(key, kind, values):
    out = _string(key) + struct.pack("<IIQ", _ARRAY, kind, len(values))
    if kind == _STRING:
        return out + b"".join(_string(v) for v in values)
    fmt = {_FLOAT32: "f", _INT32: "i"}[kind]
    return out + struct.pack("<%d%s" % (len(values), fmt), *values)


def _pad(length):
    return (ALIGNMENT - length % ALIGNMENT) % ALIGNMENT


def tensors(n_vocab):
    """(name, ggml dimensions) in file order; numpy-style shapes are these reversed."""
    out = [("token_embd.weight", (N_EMBD, n_vocab)), ("output_norm.weight", (N_EMBD,)),
           ("output.weight", (N_EMBD, n_vocab))]
    for layer in range(N_LAYER):
        p = "blk.%d." % layer
        out.append((p + "attn_norm.weight", (N_EMBD,)))
        out += [(p + name + ".weight", (N_EMBD, N_EMBD)) for name in ("attn_q", "attn_k", "attn_v", "attn_output")]
        out += [(p + "ffn_norm.weight", (N_EMBD,)), (p + "ffn_gate.weight", (N_EMBD, N_FF)),
                (p + "ffn_up.weight", (N_EMBD, N_FF)), (p + "ffn_down.weight", (N_FF, N_EMBD))]
    return out


def q8_0(values):
    """ggml's quantize_row_q8_0_ref: per block of 32, d = max|x| / 127, q = round(x / d)."""
    out = []
    for start in range(0, len(values), QK8_0):
        block = values[start:start + QK8_0]
        amax = max(abs(v) for v in block)
        d = amax / 127.0
        inv = 1.0 / d if d else 0.0
        out.append(struct.pack("<e", d) + struct.pack("<32b", *[int(round(v * inv)) for v in block]))
    return b"".join(out)


def build():
    """The whole file, as bytes."""
    rng = random.Random(SEED)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    kvs = [
        _kv("general.architecture", _STRING, "llama"),
        _kv("general.name", _STRING, "tiny-llama-2l"),
        _kv("llama.context_length", _UINT32, N_CTX),
        _kv("llama.embedding_length", _UINT32, N_EMBD),
        _kv("llama.block_count", _UINT32, N_LAYER),
        _kv("llama.feed_forward_length", _UINT32, N_FF),
        _kv("llama.rope.dimension_count", _UINT32, N_EMBD // N_HEAD),
        _kv("llama.attention.head_count", _UINT32, N_HEAD),
        _kv("llama.attention.head_count_kv", _UINT32, N_HEAD),
        _kv("llama.attention.layer_norm_rms_epsilon", _FLOAT32, 1e-5),
        _kv("tokenizer.ggml.model", _STRING, "llama"),
        _array("tokenizer.ggml.tokens", _STRING, tokens),
        _array("tokenizer.ggml.scores", _FLOAT32, scores),
        _array("tokenizer.ggml.token_type", _INT32, types),
        _kv("tokenizer.ggml.bos_token_id", _UINT32, 1),
        _kv("tokenizer.ggml.eos_token_id", _UINT32, 2),
        _kv("tokenizer.ggml.unknown_token_id", _UINT32, 0),
    ]
    layout = tensors(n_vocab)
    infos, blobs, offset = [], [], 0
    for name, dims in layout:
        count = 1
        for d in dims:
            count *= d
        if name.endswith("norm.weight"):
            values, kind = [1.0] * count, _GGML_F32
        else:
            values = [rng.gauss(0.0, 0.02) for _ in range(count)]
            kind = _GGML_F32 if name == "token_embd.weight" else _GGML_Q8_0
        blob = struct.pack("<%df" % count, *values) if kind == _GGML_F32 else q8_0(values)
        infos.append(_string(name) + struct.pack("<I", len(dims)) + struct.pack("<%dQ" % len(dims), *dims)
                     + struct.pack("<IQ", kind, offset))
        blobs.append(blob + b"\0" * _pad(len(blob)))
        offset += len(blobs[-1])
    header = b"GGUF" + struct.pack("<IQQ", 2, len(layout), len(kvs)) + b"".join(kvs) + b"".join(infos)
    return header + b"\0" * _pad(len(header)) + b"".join(blobs)


def write(path):
    """Write the file to path; returns its size."""
    data = build()
    with open(path, "wb") as handle:
        handle.write(data)
    return len(data)
