"""Training the joint model with the TFRS retrieval loss and exporting its towers as
SavedModels. Only the trainer imports TFRS; serving never imports this package."""
