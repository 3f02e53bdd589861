"""The same CTR model forward pass in PyTorch eager, for scripts/forward_compare.sh.

Reads the JSON lines of `cargo run --example forward_timing` (hindsight's
timings, with the model's table sizes and layer widths) on stdin, builds the
same model in PyTorch (same tables, same layer widths, same activation, the
same per-target factored attention as hindsight's DIN), times its forward
pass (eval mode, torch.no_grad, sigmoid and copy-out included) on random
inputs of the same shapes with the same thread count, and prints a table
with both and the ratio.

DIN (Zhou et al., KDD 2018) as hindsight builds it: item representation
[item emb, category emb] (no tags here), context [behavior type emb, time
gap emb], a local activation unit over [k, q*k, c] plus the query's term,
PReLU hidden layers, no softmax, masked; interest = sum_t w_t [k_t, c_t];
MLP over [interest, target] with Dice.
"""

import json
import statistics
import sys
import time

import torch
from torch import nn


class Dice(nn.Module):
    def __init__(self, units):
        super().__init__()
        self.bn = nn.BatchNorm1d(units, eps=1e-8, affine=False)
        self.alpha = nn.Parameter(torch.zeros(units))

    def forward(self, x):
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        p = torch.sigmoid(self.bn(flat)).view(shape)
        return p * x + (1 - p) * self.alpha * x


class PReLU(nn.Module):
    def __init__(self, units):
        super().__init__()
        self.act = nn.PReLU(units, init=0.25)

    def forward(self, x):
        shape = x.shape
        return self.act(x.reshape(-1, shape[-1])).view(shape)


def act(name, units):
    return Dice(units) if name == "dice" else PReLU(units) if name == "prelu" else nn.ReLU()


class Mlp(nn.Module):
    def __init__(self, d_in, hidden, d_out, activation):
        super().__init__()
        layers = []
        for h in hidden:
            layers += [nn.Linear(d_in, h), act(activation, h)]
            d_in = h
        layers.append(nn.Linear(d_in, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Din(nn.Module):
    def __init__(self, s):
        super().__init__()
        d = s["embedding_dim"]
        self.item = nn.Embedding(s["items"], d, padding_idx=0)
        self.category = nn.Embedding(s["categories"], d, padding_idx=0)
        self.btype = nn.Embedding(s["behavior_types"], d, padding_idx=0)
        self.gap = nn.Embedding(s["time_gaps"], d, padding_idx=0)
        di, dc = 2 * d, 2 * d
        first, rest = s["attention_hidden"][0], s["attention_hidden"][1:]
        self.att_query = nn.Linear(di, first, bias=False)
        self.att_behavior = nn.Linear(2 * di + dc, first)
        self.att_act = PReLU(first)
        self.att_rest = Mlp(first, rest, 1, "prelu")
        self.mlp = Mlp(di + dc + di, s["mlp_hidden"], 1, s["activation"])
        self.di, self.dc = di, dc

    def forward(self, t_item, t_cat, h_item, h_cat, h_type, h_gap, mask):
        q = torch.cat([self.item(t_item), self.category(t_cat)], -1)
        k = torch.cat([self.item(h_item), self.category(h_cat)], -1)
        c = torch.cat([self.btype(h_type), self.gap(h_gap)], -1)
        di = self.di
        w = self.att_behavior.weight
        w_k, w_qk, w_c = w[:, :di], w[:, di : 2 * di], w[:, 2 * di :]
        per_target = w_k.unsqueeze(0) + w_qk.unsqueeze(0) * q.unsqueeze(1)
        bias = self.att_query(q) + self.att_behavior.bias
        first = torch.bmm(k, per_target.transpose(1, 2)) + c @ w_c.t() + bias.unsqueeze(1)
        weights = self.att_rest(self.att_act(first)).squeeze(-1) * mask
        wv = weights.unsqueeze(1)
        interest = torch.cat([torch.bmm(wv, k), torch.bmm(wv, c)], -1).squeeze(1)
        return self.mlp(torch.cat([interest, q], -1)).squeeze(-1)


def inputs(s, b, n, g):
    r = lambda hi, *shape: torch.randint(1, hi, shape, generator=g)
    return (
        r(s["items"], b),
        r(s["categories"], b),
        r(s["items"], b, n),
        r(s["categories"], b, n),
        r(s["behavior_types"], b, n),
        r(s["time_gaps"], b, n),
        torch.ones(b, n),
    )


def time_forward(model, xs, iters, warmup):
    with torch.no_grad():
        for _ in range(warmup):
            torch.sigmoid(model(*xs)).tolist()
        ms = []
        for _ in range(iters):
            t = time.perf_counter()
            torch.sigmoid(model(*xs)).tolist()
            ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return statistics.median(ms), p99, statistics.fmean(ms)


def main():
    rows = [json.loads(line) for line in sys.stdin if line.startswith("{")]
    if not rows:
        sys.exit("no timings on stdin: run `cargo run --release -p hindsight-model --example forward_timing` into this script")
    g = torch.Generator().manual_seed(42)
    print(f"torch {torch.__version__}, threads {rows[0]['threads']}")
    print(f"{'model':<6} {'batch':>6} {'hindsight median/p99 ms':>24} {'pytorch median/p99 ms':>22} {'hindsight samples/s':>20} {'pytorch samples/s':>18} {'ratio':>6}")
    for row in rows:
        if row["model"] != "din":
            sys.exit(f"only din has a PyTorch twin in this script, got {row['model']}")
        torch.set_num_threads(row["threads"])
        s, b, n = row["sizes"], row["batch"], row["n"]
        model = Din(s).eval()
        med, p99, _ = time_forward(model, inputs(s, b, n, g), row["iters"], 5)
        ratio = med / row["median_ms"]
        print(
            f"{row['model']:<6} {b:>6} {row['median_ms']:>11.3f} / {row['p99_ms']:<10.3f} {med:>10.3f} / {p99:<9.3f} "
            f"{row['samples_per_s']:>20.0f} {b / (med / 1e3):>18.0f} {ratio:>5.2f}x"
        )


if __name__ == "__main__":
    main()
