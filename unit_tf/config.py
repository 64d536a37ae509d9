"""The single source of hyperparameters: one dataclass, presets, and `--set key=value` overrides.

Resolution order (later wins): dataclass defaults -> preset -> `--config FILE` -> `--set` -> CLI flags.
The resolved config is written to every run directory as `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unit_tf.catalogue import (
    DA_DATASET,
    DA_SYNTAX,
    DIGIT_CLASSES,
    DIGIT_PAIRS,
    IMAGE_DATASETS,
    check_image_dataset,
    is_da_dataset,
    is_image_dataset,
    split_da_dataset,
)
from unit_tf.errors import UserError


@dataclass
class ModelConfig:
    """Network shapes: the official `cocogan_nets_da.py` digit networks ("digits") or the residual
    translation networks of the paper's 256-px results ("residual", official COCOResGen2 / COCODis)."""

    architecture: str = "digits"  # network family, one of ARCHITECTURES (builders: unit_tf.networks)
    image_size: int = 32
    channels_a: int = 3  # image channels of domain A (set from the data set)
    channels_b: int = 1  # image channels of domain B (set from the data set)
    gen_ch: int = 64  # base width of encoders and generators
    dis_ch: int = 64  # base width of discriminators
    # Shared-latent coupling: how many of the HIGHEST encoder layers, the FIRST (latent-side) generator
    # layers and the highest discriminator layers are one set of layer objects used by both domains.
    shared_encoder_layers: int = 4
    shared_generator_layers: int = 3
    shared_discriminator_layers: int = 4
    leaky_slope: float = 0.01  # LeakyReLU slope of E/G: PyTorch's default, as in the official code
    bn_momentum: float = 0.9  # = 1 - PyTorch momentum 0.1
    bn_epsilon: float = 1e-5
    latent_noise_std: float = 1.0  # z = mean + std * N(0, I); the paper's unit-variance q(z|x)
    coord_channels: bool = False  # append normalized x/y coordinate channels to encoder inputs
    # Domain adaptation (official cocogan_nets_da.py): a classifier head on the shared high D layers.
    # 0: no classifier head; > 0: a head with one output per class of the data (resolve_config sets the count:
    # 10 for the digit pairs, the source's classes for dataset "da").
    num_classes: int = 0
    dis_dropout: bool = False  # official D dropout 0.1 / 0.3 / 0.5 / 0.5 after its four conv blocks
    # Test-time augmentation of D_b's classifier (target domain): its prediction is the mean of its softmax over
    # every colour variant loss.translated_jitter trains it on (2 for gray images, 48 for colour ones).
    test_time_jitter: bool = False
    # The paper's ablation "no weight sharing": False shares no layer between the domains (E, G and D),
    # whatever the shared_*_layers counts say.
    share_weights: bool = True
    # Residual (translation) networks. Encoder: 7x7 conv, n_downsample 3x3/2 convs, res_blocks residual blocks
    # (its last shared_encoder_layers layers shared); the generator mirrors it. Instance norm throughout.
    n_downsample: int = 2
    res_blocks: int = 4
    dis_layers: int = 4  # discriminator depth: stride-2 3x3 conv + LeakyReLU layers before the 1x1 logit conv
    dis_scales: int = 1  # multi-scale discriminators: one per scale, each on a 2x average-pooled input
    # Fidelity switches of the residual encoders / generators (defaults = the official networks): how the decoder
    # doubles the resolution, "transposed" (official 4x4/2 transposed convs) | "resize_conv" (nearest 2x resize +
    # 3x3 conv, Odena et al. 2016: no checkerboard), and the normalization of the encoders' and the decoders'
    # (generators') layers, "instance" (official; removes every feature map's own mean, and with it the colour of
    # flat regions) | "layer" (MUNIT's decoder LayerNorm: one mean and variance per image, so colour survives) |
    # "none".
    upsample: str = "transposed"
    encoder_norm: str = "instance"
    decoder_norm: str = "instance"
    # Initial conv weights of the residual encoders / generators: "gaussian" (official gaussian_weights_init,
    # N(0, 0.02) whatever the fan-in) | "he" (He et al. 2015: variance 2 / fan_in, which keeps the signal's scale
    # through ReLU layers that no norm rescales; the generators' 1x1 output conv keeps N(0, 0.02)).
    gen_init: str = "gaussian"
    # Fast paths (unit_tf.fast: small convs as matmuls, TF's fused batch-norm and Adam kernels): exact rewrites
    # with the same variables, so this changes how fast a run is, not what it is. auto: on when TensorFlow sees
    # no GPU (they work around CPU kernels; none was measured faster on a GPU) | off: plain Keras layers and Adam.
    fast_paths: str = "auto"


