"""`make chaos`: the demo pipeline under injected faults, checked event by event.

- `run.py`: the run itself (`python -m streamline.chaos`);
- `handler.py`: the demo handler with faults injected inside the function;
- `timeline.py`: the picture of a run (events applied per second, IteratorAge per shard, the
  faults), written under build/chaos/.
"""
