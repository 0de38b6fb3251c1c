"""The recipes of the shipped invariance models and the command that makes them.

``python -m lib.invariance NAME --ship`` trains ``NAME`` with its recipe (resuming from
``_build/train/NAME.ckpt`` if interrupted), evaluates it on test-phantom patches, writes
``data/NAME.pt`` and records command, settings, history, metrics and sha256 in
``data/manifest.json``. ``inv-vae`` comes first: every cINN models its latent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time

from lib.invariance.training import InvarianceConfig, Objective, patch_pool, train
from lib.models.registry import register
from lib.paths import DATA, ROOT
from lib.storage import atomic_save

#: Layers analysed per denoiser: Chen and WGAN-VGG as in Eulig et al.; RED-CNN and CPCE-2D at their
#: first, a middle and their last encoder convolution.
LAYERS = {"chen": (1, 3, 5), "wganvgg": (1, 7, 13), "redcnn": (1, 5, 9), "cpce2d": (1, 3, 7)}

#: The settings of every shipped invariance model.
RECIPES: dict[str, InvarianceConfig] = {
    "inv-vae": InvarianceConfig("vae", steps=3000),
    **{f"inv-{net}-l{layer}": InvarianceConfig("cinn", network=net, layer=layer, steps=1500,
                                               lr=5e-4)
       for net, layers in LAYERS.items() for layer in layers},
    **{f"inv-cvae-{net}": InvarianceConfig("cvae", network=net, steps=2000)
       for net in ("chen", "wganvgg")},
}


def ship(name: str, config: InvarianceConfig, device: str = "auto", command: str = "") -> dict:
    """Train ``config``, write ``data/NAME.pt`` and its manifest entry; returns the entry."""
    result = train(config, checkpoint=ROOT / "_build" / "train" / f"{name}.ckpt", device=device)
    trained_on = str(next(result.model.parameters()).device)
    test = patch_pool("test", 4, config.n_val_patches, config.patch_size, config.seed)
    metrics = Objective(config, trained_on, result.model).evaluate(test.to(trained_on))
    target = DATA / f"{name}.pt"
    atomic_save({"model": result.model.cpu().state_dict()}, target)
    entry = {"architecture": f"invariance-{config.kind}", "command": command,
             "config": dataclasses.asdict(config),
             "data": "low-dose patches of phantom_pairs('train', n_train); test: 4 test phantoms",
             "steps": result.steps_done, "wall_time_s": round(result.seconds, 1),
             "history": result.history, "test": metrics}
    return register(name, target, entry, trained_on)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.invariance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=sorted(RECIPES) + ["all"], metavar="NAME",
                        help=f"one or more of: all, {', '.join(RECIPES)}")
    parser.add_argument("--ship", action="store_true",
                        help="write data/NAME.pt and its manifest entry (the recipe's settings)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    names = list(RECIPES) if "all" in args.names else args.names
    command = "python -m lib.invariance " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for name in names:
        start = time.perf_counter()
        if args.ship:
            entry = ship(name, RECIPES[name], args.device, command)
            print(name, json.dumps(entry["test"]))
        else:
            result = train(RECIPES[name], ROOT / "_build" / "train" / f"{name}.ckpt", args.device)
            print(name, json.dumps(result.history[-1] if result.history else {}))
        print(f"{name} done in {time.perf_counter() - start:.0f} s")
    return 0
