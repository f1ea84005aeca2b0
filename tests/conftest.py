import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny():
    from genmodes.models import load_model

    return load_model("tiny-random")


@pytest.fixture(scope="session")
def smollm():
    """The bundled SmolLM2-135M (fp32 cache made on first use, ~30 s; ~1 s after)."""
    from genmodes.models import load_model

    return load_model("smollm2-135m")
