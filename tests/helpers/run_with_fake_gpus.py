"""`python tests/helpers/run_with_fake_gpus.py ARGS...`: the labconsole command line with fake NVIDIA GPUs.

The real nvidia-ml-py bindings talk to tests/helpers/fake_nvml.py's libnvidia-ml on the real clock, so a
whole `labconsole run` (recorder, phases, analysis, bundle) goes through the nvml driver.
GPUs: an H100 whose power follows nothing in particular (300 W, a step to 320 W at 2 s) and an
A100 at 250 W.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pynvml  # noqa: E402

import fake_nvml as fk  # noqa: E402


def main() -> int:
    lib = fk.FakeNvmlLib([fk.h100(0, steps=[(0.0, 300.0), (2.0, 320.0)]), fk.a100(1, steps=[(0.0, 250.0)])])
    pynvml.nvmlLib = lib
    pynvml._nvmlGetFunctionPointer_cache = {}
    from labconsole.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