@dataclass
class LossConfig:
    """Loss weights (paper, translation setting: GAN 10, KL 0.1, recon 100, cycle KL 0.1, cycle L1 100)."""

    gan: float = 10.0
    kl: float = 0.1
    recon: float = 100.0
    cycle_kl: float = 0.1
    cycle_recon: float = 100.0
    # Normalizations: the paper's weights go with "mean" KL (mean of mean^2) and "l1" (mean |x - x'|);
    # the official DA code's with "sum" KL (summed over latent dims) and "sse" (per-image summed squared error).
    kl_reduction: str = "mean"  # mean | sum
    recon_distance: str = "l1"  # l1 | sse
    gan_type: str = "bce"  # bce: the paper's non-saturating cross-entropy | lsgan: least squares
    # The paper's ablations: recon_stream=False drops the reconstruction stream (with share_weights=False
    # this is CycleGAN); cycle=False drops the cycle-consistency stream.
    recon_stream: bool = True
    cycle: bool = True
    gan_recon_stream: bool = False  # official DA code: reconstructions are also fakes for D (and G fools D)
    # Domain adaptation terms (all need model.num_classes > 0; labels of domain A only):
    classifier: float = 0.0  # cross-entropy of D_a's classifier on labelled source images (official 10)
    classifier_translated: float = 0.0  # same labels on the source images translated to B, through D_b
    feature: float = 0.0  # distance of shared D features of x_ab (D_b) and x_aa (D_a), and of x_ba / x_bb
    feature_distance: str = "l2"  # l2: per-image summed squared distance (official code) | l1 (the paper)
    # True: the feature term reads the D update's own pass over the fakes (with dropout) instead of a second,
    # deterministic pass as the official code does: one discriminator forward + backward less per step.
    feature_from_gan_pass: bool = False
    # E/G update: D_b's classifier must read each translation x_ab as its source label (keeps the digit's
    # identity through translation; CyCADA's semantic consistency on UNIT's own classifier).
    semantic: float = 0.0
    # D update: information maximization on the UNLABELLED target images through D_b's classifier (SHOT, Liang et
    # al. 2020): the mean entropy of each image's prediction minus the entropy of the batch's mean prediction, so
    # predictions grow confident without collapsing onto a few classes. 0: no term.
    target_entropy: float = 0.0
    # D update: D_b's classifier reads a colour-jittered copy of each unlabelled target image as its prediction on
    # the image itself where that prediction is confident (max probability >= consistency_threshold; FixMatch's
    # pseudo-labels, Sohn et al. 2020). 0: no term.
    target_consistency: float = 0.0
    consistency_threshold: float = 0.95
    # classifier_translated grows linearly from 0 to its weight over this many steps: early translations are
    # noise, and learning labels on them would undo D_b's source-only initialization (semantic starts at once:
    # that initialization is what keeps early translations from collapsing to one digit).
    translated_rampup_steps: int = 0
    # The translated-source classifier sees each translation with each channel inverted with probability 1/2 and
    # (colour targets) in a random channel order: one translation style stands for the target's many (an MNIST-M
    # digit takes the inverse colours of its photo patch, while UNIT's translations of a digit share one style).
    translated_jitter: bool = False
    # Identity (colour preservation, CycleGAN's identity term in UNIT's form): an image already in the target
    # domain comes back unchanged through the translation, weight x (L1(G_b(E_a(x_b)), x_b) + L1(G_a(E_b(x_a)),
    # x_a)). 0: no term. Needs equal channel counts.
    identity: float = 0.0
    # Edge term: L1 between the image gradients (horizontal and vertical pixel differences) of each reconstruction
    # (and cycle reconstruction) and its input, weight x. Plain L1 lets a blurred stroke cost little; this term
    # prices the blur itself. 0: no term.
    edge: float = 0.0


@dataclass
class OptimizerConfig:
    """Adam for both the discriminator and the encoder/generator updates."""

    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    epsilon: float = 1e-8  # PyTorch's Adam default (Keras' is 1e-7)
    weight_decay: float = 5e-4
    # "l2": wd * w added to the gradient before Adam (PyTorch Adam(weight_decay=...), the official code);
    # "decoupled": AdamW-style decay applied by the Keras optimizer.
    weight_decay_mode: str = "l2"
    # Learning-rate schedule (one of SCHEDULES; unit_tf.optimizers), counted in optimizer updates, so a resumed
    # run continues it. constant | step: times schedule_gamma every schedule_steps steps (official UNIT: halve
    # every 100000) | linear_decay: constant until decay_start * train.steps, then linearly to 0 at train.steps
    # (CycleGAN).
    schedule: str = "constant"
    schedule_steps: int = 100000
    schedule_gamma: float = 0.5
    decay_start: float = 0.5  # a fraction of train.steps
    # The discriminators' learning rate is learning_rate times this (two time-scale updates, TTUR: Heusel et al.
    # 2017). 1 in the paper and the official code.
    dis_lr_scale: float = 1.0


