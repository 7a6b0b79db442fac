"""The course's own world, on top of the core: what the chapters, assignments and projects run on.

- `data`: digits (scikit-learn's bundled set), colour digits, CIFAR-10 from a local folder, 2-D toy data.
- `models`: the class-conditional U-Net, the MLP for 2-D points, the digits classifier.
- `training`: the simple loss, loss per timestep, the trainer, the classifier's trainer.
- `checkpoints`: the committed checkpoints (folders beside the loaders) and how to load them.
- `metrics`: FID with its bootstrap interval, KID, class accuracy, saturation and clipping; the failure
  diagnostics of chapter 7.
- `evaluation`: one scorer for generated classes (FID, class accuracy, colour measures).
- `guidance_sweep`, `production`, `tradeoffs`: the studies of chapter 5, Project C and Project B.
- `digits_pipeline`: a diffusers pipeline around the committed digits models.
- `kdiffusion`: k-diffusion's own samplers, imported without its training extras, to run on the course's
  denoisers (optional; the error names the install command).
- `plotting`: the image grids and sample plots the chapters share.
- `grading`: the checks of the hidden tests, the grading kernel (`grading.kernel`) and a solved release
  (`grading.solutions`).

`python -m diffusion_internals.course --help` trains a model and saves it as a checkpoint folder.
"""
