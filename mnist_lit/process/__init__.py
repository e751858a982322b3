"""Process-level settings: threads per job, DDP start-up, memory reuse, cost of a job, the profiler."""