@dataclass
class DataConfig:
    # Digit pairs (source A first): svhn_mnist, mnist_usps, usps_mnist, mnist_mnistm. Domain adaptation on your
    # own files: "da" (domain_a: labelled source, domain_b: unlabelled target; "da:SOURCE,TARGET" sets both).
    # Translation: "folders" (domain_a, domain_b), "folder:ROOT" (trainA/trainB/testA/testB), "cycle_gan/<name>"
    # (TFDS), "celeb_a" (attribute).
    dataset: str = "svhn_mnist"
    data_dir: str | None = None  # digits: local files; None -> $UNIT_DATA_DIR, then TFDS
    domain_a: str | None = None  # datasets "folders" and "da": the two folders
    domain_b: str | None = None
    target_test: str | None = None  # dataset "da": labelled target images, for evaluation only
    channels: int = 0  # dataset "da": 0 keeps each domain's own (1 gray, 3 colour); 1 or 3 converts both
    # The classifier's class names, set from the data (dataset "da": the source's class folders; empty for the
    # digit pairs, whose classes are the digits 0..9: see class_names()).
    class_names: list[str] = field(default_factory=list)
    attribute: str | None = None  # dataset "celeb_a": images with it form domain A, without it domain B
    load_size: int = 0  # translation data: shorter side resized to this, then a random image_size crop
    flip: bool = True  # translation data: random horizontal flips
    cache_mb: int = 2048  # translation data: decode once into memory when the resized images fit this
    batch_size: int = 64  # images per domain per step, summed over all replicas
    # The paper's augmentation: add colour-inverted copies of a domain's training images (official svhn2mnist
    # inverts MNIST, domain B).
    invert_a: bool = False
    invert_b: bool = False


@dataclass
class TrainConfig:
    steps: int = 30000
    seed: int = 0  # weights' initialisation, latent noise, dropout; and the batches unless data_seed is set
    # The order and augmentation of the training batches; None: `seed`. Set apart from `seed` to tell a result's
    # dependence on the initial weights from its dependence on the data order.
    data_seed: int | None = None
    strategy: str = "auto"  # one of STRATEGIES: auto | one_device | mirrored | multi_worker (TF_CONFIG)
    log_every: int = 50
    checkpoint_every: int = 1000
    sample_every: int = 1000
    keep_checkpoints: int = 3  # the newest N ckpt-<step> files are kept; 0 keeps every one
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism: bit-exact resumes
    on_nan: str = "stop"  # non-finite loss (ON_NAN): "stop" (keep the last good checkpoint) or "skip-step"
    # Compute precision: "auto" (bfloat16 where the hardware computes it natively, else float32: see
    # unit_tf.hardware; a run's config.json records what it resolved to); "float32"; "bfloat16" (Keras
    # mixed_bfloat16: bf16 math, float32 weights and losses; faster on CPUs with AMX/AVX512-BF16 and on GPUs
    # of compute capability >= 8.0, emulated and slow elsewhere); "float16" (mixed_float16 with dynamic loss
    # scaling: GPUs without bf16 units).
    precision: str = "auto"
    time_limit_minutes: float = 0.0  # stop (with a checkpoint) after this much wall-clock time; 0 = no limit
    # Domain adaptation: first train D_a + classifier on labelled source images for this many steps (the
    # source-only model, saved in R/eval/source_only.json), then UNIT starts from it.
    classifier_warmup_steps: int = 0
    eval_every: int = 500  # classifier accuracy on both test splits, logged to R/accuracy.csv (DA runs)

    @property
    def batch_seed(self) -> int:
        """The seed of the training batches' order and augmentation."""
        return self.seed if self.data_seed is None else self.data_seed


@dataclass
class UNITConfig:
    """Everything that defines a run."""

    preset: str = "digits"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UNITConfig:
        config = cls()
        apply_overrides(config, {k: v for k, v in flatten(values).items() if k not in RETIRED_KEYS})
        return config


#: optimizer.schedule: the learning-rate schedules of unit_tf.optimizers.
SCHEDULES = ("constant", "step", "linear_decay")
# train.strategy: the tf.distribute strategies of unit_tf.distribute.make_strategy.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
# train.on_nan: what a non-finite loss does.
ON_NAN = ("stop", "skip-step")
#: model.fast_paths: "auto" (the rewrites of unit_tf.fast where measured faster: CPUs, not GPUs) or "off".
FAST_PATHS = ("auto", "off")

#: model.upsample, model.encoder_norm / decoder_norm and model.gen_init (residual networks; the first of each is the
#: official one).
UPSAMPLING = ("transposed", "resize_conv")
GENERATOR_NORMS = ("instance", "layer", "none")
GENERATOR_INITS = ("gaussian", "he")

#: data.channels of dataset "da": 0 keeps each domain's own, 1 and 3 convert both domains to gray or RGB.
DA_CHANNELS = (0, 1, 3)
#: The preset of dataset "da" when --preset is not given (that of the digit pairs).
DA_PRESET = "digits_da"

#: Network families (model.architecture): the paper's 32x32 digit networks and its residual translation networks.
ARCHITECTURES = ("digits", "residual")

# train.precision -> Keras dtype policy.
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# train.precision values: "auto" (resolved by unit_tf.hardware.resolve_precision when a run starts) or a policy's.
PRECISION_CHOICES = ("auto", *PRECISIONS)
# --mixed-precision (train.py, benchmarks) -> train.precision.
MIXED_PRECISION = {"auto": "auto", "off": "float32", "bf16": "bfloat16", "fp16": "float16"}

# Settings that earlier versions wrote to config.json and that no longer exist: ignored when a saved config is read.
RETIRED_KEYS = frozenset({"train.inject_nan_step"})  # a test hook, now in tests/nan_train.py

