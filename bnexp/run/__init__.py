"""One run, from a composed config to its record: `lifecycle` (device and world, ranks,
checkpoint, provenance, wandb, summary, failure) around `train` (the step and the loop), with
`world` and `ranks` for several devices, `checkpoint`, `provenance` and `tracking` (wandb)."""
