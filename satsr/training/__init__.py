"""Training the GCN family: options (config), the model and its step (gcn), losses, model
selection, the run folder (rundir), data-parallel helpers (distributed) and the loop."""