# Settings that may change between invocations on the same run directory without making it another run.
NON_DEFINING_KEYS = frozenset(
    {
        "model.fast_paths",
        "data.data_dir",
        "data.target_test",
        "data.cache_mb",
        "train.steps",
        "train.strategy",
        "train.log_every",
        "train.checkpoint_every",
        "train.sample_every",
        "train.keep_checkpoints",
        "train.deterministic",
        "train.on_nan",
        "train.time_limit_minutes",
        "train.eval_every",
    }
)

# Domain adaptation recipe (docs/domain_adaptation.md lists what was measured to choose it): the official DA
# networks (shared D trunk + classifier head, dropout, x/y coordinate channels) and source classifier (weight
# 10), the paper's loss weights without the cycle term and with GAN weight 3, plus levers measured to pay off on
# a small budget: the classifier also learns from translated source images (colour-jittered), the generators keep
# the digit's identity, and D_b's classifier is made confident on the unlabelled target images and consistent
# under colour changes of them.
# q(z|x) noise std 0.1: with unit noise the encoders of the thin-stroke domain collapsed (blank reconstructions).
# The last levers (GAN 3, target entropy, jitter, the colour-averaged prediction, target consistency) were chosen
# on the development pair MNIST -> MNIST-M.
DA_SETTINGS: dict[str, Any] = {
    "model.num_classes": DIGIT_CLASSES,  # a classifier head; resolve_config sizes it to the data's classes
    "model.dis_dropout": True,
    "model.coord_channels": True,
    "model.latent_noise_std": 0.1,
    "loss.cycle_kl": 0.0,
    "loss.cycle_recon": 0.0,
    "loss.classifier": 10.0,
    "loss.classifier_translated": 10.0,
    "loss.translated_rampup_steps": 1000,
    "loss.feature": 1e-4,
    # The paper's L1 (per-image sum of |.|) instead of the official squared distance: it did better in paired
    # 30-minute runs (docs/domain_adaptation.md, "How the recipe was chosen").
    "loss.feature_distance": "l1",
    "loss.semantic": 10.0,
    # GAN weight 3, not the paper's 10: the D update's real/fake loss reshapes the trunk the classifier head
    # shares, and on MNIST -> MNIST-M a weight of 10 pulled the target accuracy below the source-only start.
    "loss.gan": 3.0,
    "loss.target_entropy": 10.0,
    "loss.translated_jitter": True,
    # Chosen on MNIST -> MNIST-M after the frozen recipe's report runs; changes predictions only, not training.
    "model.test_time_jitter": True,
    # FixMatch-style pseudo-labels on colour-jittered unlabelled target images (threshold 0.95): chosen on
    # MNIST -> MNIST-M by one tuning run ahead of the earlier recipe at every logged step, then frozen.
    "loss.target_consistency": 10.0,
    # The source-only classifier UNIT starts from: 4000 steps reach its plateau, and UNIT ends higher from it
    # than from a 1000-step warm-up (docs/domain_adaptation.md, "Results").
    "train.classifier_warmup_steps": 4000,
}

# The official DA code's loss weights and normalizations (cocogan_trainer_da.py, svhn2mnist.yaml).
OFFICIAL_DA_LOSSES: dict[str, Any] = {
    "loss.gan": 1.0,
    "loss.kl": 1e-4,
    "loss.kl_reduction": "sum",
    "loss.recon": 1e-3,
    "loss.recon_distance": "sse",
    "loss.gan_recon_stream": True,
    "loss.feature_distance": "l2",
}

# The fidelity defaults of the translation presets (docs/translation.md, "Fidelity"): resize-convolutions and
# layer norm in encoders and decoders. Chosen by tuning runs on the dev split of benchmarks/translation.py:
# with the official instance norms, translations of coloured images lose their colour (grey outputs), and the
# transposed convs leave a 2-px pattern. OFFICIAL_GENERATOR restores the official networks.
FIDELITY_DEFAULTS: dict[str, Any] = {"model.upsample": "resize_conv", "model.encoder_norm": "layer",
                                     "model.decoder_norm": "layer"}

# The residual translation networks of the paper's 256-px results (official version_02 COCOResGen2 + COCODis):
# 4 residual blocks per encoder / generator, the encoder's last and the generator's first shared; batch 1,
# Adam 1e-4 (0.5, 0.999), L2 1e-4, the paper's loss weights 10 / 0.1 / 100 / 0.1 / 100 (the defaults), with the
# fidelity defaults.
TRANSLATION_SETTINGS: dict[str, Any] = {
    **FIDELITY_DEFAULTS,
    "model.architecture": "residual",
    "model.gen_ch": 64,
    "model.dis_ch": 64,
    "model.n_downsample": 2,
    "model.res_blocks": 4,
    "model.shared_encoder_layers": 1,
    "model.shared_generator_layers": 1,
    "model.shared_discriminator_layers": 0,
    "data.batch_size": 1,
    "optimizer.learning_rate": 1e-4,
    "optimizer.weight_decay": 1e-4,
    "train.steps": 500000,
}

