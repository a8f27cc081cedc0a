"""Training the GCN family: configuration, losses, model selection and the training loop."""
