"""`train.fit`'s choice of the weights it ends with (`--select`), on a problem whose validation
loss rises every epoch: the validation labels are the opposite of the training labels."""

from argparse import Namespace

import torch
from torch import nn

from mammo_train.train import fit

EPOCHS = 5
PATIENCE = 2


def problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=gen)
    positive = x[:, 0] > 0
    allowed = torch.zeros(64, 8, dtype=torch.bool)
    allowed[torch.arange(64), torch.where(positive, 0, 2)] = True
    opposite = torch.zeros(64, 8, dtype=torch.bool)
    opposite[torch.arange(64), torch.where(positive, 2, 0)] = True
    return x, allowed, opposite


def fitted(select: str, tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 8)
    x, allowed, opposite = problem()
    args = Namespace(lr=1.0, weight_decay=0.0, epochs=EPOCHS, freeze_norm=False, augment="none", trainable="head",
                     seed=0, resume=False, select=select, patience=PATIENCE)
    state = fit(model, x, allowed, (x, opposite), args, tmp_path)
    return model, state


def test_select_best_keeps_the_epoch_of_lowest_validation_loss_and_stops(tmp_path):
    model, state = fitted("best", tmp_path)
    losses = [h["val_loss"] for h in state["history"]]
    assert losses == sorted(losses), "the validation loss rises every epoch"
    assert state["best_epoch"] == 1
    assert state["epoch"] == 1 + PATIENCE, "stops after --patience epochs without a better loss"
    final = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert not torch.equal(model.weight, final["weight"]), "the model went back to epoch 1's weights"
    assert torch.equal(model.weight, state["best_state"]["weight"])


def test_select_last_keeps_the_schedule_end_whatever_the_validation_says(tmp_path):
    model, state = fitted("last", tmp_path)
    assert state["epoch"] == EPOCHS
    assert state["best_epoch"] == EPOCHS
    final = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert torch.equal(model.weight, final["weight"])