# The official networks and losses on the fidelity switches (the dataclass defaults, with the official init and
# the paper's unit latent noise), with the paper's down-sampling, sharing and single-scale discriminator (COCODis)
# pinned (so they stay official whatever a preset sets): `--set` these on a translation preset to train the
# official version_02 COCOResGen2 generators without the edge term.
OFFICIAL_GENERATOR: dict[str, Any] = {"model.upsample": "transposed", "model.encoder_norm": "instance",
                                      "model.decoder_norm": "instance", "model.gen_init": "gaussian",
                                      "model.latent_noise_std": 1.0, "loss.edge": 0.0, "model.n_downsample": 2,
                                      "model.shared_encoder_layers": 1, "model.shared_generator_layers": 1,
                                      "model.dis_scales": 1}

# Presets: named sets of overrides of the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's digit networks (official version_02 CoVAE32x32 / CoDis32x32) trained with the paper's
    # translation losses. Optimizer as the official digit code: Adam 2e-4, betas (0.5, 0.999), L2 5e-4.
    "digits": {},
    # A narrow variant for quick experiments and tests on a CPU.
    "digits_small": {"model.gen_ch": 16, "model.dis_ch": 16, "data.batch_size": 32},
    # Domain adaptation, official version_02 DA networks and optimizer at official widths (64 / 64).
    "digits_da": DA_SETTINGS,
    # The same with the official DA code's loss weights instead of the paper's.
    "digits_da_official": {**DA_SETTINGS, **OFFICIAL_DA_LOSSES},
    # Narrower (gen 32, dis 16): what a 2-core CPU trains in 30 minutes (benchmarks/domain_adaptation.py).
    "digits_da_small": {**DA_SETTINGS, "model.gen_ch": 32, "model.dis_ch": 16},
    # Exactly what the official code trains for SVHN->MNIST (exps/unit/svhn2mnist.yaml, last version: gen 96,
    # dis 64; COCOGANDAContextTrainer: source classifier + feature matching, unit latent noise, no
    # translated-source or semantic term): the fixed reference of benchmarks/throughput.py.
    "digits_official": {**DA_SETTINGS, **OFFICIAL_DA_LOSSES, "model.gen_ch": 96, "model.dis_ch": 64,
                        "model.latent_noise_std": 1.0, "loss.classifier_translated": 0.0, "loss.semantic": 0.0,
                        "loss.target_entropy": 0.0, "loss.target_consistency": 0.0, "loss.translated_jitter": False,
                        "model.test_time_jitter": False},
    # Image-to-image translation (image folders, cycle_gan/*, celeb_a), at the paper's sizes.
    "translation_256": {**TRANSLATION_SETTINGS, "model.image_size": 256, "model.dis_layers": 6},
    "translation_128": {**TRANSLATION_SETTINGS, "model.image_size": 128, "model.dis_layers": 5},
    # Narrow and shallow at 32-64 px: learns a simple translation within minutes on a CPU. Widths 32 / 32 beat
    # 16 / 32 and 16 / 16 on benchmarks/translation.py's ground-truth error. One down-sampling (a latent at half
    # the image size, not a quarter) keeps edges and learns the photo task faster; sharing both residual blocks
    # as well did not learn the photo task at all (docs/translation.md, "Fidelity"). Three discriminator scales
    # (32, 16, 8 px: the coarsest one's logit sees the whole image): a 15 x 15 px view of a large bright shape
    # looks like domain B's bright background, and with one scale some seeds settled on inverting backgrounds
    # but not shapes (docs/translation.md, "Seeds"). Below 32 px fewer scales (fit_discriminator_scales).
    # No norm in the encoders nor in the decoders: with layer norms there, the initial weights decided on some
    # seeds whether a run learned a per-pixel map (photo negative, colour inversion). A layer norm over H, W, C
    # removes each image's brightness and contrast, which on flat-background images is the background's shade,
    # and the decoder had to rebuild it (docs/translation.md, "Seeds: no norm in the encoders" and "Seeds:
    # searches after c6d36cb"). Latent noise std 0.5, not the paper's 1: with unit noise and no norms the
    # inversion's saturated backgrounds came out grey; every tuning run with 0.5 learned its task, where He's
    # fan-in scaled init (model.gen_init) failed 5 of 14 runs ("Seeds: latent noise and initial scale").
    "small": {**TRANSLATION_SETTINGS, "model.image_size": 32, "model.gen_ch": 32, "model.dis_ch": 32,
              "model.n_downsample": 1, "model.res_blocks": 2, "model.dis_layers": 3, "model.dis_scales": 3,
              "model.encoder_norm": "none", "model.decoder_norm": "none", "model.latent_noise_std": 0.5,
              "data.batch_size": 8,
              "optimizer.learning_rate": 2e-4, "train.steps": 5000, "train.sample_every": 250,
              "train.checkpoint_every": 500},
}
# Real photos at 64 px on a CPU (benchmarks/photo_translation.py): `small` with half the generator width (twice
# the steps in the same minutes) and a 4-layer discriminator (each logit sees 31 x 31 px, not 15 x 15). Chosen by
# tuning runs on cat2dog's training images (docs/translation.md, "Cat <-> dog"), like its three discriminator
# scales (64, 32, 16 px; the coarsest one's logits see the whole image): on held-out training images they
# translated more cats to dogs, and more dogs to cats, than one scale in the same minutes.
# It keeps the official generators (OFFICIAL_GENERATOR): its cat <-> dog results were measured with them, and the
# fidelity defaults have not been measured on that benchmark.
PRESETS["photo_64"] = {**PRESETS["small"], **OFFICIAL_GENERATOR, "model.image_size": 64, "model.gen_ch": 16,
                       "model.dis_layers": 4, "model.dis_scales": 3}


