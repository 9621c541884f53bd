"""Choose the torch device and dtype a model runs on, failing with a message that says what to do."""

import os

import torch

from ..errors import DeviceError, Errors

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _one_thread_after_fork() -> None:
    # torch's CPU thread pool is GNU OpenMP's, which does not survive fork(): a forked child
    # (a spaCy worker of nlp.pipe(n_process=N)) whose parent had run the model waits forever
    # for the parent's pool threads at its first parallel op. With one thread it never enters
    # the pool; N workers at one thread each is the right share of the CPU anyway.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_after_fork)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA, else MPS, else CPU; an explicit device must exist."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(Errors.E011.format(device=name)) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise DeviceError(Errors.E010.format(
                device=name, reason=f"CUDA is not available (torch {torch.__version__} is {built})"))
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(Errors.E010.format(
                device=name, reason=f"only {torch.cuda.device_count()} CUDA device(s) are visible"))
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise DeviceError(Errors.E010.format(device=name, reason="MPS is not available on this machine"))
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(Errors.E011.format(device=name))
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX), where bf16
    forward passes run about twice the float32 speed; elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` means bf16 on CUDA where supported (fp16 otherwise) and on a CPU with native bf16
    units, float32 on other CPUs and on MPS.

    On such a CPU bf16 answers about 1.6-1.9x as fast with the same F1: with the shipped weights
    (span_selector.v5.json) the default pipeline scored F1 54.7 in bf16 against 55.3 in float32
    on the 269 Notre Dame questions and 69.7 against 69.5 on the 810 dev-part ones, the same
    pooled (README, "Measured"); `nlpipe train` computes its features in it too."""
    name = name.strip().lower()
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else torch.float32
    if name not in DTYPES:
        raise DeviceError(Errors.E012.format(dtype=name))
    return DTYPES[name]


def init_distributed() -> tuple[int, int]:
    """(rank, world size). torch.distributed is started only under a launcher (WORLD_SIZE > 1),
    with NCCL where CUDA and NCCL exist and gloo otherwise, so a single process never asks for
    a backend its torch build lacks ("Distributed package doesn't have NCCL built in")."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and dist.is_nccl_available()
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return dist.get_rank(), dist.get_world_size()


def local_device(name: str) -> torch.device:
    """resolve_device, except that `auto` under a multi-process launcher takes this process's GPU."""
    if name.strip().lower() == "auto" and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return resolve_device(f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}")
    return resolve_device(name)
