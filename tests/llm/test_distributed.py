"""torch.distributed starts only under a launcher, with a backend this torch build has."""

import pytest
import torch
import torch.distributed as dist

from nlpipe.llm.devices import init_distributed, local_device


@pytest.fixture()
def fake_dist(monkeypatch):
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    return calls


def test_single_process_never_initialises(monkeypatch, fake_dist):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed() == (0, 1)
    assert fake_dist == []


def test_gloo_without_cuda(monkeypatch, fake_dist):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert init_distributed() == (1, 2)
    assert fake_dist == ["gloo"]


def test_gloo_when_this_build_has_no_nccl(monkeypatch, fake_dist):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    init_distributed()
    assert fake_dist == ["gloo"]


def test_nccl_with_cuda_and_nccl(monkeypatch, fake_dist):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    init_distributed()
    assert fake_dist == ["nccl"]


def test_auto_device_follows_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_device("auto") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert local_device("auto") == torch.device("cpu")
    assert local_device("cpu") == torch.device("cpu")
