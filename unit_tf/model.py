"""The UNIT model: coupled VAE-GANs with a custom alternating `train_step`.

Notation (paper Sec. 3): E1/E2 = encoder domains a/b, G1/G2 = generator domains a/b, D1/D2 likewise.
Streams for x_a (and symmetrically x_b):
    reconstruction  x_a -> z_a -> G_a -> x_aa
    translation     x_a -> z_a -> G_b -> x_ab          (the only stream the GAN loss sees)
    cycle           x_a -> z_a -> G_b -> x_ab -> E_b -> z_aba -> G_a -> x_aba
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import tensorflow as tf

from unit_tf import losses
from unit_tf.config import PRECISIONS, UNITConfig
from unit_tf.discriminators import CoupledDiscriminator, Discriminated
from unit_tf.distribute import MultiWorkerFit, fit_outputs
from unit_tf.hardware import resolve_precision
from unit_tf.layers import PACKAGE, CoordinateChannels, colour_jitter, colour_variants, replica_seed
from unit_tf.networks import build_classifier_head, build_networks
from unit_tf.optimizers import make_optimizer


def _split(x: tf.Tensor, n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return x[:n], x[n:]


class Streams(NamedTuple):
    """One training forward pass of E and G: the inputs, the latent means of q(z|x) and the images decoded
    from z = mean + noise (float32 under every precision policy). Without the reconstruction stream (an
    ablation) x_aa and x_bb are None."""

    x_a: tf.Tensor
    x_b: tf.Tensor
    mean_a: tf.Tensor  # E_a(x_a)
    mean_b: tf.Tensor  # E_b(x_b)
    x_aa: tf.Tensor | None  # G_a(z_a): reconstruction
    x_ab: tf.Tensor  # G_b(z_a): translation
    x_ba: tf.Tensor  # G_a(z_b): translation
    x_bb: tf.Tensor | None  # G_b(z_b): reconstruction


@keras.saving.register_keras_serializable(PACKAGE)
class UNIT(MultiWorkerFit, keras.Model):
    """Six networks (E1, E2, G1, G2, D1, D2) as three coupled pairs, trained by `fit`.

    `call({"x_a", "x_b"})` translates with the latent means: {"a_to_b", "b_to_a"}. `train_step` is the
    paper's two alternating updates: `_discriminator_update`, then `_generator_update`.
    """

    def __init__(self, config: UNITConfig | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit_config = config if isinstance(config, UNITConfig) else UNITConfig.from_dict(config)
        cfg = self.unit_config
        nets = build_networks(cfg.model)
        self.encoder = nets["encoder"]
        self.generator = nets["generator"]
        # The model owns (tracks) the discriminator layers; `discriminators` is the API over them.
        self.discriminator = nets["discriminator"]
        self.coarse_discriminators = nets["coarse_discriminators"]  # multi-scale D: scales 1, 2, ...
        self.classifier_head = build_classifier_head(cfg.model)
        self.discriminators = CoupledDiscriminator([self.discriminator, *self.coarse_discriminators],
                                                   self.classifier_head)
        self.coordinates = CoordinateChannels(name="coordinates") if cfg.model.coord_channels else None
        self.seed_generator = keras.random.SeedGenerator(cfg.train.seed, name="latent_noise")
        self.metric_names = losses.term_names(cfg.loss)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    # ----------------------------------------------------------------------------------------------
    # The six networks
    # ----------------------------------------------------------------------------------------------
    def _encoder_input(self, x: tf.Tensor) -> tf.Tensor:
        return self.coordinates(x) if self.coordinates is not None else x

    def encode(self, x: tf.Tensor, domain: str, training: bool = False) -> tf.Tensor:
        """Latent mean of q(z|x) from the domain's encoder: [N, 1, 1, latent] for the digit nets."""
        return self.encoder(self._encoder_input(x), domain=domain, training=training)

    def decode(self, z: tf.Tensor, domain: str, training: bool = False) -> tf.Tensor:
        """Image in [-1, 1] from the domain's generator (float32 under every precision policy)."""
        return tf.cast(self.generator(z, domain=domain, training=training), tf.float32)

    def discriminate(self, x: tf.Tensor, domain: str, training: bool = False) -> tf.Tensor:
        """Real/fake logits [N, patches] of the domain's (finest-scale) discriminator."""
        return self.discriminators.real_fake(x, domain, training)

    def translate(self, x: tf.Tensor, source: str, target: str, training: bool = False) -> tf.Tensor:
        """Deterministic translation (or reconstruction if source == target) through the latent mean."""
        return self.decode(self.encode(x, source, training), target, training)

    @property
    def size_multiple(self) -> int | None:
        """What input height and width must be multiples of: 2^n_downsample for the fully convolutional
        "residual" networks (any size, see `translate_any_size`); None for the fixed-size "digits" networks."""
        cfg = self.unit_config.model
        return 2**cfg.n_downsample if cfg.architecture == "residual" else None

    def translate_any_size(self, x: tf.Tensor, source: str, target: str) -> tf.Tensor:
        """`translate` (inference) of [N, H, W, C] images of any H, W >= size_multiple: reflect-padded at the
        bottom and right to multiples of `size_multiple`, translated, cropped back to H x W."""
        multiple = self.size_multiple
        if multiple is None:
            raise ValueError(f"{self.unit_config.model.architecture} networks translate image_size images only")
        shape = tf.shape(x)
        height, width = shape[1], shape[2]
        padded = tf.pad(x, [[0, 0], [0, -height % multiple], [0, -width % multiple], [0, 0]], mode="REFLECT")
        return self.translate(padded, source, target, training=False)[:, :height, :width]

    # Paired versions: shared layers run ONCE on the concatenated a+b batch (as the official code does),
    # so their batch-norm statistics cover both domains and the matmuls are larger.
    def encode_pair(self, x_a: tf.Tensor, x_b: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        h_a = self.encoder.run_private(self._encoder_input(x_a), "a", training)
        h_b = self.encoder.run_private(self._encoder_input(x_b), "b", training)
        mean = self.encoder.run_shared(tf.concat([h_a, h_b], 0), training)
        return _split(mean, tf.shape(h_a)[0])

    def decode_pair(self, z_to_a: tf.Tensor, z_to_b: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        h = self.generator.run_shared(tf.concat([z_to_a, z_to_b], 0), training)
        h_a, h_b = _split(h, tf.shape(z_to_a)[0])
        return self._image(h_a, "a", training), self._image(h_b, "b", training)

    def decode_both(self, z: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Decode one latent batch into both domains, sharing the shared layers' work."""
        h = self.generator.run_shared(z, training)
        return self._image(h, "a", training), self._image(h, "b", training)

    def _image(self, h: tf.Tensor, domain: str, training: bool) -> tf.Tensor:
        """The generator's private (last) layers; images leave in float32 whatever the compute precision."""
        return tf.cast(self.generator.run_private(h, domain, training), tf.float32)

    def classify(self, x: tf.Tensor, domain: str, training: bool = False) -> tf.Tensor:
        """Class logits [N, num_classes] of the classifier head on D_domain's trunk."""
        return self.discriminators.classify(self.discriminators.trunk(x, domain, training), training)

    def class_probabilities(self, x: tf.Tensor, domain: str, test_time_jitter: bool = False) -> tf.Tensor:
        """Class probabilities [N, num_classes] (float32, inference); with `test_time_jitter` the mean softmax
        over every colour variant of the images (`layers.colour_variants`: what loss.translated_jitter trains
        D_b's classifier on)."""
        variants = colour_variants(x) if test_time_jitter else [x]
        probabilities = [tf.nn.softmax(tf.cast(self.classify(v, domain), tf.float32)) for v in variants]
        return tf.add_n(probabilities) / float(len(probabilities))

    def test_time_jitter(self, domain: str) -> bool:
        """Whether the model's prediction for `domain` averages over colour variants: D_b's with
        model.test_time_jitter (D_b's classifier is the one trained on jittered images)."""
        return domain == "b" and self.unit_config.model.test_time_jitter

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        mean_a, mean_b = self.encode_pair(inputs["x_a"], inputs["x_b"], training)
        x_ba, x_ab = self.decode_pair(mean_b, mean_a, training)
        return {"a_to_b": x_ab, "b_to_a": x_ba}

    def streams(self, x_a: tf.Tensor, x_b: tf.Tensor) -> dict[str, tf.Tensor]:
        """All deterministic streams for evaluation and sample grids (inference mode, latent means)."""
        n = tf.shape(x_a)[0]
        mean_a, mean_b = self.encode_pair(x_a, x_b, False)
        out_a, out_b = self.decode_both(tf.concat([mean_a, mean_b], 0), False)
        (x_aa, x_ba), (x_ab, x_bb) = _split(out_a, n), _split(out_b, n)
        mean_ba, mean_ab = self.encode_pair(x_ba, x_ab, False)  # E_a(x_ba), E_b(x_ab)
        x_aba, x_bab = self.decode_pair(mean_ab, mean_ba, False)  # G_a(E_b(x_ab)), G_b(E_a(x_ba))
        return {"x_a": x_a, "x_aa": x_aa, "x_ab": x_ab, "x_aba": x_aba,
                "x_b": x_b, "x_bb": x_bb, "x_ba": x_ba, "x_bab": x_bab}

    # ----------------------------------------------------------------------------------------------
    # Building and compiling
    # ----------------------------------------------------------------------------------------------
    def build(self, input_shape: Any = None) -> None:
        """Create every variable by tracing both domains through all six networks once."""
        cfg = self.unit_config.model
        size = cfg.image_size
        x_a = tf.zeros([2, size, size, cfg.channels_a])
        x_b = tf.zeros([2, size, size, cfg.channels_b])
        mean_a, mean_b = self.encode_pair(x_a, x_b, False)
        self.decode_both(tf.concat([mean_a, mean_b], 0), False)
        d_a, _ = self.discriminators.pass_rows({"real": x_a}, {"real": x_b}, False)  # every scale
        if self.classifier_head is not None:
            self.discriminators.classify(d_a.features("real"))
        self.built = True

    @property
    def d_variables(self) -> list:
        return self.discriminators.trainable_variables

    @property
    def g_variables(self) -> list:
        return self.encoder.trainable_variables + self.generator.trainable_variables

    @property
    def step(self) -> int:
        """The global step: completed E/G updates (both optimizers count the same steps)."""
        return int(self.g_optimizer.iterations.numpy())

    def compile(
        self,
        d_optimizer: keras.optimizers.Optimizer,
        g_optimizer: keras.optimizers.Optimizer,
        **kwargs: Any,
    ) -> None:
        """Take the two optimizers and build them now (call inside `strategy.scope()`).

        Keras 3 optimizers left to build lazily inside a distributed `fit` fail ("You must feed a value
        for placeholder tensor"), so their slots are created here, next to the model's variables.
        """
        super().compile(optimizer=g_optimizer, **kwargs)
        if not self.built:
            self.build()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        d_optimizer.build(self.d_variables)
        g_optimizer.build(self.g_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    # ----------------------------------------------------------------------------------------------
    # Training: the paper's two alternating updates
    # ----------------------------------------------------------------------------------------------
    def train_step(self, data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One alternating update (paper Sec. 3): D1, D2 first, then E1, E2, G1, G2 against the updated Ds.

        `data`: {"x_a", "x_b"} image batches in [-1, 1] and, for domain adaptation, the source labels "y_a".
        """
        # One forward pass of E and G serves both updates (the D update sees its outputs as constants).
        with tf.GradientTape() as g_tape:
            streams = self._forward(data["x_a"], data["x_b"])
        values = self._discriminator_update(data, streams)
        values.update(self._generator_update(data, streams, g_tape))
        self._track(values)
        return fit_outputs({name: tracker.result() for name, tracker in self.trackers.items()})

    def _forward(self, x_a: tf.Tensor, x_b: tf.Tensor) -> Streams:
        """E on both domains, z = mean + noise, G into both domains (paper Fig. 1)."""
        n = tf.shape(x_a)[0]
        mean_a, mean_b = self.encode_pair(x_a, x_b, training=True)
        z = self._sample(tf.concat([mean_a, mean_b], 0))
        if self.unit_config.loss.recon_stream:
            out_a, out_b = self.decode_both(z, training=True)  # out_a = [x_aa; x_ba], out_b = [x_ab; x_bb]
            (x_aa, x_ba), (x_ab, x_bb) = _split(out_a, n), _split(out_b, n)
        else:  # ablation: translation (and cycle) streams only
            z_a, z_b = _split(z, n)
            x_ba, x_ab = self.decode_pair(z_b, z_a, training=True)
            x_aa = x_bb = None
        return Streams(x_a, x_b, mean_a, mean_b, x_aa, x_ab, x_ba, x_bb)

    def _reports(self, term: str) -> bool:
        """Whether this model's losses include `term` (decided once, by the declaration losses.TERMS)."""
        return term in self.trackers

    def _fake_groups(self) -> tuple[str, ...]:
        """The streams D sees as fakes: the translations (and the reconstructions, official DA code)."""
        return ("translated", "reconstructed") if self.unit_config.loss.gan_recon_stream else ("translated",)

    def _discriminator_update(self, data: dict[str, tf.Tensor], s: Streams) -> dict[str, tf.Tensor]:
        """Step 1: D1, D2 on real images vs. the streams' fakes (adversarial loss, paper Eq. 3), plus the
        domain-adaptation terms of the D update when the model has a classifier head."""
        w = self.unit_config.loss
        fakes = self._fake_groups()
        rows_a = {"real": data["x_a"], "translated": tf.stop_gradient(s.x_ba)}
        rows_b = {"real": data["x_b"], "translated": tf.stop_gradient(s.x_ab)}
        if "reconstructed" in fakes or (self._reports("feature") and w.feature_from_gan_pass):
            rows_a["reconstructed"], rows_b["reconstructed"] = tf.stop_gradient(s.x_aa), tf.stop_gradient(s.x_bb)
        with tf.GradientTape() as tape:
            d_a, d_b = self.discriminators.pass_rows(rows_a, rows_b, training=True)
            d_gan = (losses.discriminator_gan_loss(d_a.logits("real"), d_a.logits(*fakes), w.gan_type)
                     + losses.discriminator_gan_loss(d_b.logits("real"), d_b.logits(*fakes), w.gan_type))
            values = {"d_gan": d_gan}
            d_loss = w.gan * d_gan + self.weight_penalty(self.d_variables)
            if self.classifier_head is not None:
                terms = self._adaptation_terms(data["y_a"], s, d_a, d_b)
                d_loss += self._weighted_adaptation_terms(terms)
                values.update(terms)
            values["d_loss"] = d_loss
            scaled = self._per_replica(self.d_optimizer, d_loss)
        self._apply(self.d_optimizer, tape, scaled, self.d_variables)
        return values

    def _generator_update(self, data: dict[str, tf.Tensor], s: Streams,
                          tape: tf.GradientTape) -> dict[str, tf.Tensor]:
        """Step 2: E1, E2, G1, G2 against the UPDATED discriminators (GAN loss on the translations, Eq. 3),
        plus the VAE terms (KL and L1 reconstruction, Eq. 2) and the cycle terms (Eq. 4). `tape` recorded
        the streams' forward pass."""
        w = self.unit_config.loss
        fakes = self._fake_groups()
        with tape:
            rows_a, rows_b = {"translated": s.x_ba}, {"translated": s.x_ab}
            if "reconstructed" in fakes:
                rows_a["reconstructed"], rows_b["reconstructed"] = s.x_aa, s.x_bb
            g_a, g_b = self.discriminators.pass_rows(rows_a, rows_b, training=True)
            # Each stream's GAN term is a mean over its own images (official: trans + recon).
            g_gan = tf.add_n([losses.generator_gan_loss(d.logits(group), w.gan_type)
                              for d in (g_a, g_b) for group in fakes])
            kl = losses.kl_loss(s.mean_a, w.kl_reduction) + losses.kl_loss(s.mean_b, w.kl_reduction)
            g_loss = w.gan * g_gan + w.kl * kl + self.weight_penalty(self.g_variables)
            values = {"g_gan": g_gan, "kl": kl}
            edges: list[tf.Tensor] = []  # the edge term of each image-reconstructing stream
            if self._reports(losses.recon_term(w)):
                recon = (losses.recon_loss(s.x_a, s.x_aa, w.recon_distance)
                         + losses.recon_loss(s.x_b, s.x_bb, w.recon_distance))
                g_loss += w.recon * recon
                values[losses.recon_term(w)] = recon
                if self._reports("edge"):
                    edges.append(losses.edge_loss(s.x_a, s.x_aa) + losses.edge_loss(s.x_b, s.x_bb))
            if self._reports("semantic"):
                # Translations keep their digit: D_b's classifier must read x_ab as the source label.
                logits = self.discriminators.classify(g_b.features("translated"), training=True)
                values["semantic"] = losses.classifier_loss(data["y_a"], logits)
                g_loss += w.semantic * values["semantic"]
            if self._reports("cycle_kl"):
                # Cycle: re-encode the translations with the OTHER domain's encoder and decode back.
                mean_ba, mean_ab = self.encode_pair(s.x_ba, s.x_ab, training=True)  # E_a(x_ba), E_b(x_ab)
                x_aba, x_bab = self.decode_pair(self._sample(mean_ab), self._sample(mean_ba), training=True)
                cycle_kl = losses.kl_loss(mean_ab, w.kl_reduction) + losses.kl_loss(mean_ba, w.kl_reduction)
                cycle = (losses.recon_loss(s.x_a, x_aba, w.recon_distance)
                         + losses.recon_loss(s.x_b, x_bab, w.recon_distance))
                g_loss += w.cycle_kl * cycle_kl + w.cycle_recon * cycle
                values.update({"cycle_kl": cycle_kl, losses.cycle_recon_term(w): cycle})
                if self._reports("edge"):
                    edges.append(losses.edge_loss(s.x_a, x_aba) + losses.edge_loss(s.x_b, x_bab))
            if self._reports("identity"):
                # Each domain's images through the translation INTO their own domain: E of the other domain, then
                # their own G. z sampled (mean + noise) as in the reconstruction stream, which this mirrors.
                mean_b_by_a, mean_a_by_b = self.encode_pair(s.x_b, s.x_a, training=True)  # E_a(x_b), E_b(x_a)
                x_a_id, x_b_id = self.decode_pair(self._sample(mean_a_by_b), self._sample(mean_b_by_a),
                                                  training=True)  # G_a(E_b(x_a)), G_b(E_a(x_b))
                values["identity"] = losses.l1_loss(s.x_a, x_a_id) + losses.l1_loss(s.x_b, x_b_id)
                g_loss += w.identity * values["identity"]
            if self._reports("edge"):
                # Edges of the reconstruction and the cycle streams, each as the recon L1 it sharpens.
                values["edge"] = tf.add_n(edges)
                g_loss += w.edge * values["edge"]
            values["g_loss"] = g_loss
            scaled = self._per_replica(self.g_optimizer, g_loss)
        self._apply(self.g_optimizer, tape, scaled, self.g_variables)
        return values

    def _adaptation_terms(self, y_a: tf.Tensor, s: Streams, d_a: Discriminated,
                          d_b: Discriminated) -> dict[str, tf.Tensor]:
        """The unweighted DA terms of the D update (official cocogan_trainer_da.py), from its pass `d_a`, `d_b`.

        Only SOURCE labels (domain A) are read; target images enter (unlabelled) through the GAN, feature and
        target-entropy terms.
        """
        w = self.unit_config.loss
        dis = self.discriminators
        terms: dict[str, tf.Tensor] = {}
        if self._reports("classifier"):
            logits = dis.classify(d_a.features("real"), training=True)  # D_a trunk (with dropout) on x_a
            terms["classifier"] = losses.classifier_loss(y_a, logits)
            hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(y_a, tf.int32))
            terms["source_batch_accuracy"] = tf.reduce_mean(tf.cast(hits, tf.float32))
        if self._reports("classifier_translated"):
            # Source images translated to B keep their labels: train the classifier through D_b on them.
            if w.translated_jitter:  # a pass of D_b of its own over the jittered translations
                x_ab = colour_jitter(tf.stop_gradient(s.x_ab), replica_seed(self.seed_generator))
                logits = self.classify(x_ab, "b", training=True)
            else:
                logits = dis.classify(d_b.features("translated"), training=True)
            terms["classifier_translated"] = losses.classifier_loss(y_a, logits)
        target_logits = None
        if self._reports("target_entropy") or self._reports("target_consistency"):
            target_logits = dis.classify(d_b.features("real"), training=True)
        if self._reports("target_entropy"):
            # Unlabelled target images through D_b's classifier: confident, class-balanced predictions.
            terms["target_entropy"] = losses.information_loss(target_logits)
        if self._reports("target_consistency"):
            x_b = colour_jitter(s.x_b, replica_seed(self.seed_generator))
            terms["target_consistency"] = losses.consistency_loss(
                target_logits, self.classify(x_b, "b", training=True), w.consistency_threshold)
        if self._reports("feature"):
            # D_b(x_ab) ~ D_a(x_aa) and D_a(x_ba) ~ D_b(x_bb) — same latent code, other domain — on the highest
            # D features: from the D update's pass (with dropout), or without dropout from a second,
            # deterministic pass of the finest scale (the official code).
            if not w.feature_from_gan_pass:
                d_a, d_b = dis.pass_rows(
                    {"reconstructed": tf.stop_gradient(s.x_aa), "translated": tf.stop_gradient(s.x_ba)},
                    {"reconstructed": tf.stop_gradient(s.x_bb), "translated": tf.stop_gradient(s.x_ab)},
                    training=False, finest_only=True)
            terms["feature"] = (
                losses.feature_loss(d_b.features("translated"), d_a.features("reconstructed"), w.feature_distance)
                + losses.feature_loss(d_a.features("translated"), d_b.features("reconstructed"),
                                      w.feature_distance))
        return terms

    def _weighted_adaptation_terms(self, terms: dict[str, tf.Tensor]) -> tf.Tensor:
        """Their weighted sum; the translated-source classifier term ramps up (loss.translated_rampup_steps)."""
        w = self.unit_config.loss
        total = tf.constant(0.0)
        if "classifier" in terms:
            total += w.classifier * terms["classifier"]
        if "classifier_translated" in terms:
            total += w.classifier_translated * self._translated_ramp() * terms["classifier_translated"]
        if "feature" in terms:
            total += w.feature * terms["feature"]
        if "target_entropy" in terms:
            total += w.target_entropy * terms["target_entropy"]
        if "target_consistency" in terms:
            total += w.target_consistency * terms["target_consistency"]
        return total

    def _translated_ramp(self) -> tf.Tensor:
        """0 -> 1 over loss.translated_rampup_steps: D_b learns labels from translations once they are digits."""
        ramp = self.unit_config.loss.translated_rampup_steps
        if ramp <= 0:
            return tf.constant(1.0)
        step = tf.cast(self.g_optimizer.iterations, tf.float32)
        return tf.minimum(step / float(ramp), 1.0)

    def _latent_noise(self, shape: tf.Tensor) -> tf.Tensor:
        """Unit Gaussian noise for the reparameterization z = mean + std * eps.

        The seed comes from the model's SeedGenerator (checkpointed); the replica id is folded in so that
        replicas draw independent noise for their shards of the batch.
        """
        return self.unit_config.model.latent_noise_std * tf.random.stateless_normal(
            shape, seed=replica_seed(self.seed_generator))

    def _sample(self, mean: tf.Tensor) -> tf.Tensor:
        if self.unit_config.model.latent_noise_std == 0:
            return mean
        return mean + tf.cast(self._latent_noise(tf.shape(mean)), mean.dtype)

    def weight_penalty(self, variables: list) -> tf.Tensor | float:
        """The L2 weight-decay term (official code: Adam weight_decay, an L2 added to the loss) for `variables`;
        0 when the config decays decoupled (AdamW) or not at all."""
        opt = self.unit_config.optimizer
        if opt.weight_decay > 0 and opt.weight_decay_mode == "l2":
            return opt.weight_decay * losses.l2_penalty(variables)
        return 0.0

    @staticmethod
    def _per_replica(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
        """The loss a replica differentiates. Per-replica losses are means over the replica's shard and the
        optimizer SUMS gradients over replicas, so dividing by the replica count gives one device's update at
        the global batch. scale_loss: identity for plain optimizers; the LossScaleOptimizer (see make_optimizer)
        multiplies by its scale, unscales the gradients and SKIPS the update when any gradient is non-finite."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return optimizer.scale_loss(loss / tf.cast(replicas, loss.dtype))

    @staticmethod
    def _apply(optimizer: keras.optimizers.Optimizer, tape: tf.GradientTape, loss: tf.Tensor,
               variables: list) -> None:
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def _track(self, values: dict[str, tf.Tensor]) -> None:
        """Add the step's terms to the running means that fit reports (and the logger resets)."""
        if self.unit_config.train.on_nan == "skip-step":
            # The optimizers skipped this step's update if it was non-finite; keep it out of the means too.
            finite = tf.math.is_finite(values["d_loss"]) & tf.math.is_finite(values["g_loss"])
            weight = tf.cast(finite, tf.float32)
            for name, tracker in self.trackers.items():
                tracker.update_state(tf.where(finite, values[name], 0.0), sample_weight=weight)
        else:
            for name, tracker in self.trackers.items():  # a non-finite value shows in the mean: the guard stops
                tracker.update_state(values[name])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["config"] = self.unit_config.to_dict()
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UNIT:
        config = dict(config)
        model = cls(config.pop("config"), **config)
        model.build()  # variables exist before a .keras file's weights are loaded into them
        return model

    # The latent-noise SeedGenerator is no Keras layer, so `.keras` files would not hold its state by default.
    _SEED_KEY = "latent_noise_seed"

    def save_own_variables(self, store: Any) -> None:
        super().save_own_variables(store)
        store[self._SEED_KEY] = self.seed_generator.state.numpy()

    def load_own_variables(self, store: Any) -> None:
        own = {key: store[key] for key in store.keys() if key != self._SEED_KEY}
        super().load_own_variables(own)
        if self._SEED_KEY in store.keys():
            self.seed_generator.state.assign(store[self._SEED_KEY])

    def get_compile_config(self) -> dict[str, Any] | None:
        """Both optimizers, so that a `.keras` file restores a model ready to continue training."""
        if not hasattr(self, "g_optimizer"):
            return None
        return {"d_optimizer": keras.optimizers.serialize(self.d_optimizer),
                "g_optimizer": keras.optimizers.serialize(self.g_optimizer)}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        self.compile(d_optimizer=keras.optimizers.deserialize(config["d_optimizer"]),
                     g_optimizer=keras.optimizers.deserialize(config["g_optimizer"]))


def build_model(config: UNITConfig, strategy: tf.distribute.Strategy | None = None) -> UNIT:
    """Create, build and compile the model and both optimizers inside the strategy's scope."""
    strategy = strategy or tf.distribute.get_strategy()
    # "auto" is resolved quietly here (training resolves it first, with a warning where it pays).
    precision = resolve_precision(config.train.precision, warn=False)
    # Layers take the global dtype policy when they are created (float32 weights in every policy).
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    with strategy.scope():
        model = UNIT(config, name="unit")
        model.build()
        model.compile(
            d_optimizer=make_optimizer(config.optimizer, "d_optimizer", precision,
                                       config.model.fast_paths, config.train.steps, config.optimizer.dis_lr_scale),
            g_optimizer=make_optimizer(config.optimizer, "g_optimizer", precision,
                                       config.model.fast_paths, config.train.steps),
        )
    return model
