"""PyTorch models and their trainers (the source side of conversion)."""
