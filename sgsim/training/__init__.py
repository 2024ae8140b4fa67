"""Training the SGSIM audio encoder into a frozen CLIP space: contrastive losses, augmentations and a resumable loop."""
