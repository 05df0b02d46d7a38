"""gguf_info: real GGUF files (gguf 0.4.4 and hand-built v1/v3 headers), real local HTTP servers."""

import http.server
import json
import os
import struct
import threading
from types import SimpleNamespace

import pytest

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

import gguf_info as module  # noqa: E402
from hubserver import Hub  # noqa: E402

MIB = 1024 * 1024
REPO_ID = "edge-llama/tiny-llama-GGUF"
NAME = "tiny-llama.Q4_K_M.gguf"
N_EMBD, N_HEAD, N_HEAD_KV, N_LAYER, N_FF, N_CTX, N_VOCAB = 256, 8, 2, 4, 2048, 2048, 3000
# ggml (block size, bytes per block), written out here rather than taken from the module.
Q4_K, Q6_K, Q8_0 = (256, 144), (256, 210), (32, 34)


def quantised(rows, cols, layout, rng):
    """Bytes shaped like a quantised (rows x cols) tensor of the given ggml layout."""
    block, size = layout
    return rng.integers(0, 256, rows * (cols // block) * size, dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A llama GGUF v2 with a 3000-token vocabulary, GQA (8 heads, 2 KV heads) and Q4_K/Q6_K/Q8_0/F16/F32
    tensors, about 12 MB, and what is known about it from writing it."""
    path = tmp_path_factory.mktemp("gguf") / NAME
    rng = np.random.default_rng(7)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama-4l")
    writer.add_file_type(15)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["tok%d" % i for i in range(N_VOCAB)])
    writer.add_token_scores([-float(i) for i in range(N_VOCAB)])
    writer.add_token_types([1] * N_VOCAB)
    tensors, kv_dim = [], N_EMBD // N_HEAD * N_HEAD_KV

    def add(name, array, shape=None, raw=None):
        writer.add_tensor(name, array, raw_shape=shape, raw_dtype=raw)
        tensors.append((name, array.nbytes))

    add("token_embd.weight", quantised(N_VOCAB, N_EMBD, Q4_K, rng), (N_VOCAB, N_EMBD), gguf.GGMLQuantizationType.Q4_K)
    add("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    add("output.weight", quantised(N_VOCAB, N_EMBD, Q6_K, rng), (N_VOCAB, N_EMBD), gguf.GGMLQuantizationType.Q6_K)
    for i in range(N_LAYER):
        p = "blk.%d." % i
        add(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        add(p + "attn_q.weight", quantised(N_EMBD, N_EMBD, Q4_K, rng), (N_EMBD, N_EMBD), gguf.GGMLQuantizationType.Q4_K)
        add(p + "attn_k.weight", quantised(kv_dim, N_EMBD, Q8_0, rng), (kv_dim, N_EMBD), gguf.GGMLQuantizationType.Q8_0)
        add(p + "attn_v.weight", quantised(kv_dim, N_EMBD, Q6_K, rng), (kv_dim, N_EMBD), gguf.GGMLQuantizationType.Q6_K)
        add(p + "attn_output.weight", rng.standard_normal((N_EMBD, N_EMBD)).astype(np.float16))
        add(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        add(p + "ffn_gate.weight", rng.standard_normal((N_FF, N_EMBD)).astype(np.float16))
        add(p + "ffn_up.weight", rng.standard_normal((N_FF, N_EMBD)).astype(np.float16))
        # Layers differ in size, as in Q4_K_M files where some ffn_down tensors are Q6_K.
        layout, raw = (Q6_K, gguf.GGMLQuantizationType.Q6_K) if i % 2 else (Q4_K, gguf.GGMLQuantizationType.Q4_K)
        add(p + "ffn_down.weight", quantised(N_EMBD, N_FF, layout, rng), (N_EMBD, N_FF), raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return SimpleNamespace(
        path=path,
        data=path.read_bytes(),
        weights=sum(n for _name, n in tensors),
        padded=sum(-(-n // 32) * 32 for _name, n in tensors),  # the data section: each tensor padded to 32
        layers=[sum(n for name, n in tensors if name.startswith("blk.%d." % i)) for i in range(N_LAYER)],
    )


def kv_bytes(ctx, per_elem=2.0, layers=N_LAYER):
    head_dim = N_EMBD // N_HEAD
    return int(2 * layers * ctx * N_HEAD_KV * head_dim * per_elem)


def ceil_mib(n):
    return -(-n // MIB)


# ---- a local file written by gguf 0.4.4 ---------------------------------------------------------------------


def test_local_file_facts_and_estimate(tiny, run_module):
    path, weights = tiny.path, tiny.weights
    result = run_module(module, {"path": str(path), "context_size": 1024, "overhead_mib": 100})
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["source"] == str(path)
    assert result["gguf_version"] == 2
    assert (result["architecture"], result["name"], result["file_type"]) == ("llama", "tiny-llama-4l", 15)
    assert (result["block_count"], result["context_length"], result["embedding_length"]) == (N_LAYER, N_CTX, N_EMBD)
    assert (result["head_count"], result["head_count_kv"]) == (N_HEAD, N_HEAD_KV)
    assert result["tensor_count"] == 3 + 9 * N_LAYER
    # The sizes from the type table are exactly the bytes gguf wrote for each tensor.
    assert result["weights_bytes"] == weights
    # The header ends where the tensor data begins, once padded to 32 bytes.
    assert len(tiny.data) - tiny.padded == -(-result["header_bytes"] // 32) * 32
    est = result["estimate"]
    assert est["weights_mib"] == ceil_mib(weights)
    assert est["kv_cache_mib"] == ceil_mib(kv_bytes(1024))
    assert est["overhead_mib"] == 100
    assert est["total_mib"] == est["weights_mib"] + est["kv_cache_mib"] + 100
    assert "fits" not in result and "max_gpu_layers" not in result
    assert "warnings" not in result


@pytest.mark.parametrize("kv_type,per_elem", [("f16", 2), ("f32", 4), ("q8_0", 34 / 32), ("q4_0", 18 / 32)])
def test_kv_cache_type_sets_bytes_per_element(tiny, run_module, kv_type, per_elem):
    result = run_module(module, {"path": str(tiny.path), "context_size": 32768, "kv_cache_type": kv_type})
    assert result["estimate"]["kv_cache_mib"] == ceil_mib(kv_bytes(32768, per_elem))
    assert result["estimate"]["kv_cache_mib"] == {"f16": 32, "f32": 64, "q8_0": 17, "q4_0": 9}[kv_type]


def test_context_beyond_training_warns(tiny, run_module):
    result = run_module(module, {"path": str(tiny.path), "context_size": 8192})
    assert not result.get("failed")
    assert any("8192" in w and "2048" in w for w in result["warnings"])


def test_memory_fits_and_max_gpu_layers_on_a_real_file(tiny, run_module):
    path, layers = tiny.path, tiny.layers
    full = run_module(module, {"path": str(path), "context_size": 2048, "overhead_mib": 1})
    total = full["estimate"]["total_mib"]
    roomy = run_module(module, {"path": str(path), "context_size": 2048, "overhead_mib": 1, "memory_mib": total})
    assert (roomy["fits"], roomy["max_gpu_layers"], roomy["memory_mib"]) == (True, N_LAYER + 1, total)
    tight = run_module(module, {"path": str(path), "context_size": 2048, "overhead_mib": 1, "memory_mib": 8})
    assert tight["fits"] is False
    # By hand: 1 MiB overhead, then the largest layers with their KV share, into 8 MiB.
    kv_layer = kv_bytes(2048, layers=1)
    expected, used = 0, 1 * MIB
    for size in sorted(layers, reverse=True):
        if used + size + kv_layer > 8 * MIB:
            break
        used, expected = used + size + kv_layer, expected + 1
    assert expected == 2  # two of the ~3.1 MB layers (weights + 512 KiB of KV) fit in 7 MiB, three do not
    assert tight["max_gpu_layers"] == expected


def test_check_mode_returns_the_same_and_changes_nothing(tiny, run_module):
    path = tiny.path
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    args = {"path": str(path), "memory_mib": 20}
    normal = run_module(module, args)
    checked = run_module(module, args, check_mode=True)
    assert checked == normal
    assert checked["changed"] is False
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


# ---- the estimate for the tutorial's model (Llama-2 70B chat, Q4_K_M, 41.4 GB) ------------------------------

HP_70B = {
    "block_count": 80,
    "embedding_length": 8192,
    "head_count": 64,
    "head_count_kv": 8,
    "key_length": 128,
    "value_length": 128,
}


def sizes_70b():
    """The 70B tensor list, Q4_K_M-like: Q4_K, with Q6_K for output, attn_v and half the ffn_down tensors."""
    q4k, q6k, f32 = 12, 14, 0
    n_embd, n_ff, n_vocab, kv = 8192, 28672, 32000, 1024
    sizes = [
        ("token_embd.weight", module.tensor_nbytes(q4k, [n_embd, n_vocab])),
        ("output_norm.weight", module.tensor_nbytes(f32, [n_embd])),
        ("output.weight", module.tensor_nbytes(q6k, [n_embd, n_vocab])),
    ]
    for i in range(80):
        p = "blk.%d." % i
        sizes += [
            (p + "attn_norm.weight", module.tensor_nbytes(f32, [n_embd])),
            (p + "ffn_norm.weight", module.tensor_nbytes(f32, [n_embd])),
            (p + "attn_q.weight", module.tensor_nbytes(q4k, [n_embd, n_embd])),
            (p + "attn_k.weight", module.tensor_nbytes(q4k, [n_embd, kv])),
            (p + "attn_v.weight", module.tensor_nbytes(q6k, [n_embd, kv])),
            (p + "attn_output.weight", module.tensor_nbytes(q4k, [n_embd, n_embd])),
            (p + "ffn_gate.weight", module.tensor_nbytes(q4k, [n_embd, n_ff])),
            (p + "ffn_up.weight", module.tensor_nbytes(q4k, [n_embd, n_ff])),
            (p + "ffn_down.weight", module.tensor_nbytes(q6k if i % 2 else q4k, [n_ff, n_embd])),
        ]
    return sizes


def test_type_table_matches_ggml():
    # (block, bytes) from ggml's ggml_type_traits; Q2_K is 2+2+16+64 = 84 bytes per 256 elements.
    expected = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34)}
    expected.update({9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)})
    expected.update({15: (256, 292), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2)})
    for ggml_type, layout in expected.items():
        assert module.GGML_TYPES[ggml_type][1:] == layout, module.GGML_TYPES[ggml_type]
    assert module.tensor_nbytes(12, [8192, 8192]) == 8192 * 8192 // 256 * 144
    assert module.tensor_nbytes(99, [32]) is None


def test_70b_kv_cache_is_the_tutorials_1280_mib():
    result = module.estimate(HP_70B, sizes_70b(), 4096)
    assert result["estimate"]["kv_cache_mib"] == 1280  # the tutorial's log: "KV 1280 MB"
    assert module.estimate(HP_70B, sizes_70b(), 2048)["estimate"]["kv_cache_mib"] == 640
    assert module.estimate(HP_70B, sizes_70b(), 4096, "q8_0")["estimate"]["kv_cache_mib"] == 680


def test_70b_full_offload_needs_about_43_gb():
    result = module.estimate(HP_70B, sizes_70b(), 4096)
    est = result["estimate"]
    assert 39_000 <= est["weights_mib"] <= 40_000  # the real file: 41,422,937,344 bytes = 39,504 MiB
    assert est["overhead_mib"] == 512
    assert est["total_mib"] == est["weights_mib"] + 1280 + 512
    assert 42.5e9 <= est["total_mib"] * MIB <= 44e9
    assert 490 <= est["per_layer_mib"] <= 510  # 1/80 of the layers' weights and KV cache


def test_70b_fits_a_48_gb_gpu_with_every_layer():
    result = module.estimate(HP_70B, sizes_70b(), 4096, memory_mib=49140)
    assert result["fits"] is True
    assert result["max_gpu_layers"] == 81


def test_70b_on_a_24_gb_gpu_offloads_part():
    sizes = sizes_70b()
    result = module.estimate(HP_70B, sizes, 4096, memory_mib=24564)
    assert result["fits"] is False
    layers = {}
    for name, size in sizes:
        if name.startswith("blk."):
            layers[name.split(".")[1]] = layers.get(name.split(".")[1], 0) + size
    biggest = sorted(layers.values(), reverse=True)
    k = result["max_gpu_layers"]
    need = 512 * MIB + sum(biggest[:k]) + k * 16 * MIB  # 16 MiB of f16 KV per layer at -c 4096
    assert need <= 24564 * MIB < need + biggest[k] + 16 * MIB
    assert 40 <= k <= 50


def test_70b_boundaries():
    total = module.estimate(HP_70B, sizes_70b(), 4096)["estimate"]["total_mib"]
    exact = module.estimate(HP_70B, sizes_70b(), 4096, memory_mib=total)
    assert (exact["fits"], exact["max_gpu_layers"]) == (True, 81)
    short = module.estimate(HP_70B, sizes_70b(), 4096, memory_mib=total - 1)
    assert (short["fits"], short["max_gpu_layers"]) == (False, 80)  # all layers, not the output layer
    nothing = module.estimate(HP_70B, sizes_70b(), 4096, memory_mib=400)
    assert (nothing["fits"], nothing["max_gpu_layers"]) == (False, 0)


# ---- hand-built headers: GGUF v1 (2023) and v3 ---------------------------------------------------------------


def build_gguf(version, kvs, tensors, data_size=0):
    """GGUF bytes: kvs [(key, type, value)], tensors [(name, dims, ggml type, offset)]."""
    size = "<I" if version == 1 else "<Q"

    def string(s):
        raw = s.encode()
        return struct.pack(size, len(raw)) + raw

    out = b"GGUF" + struct.pack("<I", version) + struct.pack(size, len(tensors)) + struct.pack(size, len(kvs))
    for key, vtype, value in kvs:
        out += string(key) + struct.pack("<I", vtype)
        if vtype == 8:
            out += string(value)
        elif vtype == 9:
            etype, items = value
            out += struct.pack("<I", etype) + struct.pack(size, len(items))
            out += b"".join(string(x) if etype == 8 else struct.pack("<f", x) for x in items)
        else:
            out += struct.pack(module.SCALARS[vtype], value)
    for name, dims, ggml_type, offset in tensors:
        out += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack(size, d) for d in dims)
        out += struct.pack("<I", ggml_type) + struct.pack("<Q", offset)
    out += b"\0" * (-len(out) % 32)
    return out + b"\x55" * data_size


def small_model(version, extra_tensors=(), data_size=None):
    kvs = [
        ("general.architecture", 8, "llama"),
        ("general.name", 8, "hand-built"),
        ("llama.context_length", 4, 4096),
        ("llama.embedding_length", 4, 64),
        ("llama.block_count", 4, 2),
        ("llama.attention.head_count", 4, 4),
        ("tokenizer.ggml.tokens", 9, (8, ["<unk>", "<s>", "</s>"] + ["t%d" % i for i in range(500)])),
        ("tokenizer.ggml.scores", 9, (6, [0.0] * 503)),
        ("llama.rope.freq_base", 6, 10000.0),
        ("general.file_type", 4, 2),
    ]
    tensors = [("token_embd.weight", [64, 503], 1, 0)]  # F16: 64 x 503 x 2 bytes
    offset = 64 * 503 * 2
    for i in range(2):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors.append(("blk.%d.%s.weight" % (i, part), [64, 64], 2, offset))  # Q4_0: 64 x 64 / 32 x 18
            offset += 64 * 64 // 32 * 18
    tensors += [(name, dims, t, offset + o) for name, dims, t, o in extra_tensors]
    return build_gguf(version, kvs, tensors, data_size if data_size is not None else offset)


@pytest.mark.parametrize("version", [1, 3])
def test_hand_built_v1_and_v3_headers(tmp_path, run_module, version):
    data = small_model(version)
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    result = run_module(module, {"path": str(path), "context_size": 512, "overhead_mib": 0})
    assert not result.get("failed"), result
    assert result["gguf_version"] == version
    assert (result["architecture"], result["name"], result["file_type"]) == ("llama", "hand-built", 2)
    assert (result["block_count"], result["head_count"], result["head_count_kv"]) == (2, 4, 4)  # kv defaults
    assert result["tensor_count"] == 9
    assert result["weights_bytes"] == 64 * 503 * 2 + 8 * (64 * 64 // 32 * 18)
    assert result["header_bytes"] == len(data) - result["weights_bytes"] - (-result["header_bytes"] % 32)
    # KV: 2 x 2 layers x 512 x 4 heads x 16 x 2 bytes = 128 KiB -> 1 MiB rounded up
    assert result["estimate"]["kv_cache_mib"] == 1


def test_unknown_tensor_type_is_sized_by_offsets(tmp_path, run_module):
    # Type 77 is unknown: the middle one is sized by the gap to the next offset, the last one by the file's end.
    extra = [("blk.0.new_a.weight", [100], 77, 0), ("blk.1.new_b.weight", [10], 77, 4096)]
    base = 64 * 503 * 2 + 8 * (64 * 64 // 32 * 18)
    path = tmp_path / "m.gguf"
    path.write_bytes(small_model(3, extra, data_size=base + 4096 + 1000))
    result = run_module(module, {"path": str(path)})
    assert not result.get("failed"), result
    assert result["weights_bytes"] == base + 4096 + 1000


# ---- broken files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"PK\x03\x04" + b"\0" * 100, "not a GGUF file"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
        (b"GGUF" + struct.pack("<I", 7) + b"\0" * 16, "unsupported GGUF version 7"),
        (b"GGUF" + struct.pack(">I", 3) + b"\0" * 16, "big-endian"),
        (b"GGUF", "truncated"),
        (b"", "truncated"),
        # 1 tensor, 1 kv whose key claims 2**60 bytes
        (b"GGUF" + struct.pack("<IQQQ", 3, 1, 1, 2**60), "corrupt header"),
        # an array of 2**40 uint32
        (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1) + b"k" + struct.pack("<IIQ", 9, 4, 2**40), "corrupt header"),
        # an unknown value type
        (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1) + b"k" + struct.pack("<I", 42), "unknown value type 42"),
    ],
)
def test_broken_files_fail_clearly(tmp_path, run_module, content, expected):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    result = run_module(module, {"path": str(path)})
    assert result["failed"] is True
    assert expected in result["msg"] and str(path) in result["msg"]
    assert "Traceback" not in result["msg"]


def test_truncated_download_fails_with_advice(tiny, tmp_path, run_module):
    full = run_module(module, {"path": str(tiny.path)})
    path = tmp_path / "partial.gguf"
    path.write_bytes(tiny.data[: full["header_bytes"] // 2])
    result = run_module(module, {"path": str(path)})
    assert result["failed"] is True
    assert "truncated" in result["msg"] and "download it again" in result["msg"]


def test_gguf_without_llama_shape_fails(tmp_path, run_module):
    path = tmp_path / "vocab.gguf"
    path.write_bytes(build_gguf(3, [("general.architecture", 8, "llama")], []))
    result = run_module(module, {"path": str(path)})
    assert result["failed"] is True
    assert "llama.embedding_length" in result["msg"]


def test_missing_path_without_repo_fails(tmp_path, run_module):
    missing = tmp_path / "nowhere.gguf"
    result = run_module(module, {"path": str(missing)})
    assert result["failed"] is True
    assert str(missing) in result["msg"] and "repo_id" in result["msg"]
    assert run_module(module, {})["failed"] is True


# ---- the hub ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ranges", [True, False])
def test_remote_header_matches_the_local_file_and_reads_little(tiny, tmp_path, run_module, ranges):
    path, data, weights = tiny.path, tiny.data, tiny.weights
    local = run_module(module, {"path": str(path), "memory_mib": 12, "overhead_mib": 1})
    assert local["max_gpu_layers"] > 0
    with Hub({(REPO_ID, NAME): data}, ranges=ranges) as hub:
        result = run_module(
            module,
            {
                "path": str(tmp_path / "not-downloaded-yet.gguf"),  # absent: read from the hub
                "repo_id": REPO_ID,
                "filename": NAME,
                "endpoint": hub.url + "/",
                "token": "hf_sekrit",
                "memory_mib": 12,
                "overhead_mib": 1,
            },
        )
        assert not result.get("failed"), result
        assert result["source"] == "%s/%s/resolve/main/%s" % (hub.url, REPO_ID, NAME)
        assert "hf_sekrit" not in json.dumps(result)
        assert [r[:3] for r in hub.requests] == [("GET", "/%s/resolve/main/%s" % (REPO_ID, NAME), None)]
        assert hub.requests[0][3] == "Bearer hf_sekrit"
        assert hub.bytes_sent <= len(data)
    for key in ("weights_bytes", "header_bytes", "estimate", "fits", "max_gpu_layers", "tensor_count", "name"):
        assert result[key] == local[key], key
    assert result["weights_bytes"] == weights
    assert result["header_bytes"] < len(data) / 20


class Server:
    """A server whose handler answers route(path) -> (status, headers, body), writing the body in 64 KiB
    pieces and counting what it managed to send; records (path, Authorization, User-Agent)."""

    def __init__(self, route, host="127.0.0.1"):
        self.route, self.requests, self.sent, self.done = route, [], 0, threading.Event()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                srv.requests.append((self.path, self.headers.get("Authorization"), self.headers.get("User-Agent")))
                status, headers, body = srv.route(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for at in range(0, len(body), 65536):
                        self.wfile.write(body[at : at + 65536])
                        srv.sent += len(body[at : at + 65536])
                except OSError:  # the client hung up: what the module should do
                    self.close_connection = True
                srv.done.set()

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = "http://%s:%d" % (host, self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_remote_read_stops_early(tmp_path, run_module):
    big = small_model(3, data_size=48 * MIB)
    with Server(lambda path: (200, {}, big)) as server:
        result = run_module(module, {"repo_id": REPO_ID, "filename": NAME, "endpoint": server.url})
        assert not result.get("failed"), result
        assert result["header_bytes"] < 16 * 1024
        # The module hung up: the server's write fails once the socket buffers (some MB at most) are full.
        assert server.done.wait(20), "the module kept the connection open"
        assert server.sent < len(big) / 2
    assert server.requests[0][2] == "edge-llama/gguf_info"


def test_token_is_not_sent_across_a_redirect_to_another_host(tiny, run_module):
    data = tiny.data
    with Hub({(REPO_ID, NAME): data}) as cdn:
        cdn_url = cdn.url.replace("127.0.0.1", "localhost")  # same machine, another host name
        with Server(lambda path: (302, {"Location": cdn_url + path}, b"")) as hub:
            result = run_module(
                module, {"repo_id": REPO_ID, "filename": NAME, "endpoint": hub.url, "token": "hf_sekrit"}
            )
        assert not result.get("failed"), result
        assert hub.requests[0][1] == "Bearer hf_sekrit"
        assert [r[0] for r in cdn.requests] == ["GET"]
        assert cdn.requests[0][3] is None
    assert result["weights_bytes"] == tiny.weights


def test_token_follows_a_redirect_on_the_same_host(tiny, run_module):
    data = tiny.data

    def route(path):
        if path.startswith("/old-name/"):
            return 307, {"Location": path.replace("/old-name/", "/%s/" % REPO_ID)}, b""
        return 200, {}, data

    with Server(route) as hub:
        result = run_module(module, {"repo_id": "old-name", "filename": NAME, "endpoint": hub.url, "token": "hf_t"})
    assert not result.get("failed"), result
    assert [r[1] for r in hub.requests] == ["Bearer hf_t", "Bearer hf_t"]


def test_missing_file_on_the_hub_is_a_404(tiny, run_module):
    with Hub({(REPO_ID, NAME): tiny.data}) as hub:
        result = run_module(
            module, {"repo_id": REPO_ID, "filename": "other.gguf", "revision": "v2", "endpoint": hub.url}
        )
    assert result["failed"] is True
    assert "404" in result["msg"] and "other.gguf" in result["msg"] and "revision" in result["msg"]


@pytest.mark.parametrize("status", [401, 403])
def test_gated_repository_asks_for_a_token(run_module, status):
    with Server(lambda path: (status, {}, b"Access to model is restricted")) as hub:
        result = run_module(module, {"repo_id": REPO_ID, "filename": NAME, "endpoint": hub.url})
        refused = run_module(module, {"repo_id": REPO_ID, "filename": NAME, "endpoint": hub.url, "token": "hf_bad"})
    assert result["failed"] is True
    assert str(status) in result["msg"] and "gated or private" in result["msg"] and "set token" in result["msg"]
    assert refused["failed"] is True and "token was refused" in refused["msg"] and "hf_bad" not in refused["msg"]


def test_unreachable_endpoint_is_named(run_module):
    with Server(lambda path: (200, {}, b"")) as gone:
        url = gone.url
    result = run_module(module, {"repo_id": REPO_ID, "filename": NAME, "endpoint": url, "timeout": 5})
    assert result["failed"] is True
    assert "cannot reach %s" % url in result["msg"]


def test_remote_non_gguf_answer_fails_clearly(run_module):
    with Server(lambda path: (200, {"Content-Type": "text/html"}, b"<html>mirror error</html>")) as hub:
        result = run_module(module, {"repo_id": REPO_ID, "filename": NAME, "endpoint": hub.url})
    assert result["failed"] is True
    assert "not a GGUF file" in result["msg"] and hub.url in result["msg"]


def test_local_file_wins_over_the_hub(tiny, run_module):
    result = run_module(
        module, {"path": str(tiny.path), "repo_id": REPO_ID, "filename": NAME, "endpoint": "http://127.0.0.1:9"}
    )
    assert not result.get("failed"), result
    assert result["source"] == str(tiny.path)


def test_a_model_the_hub_holds_in_parts_is_read_from_its_first_part(tiny, run_module):
    """TheBloke splits files over 50 GB (Llama-2-70B Q6_K and Q8_0) into <file>-split-a, -split-b; the
    hub has no <file> at all. hf_model joins the parts; the preflight reads the header before that, from
    the first part, and sizes the file by all of them."""
    data = tiny.data
    cut = len(data) // 2
    parts = {(REPO_ID, NAME + "-split-a"): data[:cut], (REPO_ID, NAME + "-split-b"): data[cut:]}
    with Hub(parts) as hub:
        result = run_module(module, {"repo_id": REPO_ID, "filename": NAME, "endpoint": hub.url, "token": "hf_t"})
    assert not result.get("failed"), result
    assert result["parts"] == [NAME + "-split-a", NAME + "-split-b"]
    assert result["source"] == "%s/%s/resolve/main/%s-split-a" % (hub.url, REPO_ID, NAME)
    assert result["weights_bytes"] == tiny.weights
    paths = [(method, path.rsplit("/", 1)[1]) for method, path, _, _ in hub.requests]
    assert paths[:2] == [("GET", NAME), ("GET", NAME + "-split-a")]  # the whole file first: a 404
    assert ("HEAD", NAME + "-split-c") in paths  # asked until one is missing
    assert all(auth == "Bearer hf_t" for _, _, _, auth in hub.requests)


def test_hf_endpoint_names_the_mirror_when_no_endpoint_is_given(tiny, run_module, monkeypatch):
    """As hf_model and huggingface_hub do: a site mirror set by HF_ENDPOINT is where the header comes from."""
    with Hub({(REPO_ID, NAME): tiny.data}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = run_module(module, {"repo_id": REPO_ID, "filename": NAME})
        assert not result.get("failed"), result
        assert result["source"].startswith(hub.url + "/") and result["parts"] == []
        assert len(hub.requests) == 1
