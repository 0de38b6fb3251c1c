"""The recipes of the shipped invariance models and the command that makes them.

``python -m lib.invariance NAME --ship`` trains ``NAME`` with its recipe (resuming from
``_build/train/NAME.ckpt`` if interrupted), evaluates it on test-phantom patches, writes
``data/NAME.pt`` and records command, settings, history, metrics and sha256 in
``data/manifest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time

from lib.checkpoints import dependencies, publish
from lib.invariance.training import (CVAEConfig, InvarianceConfig, Objective, architecture,
                                     patch_pool, train_sampler)
from lib.paths import ROOT

#: Layers analysed per denoiser: Chen and WGAN-VGG as in Eulig et al.; CPCE-2D only where a cut
#: holds (layer 1, and layer 19 after its last conveying path joins; see lib.invariance.cuts);
#: RED-CNN has none (its input shortcut crosses every layer). ``pair-average`` is the synthetic
#: ground truth (lib.invariance.synthetic).
LAYERS = {"chen": (1, 3, 5), "wganvgg": (1, 7, 13), "cpce2d": (1, 19), "pair-average": (1,)}

#: The settings of every shipped invariance model.
RECIPES: dict[str, InvarianceConfig] = {
    f"inv-{net}-l{layer}": InvarianceConfig(network=net, layer=layer)
    for net, layers in LAYERS.items() for layer in layers
}
#: The conditional VAEs beside them: the ground truth, Chen's layer 5 (a non-empty near null
#: space) and its layer 1 (the negative control).
RECIPES.update({f"inv-cvae-{net}-l{layer}": CVAEConfig(network=net, layer=layer)
                for net, layer in (("pair-average", 1), ("chen", 5), ("chen", 1))})


def ship(name: str, config: InvarianceConfig, device: str = "auto", command: str = "",
         resume: bool = True) -> dict:
    """Train ``config``, write ``data/NAME.pt`` and its manifest entry; returns the entry."""
    sources = dependencies([] if config.network == "pair-average" else [config.network])
    result = train_sampler(config, checkpoint=ROOT / "_build" / "train" / f"{name}.ckpt",
                           device=device, resume=resume)
    trained_on = str(next(result.model.parameters()).device)
    test = patch_pool("test", 4, config.n_val_patches, config.patch_size, config.seed)
    metrics = Objective(config, trained_on, result.model).evaluate(test.to(trained_on))
    entry = {"architecture": architecture(config), "command": command,
             "config": dataclasses.asdict(config),
             "data": "low-dose patches of phantom_pairs('train', n_train); test: 4 test phantoms",
             "steps": result.steps_done, "wall_time_s": round(result.seconds, 1),
             "history": result.history, "test": metrics, "depends_on": sources}
    return publish(name, {"model": result.model.cpu().state_dict()}, entry, trained_on)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.invariance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=sorted(RECIPES) + ["all"], metavar="NAME",
                        help=f"one or more of: all, {', '.join(RECIPES)}")
    parser.add_argument("--ship", action="store_true",
                        help="write data/NAME.pt and its manifest entry (the recipe's settings)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--restart", action="store_true",
                        help="ignore the saved training checkpoints and start from step 0")
    args = parser.parse_args(argv)
    names = list(RECIPES) if "all" in args.names else args.names
    command = "python -m lib.invariance " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for name in names:
        start = time.perf_counter()
        if args.ship:
            entry = ship(name, RECIPES[name], args.device, command, resume=not args.restart)
            print(name, json.dumps(entry["test"]))
        else:
            result = train_sampler(RECIPES[name], ROOT / "_build" / "train" / f"{name}.ckpt",
                                   args.device, resume=not args.restart)
            print(name, json.dumps(result.history[-1] if result.history else {}))
        print(f"{name} done in {time.perf_counter() - start:.0f} s")
    return 0
