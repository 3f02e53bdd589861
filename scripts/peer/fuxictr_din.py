#!/usr/bin/env python3
"""Peer comparison: FuxiCTR's DIN on hindsight's exported samples.

Run through ``scripts/peer/fuxictr_din.sh SAMPLES_DIR`` (which creates the
venv); see docs/eval/peer.md. Not part of CI.

What it does:

1. builds a FuxiCTR dataset from SAMPLES_DIR/{train,valid,test}.csv with
   FuxiCTR's own FeatureProcessor / build_dataset (CSV -> parquet, vocabularies
   fitted on train): target features ``item_id`` and ``category``
   (categorical), behavior sequences ``hist_item_id`` / ``hist_category``
   (sequence, splitter '^', max_len = N from meta.json, sharing the target
   features' embeddings), ``label``; ``user_id`` and ``history_len`` are
   meta columns (not model inputs) for gAUC and the long-history slice;
2. trains FuxiCTR's DIN (the classic ``model_zoo/DIN`` model, which the
   PyPI wheel does not ship, reproduced below on fuxictr's BaseModel and
   layers) with FuxiCTR's training loop and data loader, early stopping on
   validation AUC;
3. scores the test split and prints one JSON line and one Markdown table row
   on stdout: AUC, gAUC, logloss (all test samples and the
   history_len > long_history slice), train and inference samples/s.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections import OrderedDict

import numpy as np
import ray
import torch
from torch import nn
from pandas.core.common import flatten
from sklearn.metrics import log_loss, roc_auc_score

import fuxictr
from fuxictr.features import FeatureMap
from fuxictr.preprocess import FeatureProcessor, build_dataset
from fuxictr.pytorch.dataloaders import RankDataLoader
from fuxictr.pytorch.dataloaders.parquet_dataloader import ParquetDataLoader
from fuxictr.pytorch.layers import DIN_Attention, Dice, FeatureEmbeddingDict, MLP_Block
from fuxictr.pytorch.models import BaseModel
from fuxictr.pytorch.torch_utils import seed_everything


# ---------------------------------------------------------------------------
# FuxiCTR's DIN.
#
# Reproduced from FuxiCTR's model_zoo/DIN/src/DIN.py (github.com/reczoo/FuxiCTR,
# Copyright (C) 2022 Huawei Technologies Co., Ltd., Apache License 2.0), which
# the `fuxictr` wheel does not include: the wheel's model_zoo only has
# LongCTR/DIN, a variant that reads item sequences through an item-info table
# (LongCTRDataLoader) rather than per-sample sequence columns. Same structure:
# FeatureEmbeddingDict, one DIN_Attention (MLP over [q, k, q-k, q*k], Dice
# hidden activations, no softmax) per (target fields, sequence fields) pair,
# the pooled sequence replaces the sequence's embedding, and an MLP_Block
# over the concatenation of all field embeddings.
# ---------------------------------------------------------------------------
class DIN(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="DIN",
                 gpu=-1,
                 dnn_hidden_units=[512, 128, 64],
                 dnn_activations="ReLU",
                 attention_hidden_units=[64],
                 attention_hidden_activations="Dice",
                 attention_output_activation=None,
                 attention_dropout=0,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 net_dropout=0,
                 batch_norm=False,
                 din_target_field=[("item_id", "cate_id")],
                 din_sequence_field=[("click_history", "cate_history")],
                 din_use_softmax=False,
                 embedding_regularizer=None,
                 net_regularizer=None,
                 **kwargs):
        super(DIN, self).__init__(feature_map,
                                  model_id=model_id,
                                  gpu=gpu,
                                  embedding_regularizer=embedding_regularizer,
                                  net_regularizer=net_regularizer,
                                  **kwargs)
        if not isinstance(din_target_field, list):
            din_target_field = [din_target_field]
        self.din_target_field = din_target_field
        if not isinstance(din_sequence_field, list):
            din_sequence_field = [din_sequence_field]
        self.din_sequence_field = din_sequence_field
        assert len(self.din_target_field) == len(self.din_sequence_field), \
            "len(din_target_field) != len(din_sequence_field)"
        if isinstance(dnn_activations, str) and dnn_activations.lower() == "dice":
            dnn_activations = [Dice(units) for units in dnn_hidden_units]
        self.feature_map = feature_map
        self.embedding_dim = embedding_dim
        self.embedding_layer = FeatureEmbeddingDict(feature_map, embedding_dim)
        self.attention_layers = nn.ModuleList(
            [DIN_Attention(embedding_dim * len(target_field) if type(target_field) == tuple
                           else embedding_dim,
                           attention_units=attention_hidden_units,
                           hidden_activations=attention_hidden_activations,
                           output_activation=attention_output_activation,
                           dropout_rate=attention_dropout,
                           use_softmax=din_use_softmax)
             for target_field in self.din_target_field])
        self.dnn = MLP_Block(input_dim=feature_map.sum_emb_out_dim(),
                             output_dim=1,
                             hidden_units=dnn_hidden_units,
                             hidden_activations=dnn_activations,
                             output_activation=self.output_activation,
                             dropout_rates=net_dropout,
                             batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb_dict = self.embedding_layer(X)
        for idx, (target_field, sequence_field) in enumerate(zip(self.din_target_field,
                                                                 self.din_sequence_field)):
            target_emb = self.get_embedding(target_field, feature_emb_dict)
            sequence_emb = self.get_embedding(sequence_field, feature_emb_dict)
            seq_field = list(flatten([sequence_field]))[0]  # the first sequence field
            mask = X[seq_field].long() != 0  # padding_idx = 0 required
            pooling_emb = self.attention_layers[idx](target_emb, sequence_emb, mask)
            for field, field_emb in zip(list(flatten([sequence_field])),
                                        pooling_emb.split(self.embedding_dim, dim=-1)):
                feature_emb_dict[field] = field_emb
        feature_emb = self.embedding_layer.dict2tensor(feature_emb_dict, flatten_emb=True)
        y_pred = self.dnn(feature_emb)
        return {"y_pred": y_pred}

    def get_embedding(self, field, feature_emb_dict):
        if type(field) == tuple:
            return torch.cat([feature_emb_dict[f] for f in field], dim=-1)
        return feature_emb_dict[field]


class TimedDIN(DIN):
    """DIN whose fit() also records training time without validation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch_seconds = []
        self.eval_seconds = 0.0
        self.valid_history = []

    def train_epoch(self, data_generator):
        start = time.perf_counter()
        super().train_epoch(data_generator)
        self.epoch_seconds.append(time.perf_counter() - start)

    def eval_step(self):
        start = time.perf_counter()
        super().eval_step()
        self.eval_seconds += time.perf_counter() - start

    def evaluate(self, data_generator, metrics=None):
        logs = super().evaluate(data_generator, metrics)
        self.valid_history.append({k: float(v) for k, v in logs.items()})
        return logs


