"""What a run shows: the progress bar and epoch lines, the terminal, TensorBoard's tabs, Markdown tables."""
