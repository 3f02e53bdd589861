#!/usr/bin/env python3
"""Peer comparison: RecBole's SASRec on hindsight's recall split.

Run through ``scripts/peer/recbole_sasrec.sh EXPORT_DIR`` (which installs
the pinned RecBole into the project venv); see docs/recall.md. Not part of
CI.

EXPORT_DIR is the output of ``hindsight export-recall --format recbole
--name NAME --out .../NAME`` (the folder's name must be the dataset name,
as RecBole looks for DATA_PATH/NAME/NAME.train.inter): the leave-last-out
split, already augmented (one training row per position, one valid and one
test row per user), plus NAME.item (the whole catalog). RecBole reads them
as benchmark files, so it trains and evaluates on exactly hindsight's
split. The script checks that by counting: RecBole's train / valid / test
row counts and its item count must equal meta.json's, else it stops.

Prints RecBole's full-ranking HR@10/50, NDCG@10/50, Recall@100 on the test
targets, its training samples/s (training rows / seconds inside RecBole's
training epochs, evaluation excluded), as one JSON line and one Markdown
table row on stdout.

RecBole evaluates sequential models in full-sort mode **without** masking
the user's history (FullSortEvalDataLoader builds no history index for
MODEL_TYPE SEQUENTIAL; the script asserts that on the installed RecBole),
so its figures compare with hindsight's default, ``exclude_seen = false``.
"""

import argparse
import json
import logging
import os
import sys
import time

import numpy as np
import torch

# --- compatibility patches (in this process, not in site-packages) --------
# RecBole 1.2 saves a checkpoint holding its Config object and reloads it
# with torch.load's old default; torch >= 2.6 defaults to weights_only=True,
# which refuses those pickles. Restore the old default for RecBole's calls.
_torch_load = torch.load


def _load(*args, **kwargs):
    kwargs.setdefault("weights_only", False)
    return _torch_load(*args, **kwargs)


torch.load = _load
# NumPy 2 removed aliases that RecBole 1.2 reads (Config.compatibility_settings
# does `np.float = np.float_`, ...): give them back to this process.
for _name, _value in (("float_", np.float64), ("complex_", np.complex128),
                      ("unicode_", np.str_), ("Inf", np.inf)):
    try:
        getattr(np, _name)
    except AttributeError:
        setattr(np, _name, _value)

from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader  # noqa: E402
from recbole.model.sequential_recommender import SASRec  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402
import recbole  # noqa: E402


def count_rows(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) - 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export_dir", help="output of `hindsight export-recall --format recbole`")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--stopping-step", type=int, default=3,
                   help="epochs without a better valid NDCG@10 before stopping")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--loss", default="CE", choices=["CE", "BPR"],
                   help="CE: full softmax over the catalog (RecBole's default); BPR: one sampled negative")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--gpu", action="store_true", help="use CUDA if present")
    p.add_argument("--work-dir", default=None, help="checkpoints and logs (default: EXPORT_DIR/recbole)")
    a = p.parse_args()

    export_dir = os.path.abspath(a.export_dir)
    name = os.path.basename(export_dir.rstrip("/"))
    meta_path = os.path.join(export_dir, "meta.json")
    if not os.path.exists(os.path.join(export_dir, f"{name}.train.inter")):
        sys.exit(f"error: {export_dir} has no {name}.train.inter; export with "
                 f"`hindsight export-recall --format recbole --name {name} --out {export_dir}`")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    work = a.work_dir or os.path.join(export_dir, "recbole")
    os.makedirs(work, exist_ok=True)

    config = Config(
        model="SASRec",
        dataset=name,
        config_dict={
            "data_path": os.path.dirname(export_dir),
            "benchmark_filename": ["train", "valid", "test"],
            "alias_of_item_id": ["item_id_list"],
            "load_col": {"inter": ["user_id", "item_id_list", "item_id"], "item": ["item_id"]},
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "MAX_ITEM_LIST_LENGTH": meta["max_len"],
            "train_neg_sample_args": None if a.loss == "CE" else {"distribution": "uniform", "sample_num": 1},
            "loss_type": a.loss,
            "eval_args": {"order": "TO", "mode": "full", "group_by": "user"},
            "metrics": ["Hit", "NDCG", "Recall"],
            "topk": [10, 50, 100],
            "valid_metric": "NDCG@10",
            "epochs": a.epochs,
            "stopping_step": a.stopping_step,
            "train_batch_size": a.batch_size,
            "eval_batch_size": 256,
            "learning_rate": a.lr,
            "hidden_size": a.hidden_size,
            "inner_size": 4 * a.hidden_size,
            "n_layers": a.layers,
            "n_heads": a.heads,
            "hidden_dropout_prob": a.dropout,
            "attn_dropout_prob": a.dropout,
            "seed": a.seed,
            "reproducibility": True,
            "use_gpu": bool(a.gpu and torch.cuda.is_available()),
            "checkpoint_dir": work,
            "show_progress": False,
            "log_wandb": False,
            "worker": 0,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    # The split must be hindsight's, row for row and item for item.
    got = {
        "train_rows": len(train_data.dataset),
        "valid_rows": len(valid_data.dataset),
        "test_rows": len(test_data.dataset),
        "items": dataset.item_num - 1,  # RecBole's id 0 is padding
    }
    want = {k: meta[k] for k in got}
    print(f"recbole {recbole.__version__}: counts {got}, hindsight's {want}", file=sys.stderr)
    if got != want:
        sys.exit(f"error: RecBole's dataset differs from the export: {got} vs {want}")
    if not isinstance(test_data, FullSortEvalDataLoader) or getattr(test_data, "uid2history_item", None) is not None:
        sys.exit("error: this RecBole masks history items in sequential full-sort evaluation; "
                 "compare with hindsight's exclude_seen numbers instead and update the script")

    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)

    epoch_seconds = []
    inner = trainer._train_epoch

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        epoch_seconds.append(time.perf_counter() - t)
        return out

    trainer._train_epoch = timed
    t0 = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    train_wall = time.perf_counter() - t0
    result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    train_secs = sum(epoch_seconds)
    samples_per_s = got["train_rows"] * len(epoch_seconds) / max(train_secs, 1e-9)
    r = {k: float(v) for k, v in result.items()}
    out = {
        "peer": f"recbole {recbole.__version__} SASRec",
        "dataset": name,
        "loss": a.loss,
        "seed": a.seed,
        "epochs_run": len(epoch_seconds),
        "hr@10": r["hit@10"], "hr@50": r["hit@50"],
        "ndcg@10": r["ndcg@10"], "ndcg@50": r["ndcg@50"],
        "recall@100": r["recall@100"],
        "train_samples_per_s": samples_per_s,
        "train_epoch_seconds": train_secs,
        "fit_wall_seconds": train_wall,
        "threads": torch.get_num_threads(),
        "device": str(config["device"]),
        "counts": got,
    }
    print(json.dumps(out))
    print(f"| recbole SASRec ({a.loss}) | {name} | {out['hr@10']:.4f} | {out['hr@50']:.4f} | "
          f"{out['ndcg@10']:.4f} | {out['ndcg@50']:.4f} | {out['recall@100']:.4f} | "
          f"{samples_per_s:.0f} | {len(epoch_seconds)} |")


if __name__ == "__main__":
    main()
