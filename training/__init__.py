"""Training: runs, the one ListMLE loop (head on cached features or LoRA through the VLM), losses,
metrics, the gate. May import annotation.dataset and modelloop; imported by morale, bench, annotation.research."""
