"""Seeds that need no hnf-verify: tiny checkpoints, config.json files, gate policies, and a
certificate with a composition obligation (called by make_seeds.sh with the corpus folder)."""
import json
import math
import random
import struct
import sys
from pathlib import Path

corpus = Path(sys.argv[1])

# The tiny model of fuzz_checkpoint.cpp's fixed config.json: hidden 4, 2 heads, 1 kv head of
# dim 2, intermediate 4, 1 layer, vocabulary 4, tied embeddings.
TINY_TENSORS = [
    ("model.embed_tokens.weight", [4, 4]),
    ("model.layers.0.input_layernorm.weight", [4]),
    ("model.layers.0.self_attn.q_proj.weight", [4, 4]),
    ("model.layers.0.self_attn.k_proj.weight", [2, 4]),
    ("model.layers.0.self_attn.v_proj.weight", [2, 4]),
    ("model.layers.0.self_attn.o_proj.weight", [4, 4]),
    ("model.layers.0.post_attention_layernorm.weight", [4]),
    ("model.layers.0.mlp.gate_proj.weight", [4, 4]),
    ("model.layers.0.mlp.up_proj.weight", [4, 4]),
    ("model.layers.0.mlp.down_proj.weight", [4, 4]),
    ("model.norm.weight", [4]),
]


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    # BF16: the high half of the float's bits (values are exact in bf16 here: multiples of 1/8).
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def safetensors(tensors, metadata):
    """tensors: (name, dtype, shape, values) in file order -> the file's bytes."""
    header, data = {}, b""
    for name, dtype, shape, values in tensors:
        raw = encode(values, dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def tiny_checkpoint(dtype, extra=()):
    rng = random.Random(1)
    tensors = []
    for name, shape in TINY_TENSORS:
        n = math.prod(shape)
        norm = len(shape) == 1
        tensors.append((name, dtype, shape, [1.0 if norm else rng.randint(-8, 8) / 8 for _ in range(n)]))
    return safetensors(tensors + list(extra), {"format": "pt"})


ckpt = corpus / "checkpoint"
for dtype in ("F32", "F16", "BF16"):
    (ckpt / f"tiny-{dtype.lower()}.safetensors").write_bytes(tiny_checkpoint(dtype))
# The rotary buffer older transformers saved: accepted when it agrees with rope_theta 10000.
(ckpt / "tiny-f32-inv-freq.safetensors").write_bytes(
    tiny_checkpoint("F32", [("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", [1], [1.0])]))

config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 4, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 4,
    "num_hidden_layers": 1, "vocab_size": 4, "max_position_embeddings": 16, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
}
cfg = corpus / "llama_config"
(cfg / "tiny.json").write_text(json.dumps(config, indent=1) + "\n")
(cfg / "tiny-head-dim-eos-list.json").write_text(json.dumps(
    {**config, "head_dim": 2, "eos_token_id": [2, 3], "rope_scaling": None, "torch_dtype": "float32"}) + "\n")
(cfg / "tiny-defaults.json").write_text(json.dumps(
    {k: v for k, v in config.items() if k not in ("num_key_value_heads", "rope_theta", "tie_word_embeddings",
                                                   "bos_token_id", "eos_token_id")}) + "\n")

policies = corpus / "gate_policy"
(policies / "ci-gate-example.json").write_text(json.dumps({
    "max_eps": "0.05", "min_compression": 2.5,
    "required_scope": {"model": True, "composition": True, "min_tokens": 1024, "min_s1_queries": 32},
    "allowed_formats": ["fp16", "int8-d64", "int4-d32", "int4-d64", "int3-d32", "int2-d32", "int4-t16", "int2-t16"],
    "min_tool_version": "0.5.0"}, indent=2) + "\n")
(policies / "empty.json").write_text("{}\n")
(policies / "numbers.json").write_text('{"max_eps": 1e-3, "min_compression": 1, "required_scope": {"min_tokens": 0}}\n')

# A composition obligation beside the others (its certificate_sha256 is stale: the target
# certificate_resealed recomputes it).
cert = json.loads((corpus / "certificate_resealed" / "certified.json").read_text())
layer_eps = cert["layer_eps"]
cert["obligations"].append({
    "name": "composition", "kind": "composition", "layer": -1, "budget": "4", "verdict": "proved",
    "solver_ms": 1.0, "example": "", "detail": "", "smt_file": "",
    "lipschitz": ["3"] * len(layer_eps), "injection": ["2"] * len(layer_eps), "layer_eps": layer_eps})
(corpus / "certificate_resealed" / "composition.json").write_text(json.dumps(cert, indent=1) + "\n")