def translation_preset(image_size: int | None) -> str:
    """The translation preset for an image size (image-data runs without --preset)."""
    if image_size is None or image_size > 128:
        return "translation_256"
    return "translation_128" if image_size > 64 else "small"


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"gen_ch": 8}} -> {"model.gen_ch": 8}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Convert a JSON or command-line value to the field's type, or raise a UserError naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint = args[0]
    if origin is list:
        if isinstance(value, str):  # --set: a JSON list or comma-separated names
            try:
                value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
            except ValueError:
                raise UserError(f"setting '{key}' needs a JSON list of names, got {value!r}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"setting '{key}' needs a list of names, got {value!r}")
        return list(value)
    expected = hint.__name__
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise UserError(f"setting '{key}' needs a value of type {expected}, got {value!r}") from None
    raise UserError(f"setting '{key}' cannot be set")


def valid_keys(config: UNITConfig | None = None) -> list[str]:
    return sorted(flatten((config or UNITConfig()).to_dict()))


def apply_overrides(config: UNITConfig, overrides: dict[str, Any]) -> UNITConfig:
    """Set dotted keys (e.g. "loss.gan") on the config in place, with type checks."""
    for key, value in overrides.items():
        parts = key.split(".")
        target: Any = config
        for part in parts[:-1]:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                target = None
                break
            target = getattr(target, part)
        leaf = parts[-1]
        if target is None or not dataclasses.is_dataclass(target) or leaf not in _field_types(target):
            raise UserError(
                f"unknown setting {key!r}; valid settings are: {', '.join(valid_keys())}"
            )
        hint = _field_types(target)[leaf]
        if dataclasses.is_dataclass(getattr(target, leaf)):
            raise UserError(f"setting '{key}' is a section; set one of its fields, e.g. '{key}.<name>'")
        setattr(target, leaf, _coerce(key, value, hint))
    return config


def parse_set_flags(items: list[str]) -> dict[str, str]:
    """["loss.gan=1", ...] -> {"loss.gan": "1"}."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value (e.g. --set loss.gan=1), got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON config file (nested sections or dotted keys) as flat overrides."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass an existing JSON file to --config")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"config file {path} is not valid JSON ({err}); fix or regenerate it") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a JSON object of settings")
    return {k: v for k, v in flatten(values).items() if k not in RETIRED_KEYS}


def resolve_config(
    dataset: str | None = None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> UNITConfig:
    """Build the run's config: defaults, then the preset (by default the data set's, see unit_tf.catalogue), the
    data set's own settings, the config file and the overrides."""
    file_values = load_config_file(config_file) if config_file else {}
    overrides = dict(overrides or {})
    dataset = dataset or overrides.get("data.dataset") or file_values.get("data.dataset")
    preset = preset or overrides.get("preset") or file_values.get("preset")
    if preset is None and dataset is not None and is_image_dataset(dataset):
        size = overrides.get("model.image_size") or file_values.get("model.image_size")
        preset = translation_preset(int(size) if str(size or "").isdigit() else None)
    pair = DIGIT_PAIRS.get(dataset or "")
    if preset is None:
        preset = pair.preset if pair else (DA_PRESET if dataset and is_da_dataset(dataset) else "digits")
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of: {', '.join(sorted(PRESETS))}")
    config = UNITConfig(preset=preset)
    apply_overrides(config, PRESETS[preset])
    apply_overrides(config, pair.settings if pair else {})
    apply_overrides(config, {k: v for k, v in file_values.items() if k != "preset"})
    apply_overrides(config, {k: v for k, v in overrides.items() if k != "preset"})
    if dataset:
        config.data.dataset = dataset
    data = config.data
    data.class_names = []
    classes = DIGIT_CLASSES
    # Image channels and classes are properties of the data set, not free settings.
    if is_da_dataset(data.dataset):
        _resolve_da(config)
        classes = len(data.class_names)
    elif is_image_dataset(data.dataset):
        check_image_dataset(data.dataset, data.domain_a, data.domain_b, data.attribute)
        config.model.channels_a = config.model.channels_b = 3  # every image is decoded as RGB
        if config.model.num_classes:
            raise UserError(f"model.num_classes needs labelled digit data; dataset '{data.dataset}' has no "
                            "labels: set model.num_classes=0 or pick a translation --preset")
    elif data.dataset in DIGIT_PAIRS:
        config.model.channels_a, config.model.channels_b = DIGIT_PAIRS[data.dataset].channels
    else:
        raise UserError(f"unknown dataset '{data.dataset}'; choose one of: {', '.join(DIGIT_PAIRS)}, {DA_SYNTAX}, "
                        f"{IMAGE_DATASETS}")
    if config.model.num_classes > 0:
        config.model.num_classes = classes
    if "model.dis_scales" not in {**file_values, **overrides}:
        fit_discriminator_scales(config.model)
    validate(config)
    return config


