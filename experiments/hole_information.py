"""How much the holes the head would see tell the class by themselves, per setting of
``evidence_holes``, before any training (the number every feedback run writes to metrics.json as
``hole_information``, and from which ``evidence_holes: auto`` shows the head no holes).

    python experiments/hole_information.py --config configs/image_folder_small.yaml --set data_dir=data/textures
    python experiments/hole_information.py --config configs/decoy_mnist_position.yaml --set mask_fraction=1.0

Prints one line per setting: the hole information (0 chance, 1 every class told apart) and what
``auto`` would choose. The network is built as a run would build it (fold, seed and λ of the config;
``lam: auto`` looks at λ = 1, which does not change the holes).
"""
from __future__ import annotations

import argparse
import dataclasses

from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import AUTO, load_config, parse_sets
from pyro_ebnn.experiment.holes import HOLES_DECIDE_CLASS, holes_information
from pyro_ebnn.experiment.protocol import prepare_split


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    ap.add_argument("--holes", default="own,shared", help="the settings to look at (comma-separated)")
    args = ap.parse_args()
    cfg = load_config(args.config, {**parse_sets(args.set), "mode": "feedback"})
    train_set = prepare_split(cfg, progress=False).train
    lam = 1.0 if cfg.lam == AUTO else cfg.lam
    for holes in args.holes.split(","):
        model = build_model(dataclasses.replace(cfg, evidence_holes=holes), train_set.image_shape,
                            train_set.num_classes, lam=lam)
        information = holes_information(cfg, model, train_set)
        note = (f" (auto: {'none' if information >= HOLES_DECIDE_CLASS else 'shared'})"
                if holes == "shared" and information is not None else "")
        print(f"{cfg.name} evidence_holes={holes}: hole information "
              f"{'n/a' if information is None else f'{information:.3f}'}{note}")


if __name__ == "__main__":
    main()
