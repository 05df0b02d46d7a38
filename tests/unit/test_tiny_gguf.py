"""module_utils/tiny_gguf.py: the model the smoke check loads, read back with gguf_info's own parser.

That llama.cpp itself loads it (both eras) is shown by the role's smoke check in every molecule scenario.
"""

import io

import gguf_info
from ansible.module_utils import tiny_gguf


def test_a_gguf_v2_tiny_llama_every_time():
    data = tiny_gguf.build()
    assert data == tiny_gguf.build()  # deterministic: the test mirror pins its SHA-256
    header = gguf_info.parse(gguf_info.Reader(io.BytesIO(data)))
    assert header["version"] == 2
    meta = header["metadata"]
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 2 and meta["llama.embedding_length"] == 64
    assert meta["tokenizer.ggml.model"] == "llama"
    assert "tokenizer.ggml.tokens" in meta and "tokenizer.ggml.scores" in meta
    # byte fallback: the 2023 loader looks up the linefeed token <0x0A>
    assert b"<0x0A>" in tiny_gguf.vocabulary()[0]
    names = [t[0] for t in header["tensors"]]
    assert names[0] == "token_embd.weight" and "blk.1.ffn_down.weight" in names and len(names) == 3 + 2 * 9
    sizes = gguf_info.tensor_sizes(header, file_size=len(data))
    assert sizes, sizes
    types = {name: kind for name, _dims, kind, _offset in header["tensors"]}
    assert types["blk.0.attn_q.weight"] == 8 and types["output.weight"] == 8  # Q8_0: the quantised kernels run
    assert types["token_embd.weight"] == 0 and types["blk.0.attn_norm.weight"] == 0
    assert 200_000 < len(data) < 400_000


def test_q8_0_blocks_are_ggmls():
    block = tiny_gguf.q8_0([0.5] + [0.0] * 30 + [-0.25])
    assert len(block) == 34
    import struct
    assert abs(struct.unpack("<e", block[:2])[0] - 0.5 / 127) < 1e-5
    assert struct.unpack("<32b", block[2:]) == (127,) + (0,) * 30 + (-64,)


def test_write_returns_the_size(tmp_path):
    path = tmp_path / "t.gguf"
    assert tiny_gguf.write(str(path)) == path.stat().st_size