def fit_discriminator_scales(model: ModelConfig) -> None:
    """A preset's discriminator scales, fewer where the image is too small for them (`small`'s three need 32
    px with its 3-layer discriminators; at 16 px it keeps two). Only for a preset's value: one the user sets is
    checked as it is (check_residual_geometry)."""
    if model.architecture != "residual":
        return
    while model.dis_scales > 1 and _coarsest_scale(model) < 2**model.dis_layers:
        model.dis_scales -= 1


def _coarsest_scale(model: ModelConfig) -> int:
    """The image size the coarsest discriminator scale sees (each scale halves its input)."""
    return model.image_size // 2 ** (model.dis_scales - 1)


def _resolve_da(config: UNITConfig) -> None:
    """Dataset "da": the folders from "da:SOURCE,TARGET", then their class names and channels, read from the
    files (listings and image headers; unit_tf.data.class_folders checks them, one error line each)."""
    from unit_tf.data import class_folders

    data = config.data
    if data.dataset != DA_DATASET:
        if data.domain_a or data.domain_b:
            raise UserError(f"dataset '{data.dataset}' names the source and target already; drop --source/--target "
                            "(data.domain_a/domain_b)")
        data.domain_a, data.domain_b = split_da_dataset(data.dataset)
        data.dataset = DA_DATASET
    if data.channels not in DA_CHANNELS:
        raise UserError(f"data.channels must be 0 (keep each domain's), 1 (gray) or 3 (RGB), got {data.channels}")
    found = class_folders.describe(data.domain_a, data.domain_b, data.target_test, data.batch_size)
    data.class_names = found.class_names
    config.model.channels_a = data.channels or found.channels_a
    config.model.channels_b = data.channels or found.channels_b


def class_names(config: UNITConfig) -> list[str]:
    """The names of the classifier's classes, in output order: the data's (dataset "da"), else the digits."""
    return list(config.data.class_names) or [str(k) for k in range(config.model.num_classes)]


def check_residual_geometry(model: ModelConfig) -> None:
    """The residual networks' sizes fit together: the generator undoes the encoder's downsampling exactly, and
    every discriminator scale sees an input at least as large as its stride-2 stack shrinks."""
    step = 2**model.n_downsample
    if model.image_size % step:
        raise UserError(f"model.image_size {model.image_size} must be divisible by 2^model.n_downsample = {step}")
    smallest = _coarsest_scale(model)
    if smallest < 2**model.dis_layers:
        raise UserError(
            f"a {model.dis_layers}-layer discriminator (model.dis_layers) needs inputs of at least "
            f"{2**model.dis_layers} px, but its coarsest scale sees {smallest} px: lower model.dis_layers or "
            "model.dis_scales, or raise --image-size"
        )


