"""
make_interop.py --out DIR : HF model directories "written by other software" for the dsmoe CLI contract test.

Unlike the fixtures (F32, one file), these are stored the way HF save_pretrained stores released checkpoints:
BF16 or F16, sharded into model-0000k-of-0000n.safetensors with a model.safetensors.index.json, tied or untied
embeddings. For each NAME it writes
  DIR/NAME/model/...            the HF directory
  DIR/NAME/tokens.bin           flat little-endian uint32 tokens
  DIR/NAME/expected.json        what `dsmoe eval`, `generate` and `train` must print, computed in float64 by
                                deepseek_ref.py from the same half-precision weights:
    {"seq_len", "batch", "nll", "tokens", "prompt", "greedy", "train": {"steps", "lr", "losses"}}
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref as ref  # noqa: E402
from make_fixtures import BASE  # noqa: E402

torch.set_num_threads(1)

HALF = {"BF16": torch.bfloat16, "F16": torch.float16}

CONFIGS = {
    # tied embeddings, GQA, renormalised top-k, BF16 in 3 shards
    "bf16_sharded_tied": (dict(BASE, tie_word_embeddings=True, num_key_value_heads=2, norm_topk_prob=True,
                               num_experts_per_tok=3), "BF16", 3),
    # untied, two shared experts, F16 in one file
    "f16_untied": (dict(BASE, n_shared_experts=2, first_k_dense_replace=0), "F16", 1),
}


def write_half_dir(model, out_dir, dtype_name, n_shards):
    """HF layout: tensors in named_parameters order split into n_shards files + index (when n_shards > 1)."""
    os.makedirs(out_dir, exist_ok=True)
    items = [(name, p.detach().to(HALF[dtype_name])) for name, p in model.named_parameters()]
    per = (len(items) + n_shards - 1) // n_shards
    shards = [items[i:i + per] for i in range(0, len(items), per)]
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = "model.safetensors" if n_shards == 1 else f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
        for name, t in shard:
            data = t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
            header[name] = {"dtype": dtype_name, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
            blobs.append(data)
            offset += len(data)
            weight_map[name] = fname
        total += offset
        hjson = json.dumps(header).encode()  # HF pads with spaces to 8 bytes
        hjson += b" " * (-len(hjson) % 8)
        with open(os.path.join(out_dir, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs))
    if n_shards > 1:
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def windows(tokens, seq_len, ids):
    x = torch.stack([tokens[i * seq_len: i * seq_len + seq_len] for i in ids])
    y = torch.stack([tokens[i * seq_len + 1: i * seq_len + seq_len + 1] for i in ids])
    return x, y


def run(name, cfg_dict, dtype_name, n_shards, out):
    cfg = ref.DeepseekConfig(cfg_dict)
    m = ref.DeepseekForCausalLM(cfg, torch.float32)
    ref.init_weights(m, 7)
    with torch.no_grad():  # the half-precision values, held exactly in float64
        for p in m.parameters():
            p.copy_(p.to(HALF[dtype_name]).to(torch.float32))
    d = os.path.join(out, name)
    write_half_dir(m, os.path.join(d, "model"), dtype_name, n_shards)
    with open(os.path.join(d, "model", "config.json"), "w") as f:
        json.dump(dict(cfg_dict, torch_dtype="bfloat16" if dtype_name == "BF16" else "float16"), f, indent=2)

    m64 = m.to(torch.float64)
    m64.dtype = torch.float64
    seq_len, batch = 16, 2
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, cfg.vocab_size, (seq_len * 6 + 5,), generator=g)
    tokens.numpy().astype("<u4").tofile(os.path.join(d, "tokens.bin"))
    n_windows = (len(tokens) - 1) // seq_len

    with torch.no_grad():  # eval: mean NLL over every window (no balance loss outside training)
        x, y = windows(tokens, seq_len, range(n_windows))
        m64.eval()
        logits, _ = m64(x)
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1)).item()
        prompt = tokens[:5].tolist()
        seq = list(prompt)
        for _ in range(6):  # greedy; require a clear top-1 so fp32 vs float64 cannot flip it
            out_logits, _ = m64(torch.tensor([seq]))
            top2 = torch.topk(out_logits[0, -1], 2).values
            assert (top2[0] - top2[1]).item() > 1e-4, "near-tie in greedy decoding; change the seed"
            seq.append(int(out_logits[0, -1].argmax()))

    # train: --no-shuffle windows s*B .. s*B+B-1 (wrapping), constant lr, AdamW defaults of the CLI.
    m64.train()
    steps, lr = 3, 2e-3
    opt = ref.make_optimizer(m64, lr, (0.9, 0.95), 1e-8, 0.1)
    losses = []
    for s in range(steps):
        x, y = windows(tokens, seq_len, [(s * batch + b) % n_windows for b in range(batch)])
        step_losses, _ = ref.train_step(m64, opt, x, y, lr, 1.0)
        losses.append(step_losses["ce"].item())
    expected = dict(seq_len=seq_len, batch=batch, nll=nll, tokens=n_windows * seq_len, prompt=prompt,
                    greedy=seq, train=dict(steps=steps, lr=lr, losses=losses))
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"{name:20s} {dtype_name} shards={n_shards} nll={nll:.6f} train={['%.5f' % v for v in losses]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    for name, (cfg_dict, dtype_name, n_shards) in CONFIGS.items():
        run(name, cfg_dict, dtype_name, n_shards, args.out)


if __name__ == "__main__":
    main()