class SeededParquetDataLoader(ParquetDataLoader):
    """FuxiCTR's ParquetDataLoader with a seeded per-epoch shuffle.

    fuxictr 2.3.10 shuffles a single-file training set with Ray Data's
    ``random_shuffle()`` without a seed, so two runs see different batch orders
    and their test AUCs differ by more than 0.01 on taobao. Here epoch ``e``
    uses ``random_shuffle(seed=seed + e)``; everything else is FuxiCTR's.
    """

    def __init__(self, *args, seed=42, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.epoch = 0

    def __iter__(self):
        if not self.shuffle or self.num_blocks > 1:
            return super().__iter__()
        self.epoch += 1
        dataset = self.dataset.materialize().random_shuffle(seed=self.seed + self.epoch)
        return iter(dataset.iter_torch_batches(batch_size=self.batch_size, drop_last=False,
                                               prefetch_batches=self.num_workers))


# ---------------------------------------------------------------------------
# Metrics (docs/evaluation-protocol.md, "Metrics and slices")
# ---------------------------------------------------------------------------
def auc_or_none(y, p):
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def gauc(y, p, groups):
    """Per-group AUC weighted by the group's number of samples, over groups
    with both labels (the DIN paper's gAUC; same as fuxictr.metrics.gAUC)."""
    order = np.argsort(groups, kind="stable")
    g, y, p = groups[order], y[order], p[order]
    bounds = np.flatnonzero(np.diff(g)) + 1
    num = den = 0.0
    for ys, ps in zip(np.split(y, bounds), np.split(p, bounds)):
        if 0 < ys.sum() < len(ys):
            num += roc_auc_score(ys, ps) * len(ys)
            den += len(ys)
    return num / den if den > 0 else None


def metrics(y, p, groups):
    return OrderedDict([
        ("samples", int(len(y))),
        ("auc", auc_or_none(y, p)),
        ("gauc", gauc(y, p, groups)),
        ("logloss", float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))),
    ])


