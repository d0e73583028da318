"""Fine-tuning and continued pre-training of T5 models."""