def validate(config: UNITConfig) -> None:
    """Reject values that cannot define a run, each with the setting's name."""
    positive_ints = {
        "train.steps": config.train.steps,
        "data.batch_size": config.data.batch_size,
        "train.log_every": config.train.log_every,
        "train.checkpoint_every": config.train.checkpoint_every,
        "train.sample_every": config.train.sample_every,
        "optimizer.schedule_steps": config.optimizer.schedule_steps,
        "model.image_size": config.model.image_size,
        "model.gen_ch": config.model.gen_ch,
        "model.dis_ch": config.model.dis_ch,
        "model.channels_a": config.model.channels_a,
        "model.channels_b": config.model.channels_b,
        "model.res_blocks": config.model.res_blocks,
        "model.dis_layers": config.model.dis_layers,
        "model.dis_scales": config.model.dis_scales,
    }
    for key, value in positive_ints.items():
        if value <= 0:
            raise UserError(f"{key} must be a positive integer, got {value}")
    positive_floats = {"optimizer.learning_rate": config.optimizer.learning_rate,
                       "optimizer.dis_lr_scale": config.optimizer.dis_lr_scale,
                       "optimizer.epsilon": config.optimizer.epsilon, "model.bn_epsilon": config.model.bn_epsilon}
    for key, value in positive_floats.items():
        if not 0.0 < value < float("inf"):
            raise UserError(f"{key} must be > 0, got {value}")
    for key, value in {"optimizer.beta_1": config.optimizer.beta_1, "optimizer.beta_2": config.optimizer.beta_2,
                       "model.bn_momentum": config.model.bn_momentum}.items():
        if not 0.0 <= value < 1.0:
            raise UserError(f"{key} must be in [0, 1), got {value}")
    non_negative = {k: v for k, v in flatten(dataclasses.asdict(config.loss), "loss.").items()
                    if isinstance(v, float)}
    non_negative.update({"optimizer.weight_decay": config.optimizer.weight_decay,
                         "model.leaky_slope": config.model.leaky_slope,
                         "model.latent_noise_std": config.model.latent_noise_std})
    for key, value in non_negative.items():
        if not 0.0 <= value < float("inf"):
            raise UserError(f"{key} must be a finite number >= 0, got {value}")
    choices = {"loss.kl_reduction": (config.loss.kl_reduction, ("mean", "sum")),
               "loss.recon_distance": (config.loss.recon_distance, ("l1", "sse")),
               "loss.feature_distance": (config.loss.feature_distance, ("l2", "l1")),
               "loss.gan_type": (config.loss.gan_type, ("bce", "lsgan")),
               "model.architecture": (config.model.architecture, ARCHITECTURES),
               "model.fast_paths": (config.model.fast_paths, FAST_PATHS),
               "model.upsample": (config.model.upsample, UPSAMPLING),
               "model.encoder_norm": (config.model.encoder_norm, GENERATOR_NORMS),
               "model.decoder_norm": (config.model.decoder_norm, GENERATOR_NORMS),
               "model.gen_init": (config.model.gen_init, GENERATOR_INITS),
               "optimizer.schedule": (config.optimizer.schedule, SCHEDULES)}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(allowed)}, got '{value}'")
    da_terms = {"loss.classifier": config.loss.classifier, "loss.classifier_translated":
                config.loss.classifier_translated, "loss.feature": config.loss.feature,
                "loss.semantic": config.loss.semantic, "loss.target_entropy": config.loss.target_entropy}
    for key, value in da_terms.items():
        if value > 0 and config.model.num_classes <= 0:
            raise UserError(f"{key} needs a classifier head: set model.num_classes (10 for digits) or {key}=0")
    for key in ("gan_recon_stream", "feature"):
        if getattr(config.loss, key) and not config.loss.recon_stream:
            raise UserError(f"loss.{key} needs the reconstruction stream: set loss.recon_stream=true or "
                            f"loss.{key}=0")
    counts = {"model.num_classes": config.model.num_classes, "model.n_downsample": config.model.n_downsample,
              "data.load_size": config.data.load_size, "data.cache_mb": config.data.cache_mb,
              "train.eval_every": config.train.eval_every,
              "train.keep_checkpoints": config.train.keep_checkpoints,
              "train.classifier_warmup_steps": config.train.classifier_warmup_steps,
              "loss.translated_rampup_steps": config.loss.translated_rampup_steps}
    for key, value in counts.items():
        if value < 0:
            raise UserError(f"{key} must be >= 0, got {value}")
    if not 0.0 < config.optimizer.schedule_gamma <= 1.0:
        raise UserError(f"optimizer.schedule_gamma must be in (0, 1], got {config.optimizer.schedule_gamma}")
    if not 0.0 <= config.optimizer.decay_start < 1.0:
        raise UserError(f"optimizer.decay_start must be in [0, 1) (a fraction of train.steps), got "
                        f"{config.optimizer.decay_start}")
    cycle_stream = config.loss.cycle and (config.loss.cycle_kl > 0 or config.loss.cycle_recon > 0)
    if config.loss.edge > 0 and not (config.loss.recon_stream or cycle_stream):
        raise UserError("loss.edge sharpens the reconstruction and cycle streams, and this run has neither: set "
                        "loss.recon_stream=true or loss.cycle=true, or loss.edge=0")
    if config.loss.identity > 0 and config.model.channels_a != config.model.channels_b:
        raise UserError(f"loss.identity needs domains with the same channels, but A has {config.model.channels_a} "
                        f"and B {config.model.channels_b}: set loss.identity=0")
    if config.model.architecture == "residual":
        check_residual_geometry(config.model)
    elif (config.model.upsample, config.model.encoder_norm, config.model.decoder_norm, config.model.gen_init) != (
            "transposed", "instance", "instance", "gaussian"):
        raise UserError("model.upsample, model.encoder_norm, model.decoder_norm and model.gen_init choose the residual "
                        "translation networks; the digit networks have their own (transposed convs, batch norm, "
                        "N(0, 0.02) weights): leave them at transposed, instance and gaussian")
    if config.data.dataset != DA_DATASET and (config.data.target_test or config.data.channels):
        raise UserError("--target-test and --channels (data.target_test, data.channels) only apply to domain "
                        f"adaptation on your own files ({DA_SYNTAX}); drop them")
    if not 0.0 <= config.train.time_limit_minutes < float("inf"):
        raise UserError(f"train.time_limit_minutes must be >= 0, got {config.train.time_limit_minutes}")
    if config.train.precision not in PRECISION_CHOICES:
        raise UserError(f"train.precision must be one of {', '.join(PRECISION_CHOICES)}, got "
                        f"'{config.train.precision}'")
    if config.optimizer.weight_decay_mode not in ("l2", "decoupled"):
        raise UserError("optimizer.weight_decay_mode must be 'l2' or 'decoupled'")
    if config.train.on_nan not in ON_NAN:
        raise UserError(f"train.on_nan must be {' or '.join(repr(m) for m in ON_NAN)}, got '{config.train.on_nan}'")
    if config.train.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy '{config.train.strategy}'; choose {', '.join(STRATEGIES[:-1])} or "
                        f"{STRATEGIES[-1]}")


def defining_differences(old: UNITConfig, new: UNITConfig) -> list[str]:
    """Settings that differ between two configs and define the run (model, data, losses, optimizer)."""
    a, b = flatten(old.to_dict()), flatten(new.to_dict())
    # float32 and bfloat16 runs share their variables (float32 weights, the same optimizer state), so a run may
    # continue in the other (e.g. on a machine without native bfloat16); float16 adds loss scaling.
    for values in (a, b):
        values["train.precision"] = values.get("train.precision") == "float16"
    return sorted(k for k in a.keys() | b.keys() if k not in NON_DEFINING_KEYS and a.get(k) != b.get(k))
