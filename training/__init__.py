"""Training the bundled default model: synthetic curriculum generators, tokenizer, trainer, evaluation."""
