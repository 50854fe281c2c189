"""The learned critic: a small model trained on real persona conversations and corruptions of them."""
