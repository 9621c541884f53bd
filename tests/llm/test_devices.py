"""nlpipe.llm.devices: device and dtype choice, with CUDA faked through monkeypatch (no GPU needed)."""

import pytest
import torch

from nlpipe.errors import DeviceError
from nlpipe.llm import devices
from nlpipe.llm.devices import resolve_device, resolve_dtype

CPU_HAS_FAST_BF16 = devices.cpu_has_fast_bf16  # the real check, before any test stubs it


@pytest.fixture()
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture()
def one_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


@pytest.mark.parametrize("name", ["cpu", " CPU ", "Cpu"])
def test_cpu(name):
    assert resolve_device(name) == torch.device("cpu")


def test_auto_is_cpu_without_accelerators(no_accelerator):
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_is_cpu_on_this_machine():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto").type in ("cpu", "mps")


def test_auto_prefers_cuda(one_cuda_device):
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_auto_uses_mps_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_says_use_auto(no_accelerator, name):
    with pytest.raises(DeviceError) as caught:
        resolve_device(name)
    message = str(caught.value)
    assert "E010" in message
    assert f"'{name}'" in message
    assert 'device = "auto"' in message
    assert "CUDA is not available" in message
    assert torch.__version__ in message


def test_cuda_index_beyond_visible_devices(one_cuda_device):
    with pytest.raises(DeviceError) as caught:
        resolve_device("cuda:3")
    message = str(caught.value)
    assert "E010" in message
    assert "'cuda:3'" in message
    assert "only 1 CUDA device(s) are visible" in message


@pytest.mark.parametrize("name, expected", [("cuda", torch.device("cuda", 0)),
                                            ("cuda:0", torch.device("cuda", 0))])
def test_visible_cuda_device(one_cuda_device, name, expected):
    assert resolve_device(name) == expected


def test_mps_missing(no_accelerator):
    with pytest.raises(DeviceError, match="E010.*MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("name", ["tpu", "foo", "meta", "xla", "cuda:x", ""])
def test_unknown_device(name):
    with pytest.raises(DeviceError) as caught:
        resolve_device(name)
    assert "E011" in str(caught.value)
    assert "auto, cpu, cuda, cuda:N or mps" in str(caught.value)


def test_device_error_exit_code():
    assert DeviceError.exit_code == 2


@pytest.mark.parametrize("fast_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_dtype_auto_on_cpu_is_bf16_where_the_cpu_has_native_bf16(monkeypatch, fast_bf16, expected):
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert resolve_dtype("auto", torch.device("cpu")) == expected
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32


def test_fast_bf16_is_read_from_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert CPU_HAS_FAST_BF16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not CPU_HAS_FAST_BF16()


def test_dtype_auto_on_mps():
    assert resolve_dtype("auto", torch.device("mps")) == torch.float32


@pytest.mark.parametrize("bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_dtype_auto_on_cuda(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_dtype("auto", torch.device("cuda", 0)) == expected


@pytest.mark.parametrize("name, expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16),
                                            ("float16", torch.float16), (" Float16 ", torch.float16)])
def test_explicit_dtype(name, expected):
    assert resolve_dtype(name, torch.device("cpu")) == expected


@pytest.mark.parametrize("name", ["fp64", "float64", "int8", "half", ""])
def test_bad_dtype(name):
    with pytest.raises(DeviceError) as caught:
        resolve_dtype(name, torch.device("cpu"))
    assert "E012" in str(caught.value)
    assert "auto, float32, bfloat16 or float16" in str(caught.value)
