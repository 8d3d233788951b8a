"""Run a script (`python fsdp_on_cpu.py SCRIPT ARGS...`, under `accelerate launch --use_fsdp`) with Accelerate's
FSDP on a multi-CPU launch.

Accelerate 1.16 switches to `DistributedType.FSDP` only for accelerator types (MULTI_GPU and the like), so on a CPU
machine `--use_fsdp` would quietly run as data parallel. torch's FSDP2 (`fully_shard`) itself runs on CPU with gloo,
so this test shim turns the MULTI_CPU state into FSDP with the plugin Accelerate built from the launch; everything
after that (sharding in `prepare`, `save_state`/`load_state`, `get_state_dict`) is Accelerate's own code.
"""

import runpy
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType


_accelerator_state_init = AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        # Both shared states: a later `AcceleratorState()` copies PartialState's over its own.
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin


if __name__ == "__main__":
    AcceleratorState.__init__ = _init_with_fsdp_on_cpu
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