def fmt(x, digits=4):
    return "n/a" if x is None else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples_dir", help="folder written by `hindsight export-samples`")
    ap.add_argument("--work-dir", help="FuxiCTR data/checkpoint folder "
                    "(default scripts/peer/runs/<samples dir name>)")
    ap.add_argument("--keep-data", action="store_true",
                    help="reuse an existing FuxiCTR dataset in the work dir instead of rebuilding it")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--eval-batch-size", type=int, default=1024)
    ap.add_argument("--embedding-dim", type=int, default=18)
    ap.add_argument("--dnn-hidden", type=int, nargs="+", default=[200, 80])
    ap.add_argument("--dnn-activation", default="Dice", help="Dice, ReLU, PReLU, ...")
    ap.add_argument("--attention-hidden", type=int, nargs="+", default=[36])
    ap.add_argument("--attention-activation", default="Dice")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-decay-on-plateau", action="store_true",
                    help="FuxiCTR's default (lr x0.1 after an epoch without improvement); "
                         "off by default because hindsight does not decay")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--unseeded-shuffle", action="store_true",
                    help="use FuxiCTR's ParquetDataLoader as is (unseeded Ray shuffle)")
    ap.add_argument("--gpu", type=int, default=-1, help="CUDA device index, -1 for CPU")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: OMP_NUM_THREADS / torch's default)")
    ap.add_argument("--n-rows", type=int, default=None,
                    help="read only the first rows of each CSV (smoke tests)")
    ap.add_argument("--label", default="fuxictr DIN", help="first cell of the Markdown row")
    return ap.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    samples_dir = os.path.abspath(args.samples_dir)
    with open(os.path.join(samples_dir, "meta.json")) as f:
        meta = json.load(f)
    max_len = int(meta["n"])
    long_history = int(meta.get("protocol", {}).get("long_history", 200))

    here = os.path.dirname(os.path.abspath(__file__))
    work_dir = os.path.abspath(args.work_dir or os.path.join(
        here, "runs", os.path.basename(samples_dir.rstrip("/"))))
    dataset_id = "fuxictr_data"
    data_dir = os.path.join(work_dir, dataset_id)
    if os.path.isdir(data_dir) and not args.keep_data:
        shutil.rmtree(data_dir)  # build_dataset skips a folder with a feature_map.json
    os.makedirs(work_dir, exist_ok=True)
    seed_everything(seed=args.seed)
    if not args.unseeded_shuffle:
        # Ray Data may otherwise yield blocks in completion order.
        ray.data.DataContext.get_current().execution_options.preserve_order = True

    # -- dataset ------------------------------------------------------------
    seq = dict(type="sequence", dtype="str", splitter="^", max_len=max_len,
               padding="pre", feature_encoder=None, source="item")
    feature_cols = [
        # meta columns: carried through, not model inputs
        dict(name="user_id", active=True, dtype="str", type="meta"),
        dict(name="history_len", active=True, dtype="int", type="meta", remap=False),
        # target item
        dict(name="item_id", active=True, dtype="str", type="categorical", source="item"),
        dict(name="category", active=True, dtype="str", type="categorical", source="item"),
        # retrieved behaviors, oldest first, sharing the target's embeddings
        dict(name="hist_item_id", active=True, share_embedding="item_id", **seq),
        dict(name="hist_category", active=True, share_embedding="category", **seq),
    ]
    label_col = dict(name="label", dtype="float")
    params = dict(
        model="DIN", dataset_id=dataset_id, data_root=work_dir, data_format="csv",
        train_data=os.path.join(samples_dir, "train.csv"),
        valid_data=os.path.join(samples_dir, "valid.csv"),
        test_data=os.path.join(samples_dir, "test.csv"),
        feature_cols=feature_cols, label_col=label_col, group_id="user_id",
        min_categr_count=1, embedding_dim=args.embedding_dim,
    )
    read_kwargs = {"n_rows": args.n_rows} if args.n_rows else {}

    t0 = time.perf_counter()
    processor = FeatureProcessor(feature_cols=feature_cols, label_col=label_col,
                                 dataset_id=dataset_id, data_root=work_dir,
                                 group_id="user_id")
    train_data, valid_data, test_data = build_dataset(
        processor, train_data=params["train_data"], valid_data=params["valid_data"],
        test_data=params["test_data"], data_format="csv", **read_kwargs)
    prep_seconds = time.perf_counter() - t0
    feature_map = FeatureMap(dataset_id, data_dir)
    feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
    logging.info("feature map: %s", json.dumps(feature_map.features))

    # -- model --------------------------------------------------------------
    model_params = dict(
        model_root=os.path.join(work_dir, "checkpoints"),
        gpu=args.gpu,
        task="binary_classification",
        loss="binary_crossentropy",
        optimizer="adam",
        learning_rate=args.lr,
        metrics=["logloss", "AUC"],
        monitor="AUC",
        monitor_mode="max",
        early_stop_patience=args.patience,
        save_best_only=True,
        reduce_lr_on_plateau=args.lr_decay_on_plateau,
        embedding_regularizer=0,
        net_regularizer=0,
        embedding_dim=args.embedding_dim,
        dnn_hidden_units=args.dnn_hidden,
        dnn_activations=args.dnn_activation,
        attention_hidden_units=args.attention_hidden,
        attention_hidden_activations=args.attention_activation,
        attention_output_activation=None,
        attention_dropout=0,
        net_dropout=0,
        batch_norm=False,
        din_target_field=[("item_id", "category")],
        din_sequence_field=[("hist_item_id", "hist_category")],
        din_use_softmax=False,
        verbose=0,
    )
    model = TimedDIN(feature_map, **model_params)
    os.makedirs(model.model_dir, exist_ok=True)  # FuxiCTR's run_expid does this via set_logger
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    loader = {} if args.unseeded_shuffle else {"data_loader": SeededParquetDataLoader}
    train_gen, valid_gen = RankDataLoader(
        feature_map, stage="train", train_data=train_data, valid_data=valid_data,
        batch_size=args.batch_size, shuffle=True, data_format="parquet",
        seed=args.seed, **loader)
    # Validation with the inference batch size (as hindsight does).
    valid_gen.batch_size = args.eval_batch_size
    valid_gen.num_batches = int(np.ceil(valid_gen.num_samples / args.eval_batch_size))
    n_train = train_gen.num_samples

    t0 = time.perf_counter()
    model.fit(train_gen, epochs=args.epochs, validation_data=valid_gen)
    fit_seconds = time.perf_counter() - t0
    epochs_run = len(model.epoch_seconds)
    train_seconds = sum(model.epoch_seconds) - model.eval_seconds
    valid_aucs = [h.get("AUC") for h in model.valid_history]
    best_epoch = int(np.argmax(valid_aucs)) + 1 if valid_aucs else None

    # -- test ---------------------------------------------------------------
    test_gen = RankDataLoader(feature_map, stage="test", test_data=test_data,
                              batch_size=args.eval_batch_size, shuffle=False,
                              data_format="parquet")
    model.eval()
    # (a) end to end: FuxiCTR's data loader (Ray Data over parquet) + forward.
    ys, ps, users, hlens = [], [], [], []
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in test_gen:
            p = model.forward(batch)["y_pred"].reshape(-1).cpu().numpy()
            ps.append(p)
            ys.append(batch["label"].reshape(-1).numpy())
            users.append(batch["user_id"].reshape(-1).numpy())
            hlens.append(batch["history_len"].reshape(-1).numpy())
    e2e_seconds = time.perf_counter() - t0
    y = np.concatenate(ys).astype(np.float64)
    p = np.concatenate(ps).astype(np.float64)
    user = np.concatenate(users)
    hlen = np.concatenate(hlens)
    n_test = len(y)

    # (b) model only: the same batches already in memory, forward passes timed.
    batches = list(iter(test_gen))
    with torch.no_grad():
        model.forward(batches[0])  # warm-up
        t0 = time.perf_counter()
        for batch in batches:
            model.forward(batch)
        fwd_seconds = time.perf_counter() - t0

    all_m = metrics(y, p, user)
    long_mask = hlen > long_history
    long_m = metrics(y[long_mask], p[long_mask], user[long_mask]) if long_mask.any() else None

    device = "cpu" if args.gpu < 0 else f"cuda:{args.gpu}"
    result = OrderedDict([
        ("peer", "fuxictr"),
        ("model", "DIN"),
        ("samples", samples_dir),
        ("strategy", meta.get("strategy")),
        ("n", max_len),
        ("test", all_m),
        ("test_long_history", long_m),
        ("long_history_threshold", long_history),
        ("train_samples", n_train),
        ("valid_samples", valid_gen.num_samples),
        ("epochs", epochs_run),
        ("best_epoch", best_epoch),
        ("valid", model.valid_history),
        ("train_seconds", train_seconds),
        ("fit_seconds", fit_seconds),
        ("prep_seconds", prep_seconds),
        ("train_samples_per_s", n_train * epochs_run / train_seconds),
        ("infer_samples_per_s", n_test / e2e_seconds),
        ("infer_forward_samples_per_s", n_test / fwd_seconds),
        ("eval_batch_size", args.eval_batch_size),
        ("parameters", n_params),
        ("device", device),
        ("threads", torch.get_num_threads()),
        ("fuxictr", fuxictr.__version__),
        ("torch", torch.__version__),
        ("python", sys.version.split()[0]),
        ("hyper", OrderedDict([
            ("embedding_dim", args.embedding_dim), ("dnn_hidden", args.dnn_hidden),
            ("dnn_activation", args.dnn_activation),
            ("attention_hidden", args.attention_hidden),
            ("attention_activation", args.attention_activation), ("lr", args.lr),
            ("batch_size", args.batch_size), ("max_epochs", args.epochs),
            ("patience", args.patience), ("lr_decay_on_plateau", args.lr_decay_on_plateau),
            ("seed", args.seed), ("seeded_shuffle", not args.unseeded_shuffle),
            ("n_rows", args.n_rows)])),
    ])
    print(json.dumps(result))
    print("| model | AUC | gAUC | logloss | AUC (hist>%d) | train samples/s | "
          "infer samples/s (e2e / forward) | epochs | device | threads | versions |"
          % long_history)
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("| {} | {} | {} | {} | {} | {:.0f} | {:.0f} / {:.0f} | {} (best {}) | {} | {} | "
          "fuxictr {}, torch {} |".format(
              args.label, fmt(all_m["auc"]), fmt(all_m["gauc"]), fmt(all_m["logloss"]),
              fmt(long_m["auc"]) if long_m else "n/a",
              result["train_samples_per_s"], result["infer_samples_per_s"],
              result["infer_forward_samples_per_s"], epochs_run, best_epoch, device,
              result["threads"], fuxictr.__version__, torch.__version__))


if __name__ == "__main__":
    main()
