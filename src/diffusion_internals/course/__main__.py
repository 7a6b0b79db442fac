"""Command line: train a course model and save it as a checkpoint folder.

    python -m diffusion_internals.course --dataset digits --schedule cosine --prediction eps --steps 4000 --out DIR
    python -m diffusion_internals.course --dataset digits --objective flow --steps 3000 --out DIR
    python -m diffusion_internals.course --dataset digits --classifier --steps 2000 --out DIR

``--objective`` picks the family (:mod:`diffusion_internals.course.training`): a diffusion model on a beta
schedule (the default), rectified flow or EDM; ``--schedule``, ``--zero-snr`` and ``--prediction`` describe a
beta schedule and are refused with the other two. Writes ``DIR/config.json``,
``DIR/diffusion_pytorch_model.safetensors``, ``DIR/training.json`` and, for generative models,
``DIR/scheduler_config.json`` (see :mod:`diffusion_internals.course.checkpoints`). On digits
and colour digits the samples are then scored at guidance 0, 1, 3 and 7 with the committed classifier
(:func:`diffusion_internals.course.evaluation.evaluate`) into ``training.json["metrics"]``.
The committed checkpoints are made by ``scripts/train_models.sh`` with these commands.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

import torch

from diffusion_internals.course import data
from diffusion_internals.course.checkpoints import OBJECTIVES
from diffusion_internals.parameterization import SHORT_NAMES
from diffusion_internals.schedules import BETA_SCHEDULE_OPTIONS

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    p = argparse.ArgumentParser(
        prog="python -m diffusion_internals.course",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, choices=[*data.DATASETS, *data.TOY_2D])
    p.add_argument("--out", required=True, help="folder to write the checkpoint to")
    p.add_argument("--classifier", action="store_true", help="train the feature classifier instead")
    p.add_argument("--objective", default="diffusion", choices=list(OBJECTIVES), help="the model family")
    p.add_argument("--schedule", default="cosine", choices=sorted(BETA_SCHEDULE_OPTIONS))
    p.add_argument("--zero-snr", action="store_true", help="rescale to zero terminal SNR (Lin et al. 2024)")
    p.add_argument("--prediction", default="eps", choices=list(SHORT_NAMES))
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay, 0 for none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", default="32,64", help="U-Net block_out_channels, comma-separated")
    p.add_argument("--layers-per-block", type=int, default=1)
    p.add_argument("--flaw", default=None, help="save a deliberately flawed variant (production.FLAWS)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads; fixed for repeatable runs")
    p.add_argument("--no-evaluate", action="store_true", help="skip scoring samples with the classifier")
    p.add_argument("--eval-per-class", type=int, default=50, help="samples per class and guidance scale")
    p.add_argument("--cifar10-root", default=None, help=f"CIFAR-10 batches folder (or set ${data.CIFAR10_ENV})")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument(
        "--device", default="cpu", help="where the network trains: cpu, cuda, cuda:1, ... (batches drawn on the CPU)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv, train, save, evaluate; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if args.objective != "diffusion":
        given = [
            option
            for option, name in (("--schedule", "schedule"), ("--zero-snr", "zero_snr"), ("--prediction", "prediction"))
            if getattr(args, name) != p.get_default(name)
        ]
        if given:
            p.error(
                f"{', '.join(given)} only apply to --objective diffusion (a beta schedule), "
                f"not to --objective {args.objective}"
            )
        if args.classifier or args.flaw is not None:
            p.error(f"--objective {args.objective} trains a generative model: it takes neither --classifier nor --flaw")
    torch.set_num_threads(args.threads)
    command = "python -m diffusion_internals.course " + shlex.join(argv)
    progress = not args.no_progress
    from diffusion_internals.course.checkpoints import alphas_cumprod_for, load_denoiser, save_checkpoint

    if args.classifier:
        from diffusion_internals.course.training import train_classifier

        model, record = train_classifier(
            args.dataset, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=progress
        )
        save_checkpoint(model, {**record, "command": command}, args.out)
        print(f"test accuracy {record['metrics']['test_accuracy']:.4f}; saved to {args.out}")
        return 0

    from diffusion_internals.course.models import class_conditional_unet
    from diffusion_internals.course.production import FLAWS, apply_flaw
    from diffusion_internals.course.training import train
    from diffusion_internals.denoisers import DiscreteDenoiser

    if args.flaw is not None and args.flaw not in FLAWS:
        parser().error(f"--flaw must be one of {list(FLAWS)}, got {args.flaw!r}")
    if args.flaw == "no-label-dropout" and args.label_dropout != 0:
        parser().error(f"--flaw no-label-dropout needs --label-dropout 0, got {args.label_dropout}")
    model = None
    if args.dataset in data.DATASETS:
        train_set = data.load_dataset(args.dataset, split="test", root=args.cifar10_root)  # for the image shape
        torch.manual_seed(args.seed)  # the U-Net initialises its weights from the global generator
        model = class_conditional_unet(
            in_channels=train_set.images.shape[1],
            sample_size=train_set.images.shape[2],
            num_classes=train_set.num_classes,
            block_out_channels=tuple(int(c) for c in args.channels.split(",")),
            layers_per_block=args.layers_per_block,
        )
    model, record = train(
        args.dataset,
        objective=args.objective,
        schedule=args.schedule,
        zero_snr=args.zero_snr,
        prediction_type=args.prediction,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        label_dropout=args.label_dropout,
        ema=args.ema,
        seed=args.seed,
        model=model,
        cifar10_root=args.cifar10_root,
        progress=progress,
        device=args.device,
    )
    model = model.to("cpu")  # saved, evaluated and compared on the CPU, wherever it trained
    record = {
        **record,
        "architecture": {"channels": args.channels, "layers_per_block": args.layers_per_block},
        "command": command,
    }
    trained = dict(record)
    if args.flaw is not None:
        record = apply_flaw(record, args.flaw)
    save_checkpoint(model, record, args.out)
    if args.dataset in ("digits", "colour_digits") and not args.no_evaluate:
        from diffusion_internals.course.evaluation import evaluate

        start = time.perf_counter()
        record["metrics"].update(
            evaluate(load_denoiser(args.out), args.dataset, per_class=args.eval_per_class, progress=progress)
        )
        if args.flaw in ("claims-cosine", "claims-v-prediction"):  # how it would have done, configured right
            honest = DiscreteDenoiser(model, alphas_cumprod_for(trained), prediction_type=trained["prediction_type"])
            record["flaw"]["metrics_with_actual_config"] = evaluate(honest, args.dataset, per_class=args.eval_per_class)
        record["evaluation_wall_clock_s"] = round(time.perf_counter() - start, 1)
        save_checkpoint(model, record, args.out)
    print(f"final training loss {record['metrics']['train_loss']:.4f}; saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
