"""The UNIT model: coupled VAE-GANs with a custom alternating `train_step`.

Notation (paper Sec. 3): E1/E2 = encoder domains a/b, G1/G2 = generator domains a/b, D1/D2 likewise.
Streams for x_a (and symmetrically x_b):
    reconstruction  x_a -> z_a -> G_a -> x_aa
    translation     x_a -> z_a -> G_b -> x_ab          (the only stream the GAN loss sees)
    cycle           x_a -> z_a -> G_b -> x_ab -> E_b -> z_aba -> G_a -> x_aba
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from unit_tf import losses
from unit_tf.config import PRECISIONS, UNITConfig
from unit_tf.distribute import MultiWorkerFit, fit_outputs
from unit_tf.layers import PACKAGE, CoordinateChannels, replica_seed
from unit_tf.networks import build_classifier_head, build_networks
from unit_tf.optimizers import make_optimizer

#: Every loss term reported each step (paper losses): the unweighted terms, then the weighted totals.
METRIC_NAMES = ("d_gan", "g_gan", "kl", "recon_l1", "cycle_kl", "cycle_l1", "d_loss", "g_loss")


def metric_names(config: UNITConfig) -> tuple[str, ...]:
    """The loss terms a model with this config reports: METRIC_NAMES adapted to its distances and DA terms."""
    loss = config.loss
    names = ["d_gan", "g_gan", "kl"] + ([f"recon_{loss.recon_distance}"] if loss.recon_stream else [])
    if _has_cycle(config):
        names += ["cycle_kl", f"cycle_{loss.recon_distance}"]
    names += [name for name in ("classifier", "classifier_translated", "feature", "semantic")
              if getattr(loss, name) > 0]
    if loss.classifier > 0:
        names.append("source_batch_accuracy")
    return (*names, "d_loss", "g_loss")


def _has_cycle(config: UNITConfig) -> bool:
    return config.loss.cycle and (config.loss.cycle_kl > 0 or config.loss.cycle_recon > 0)


def _split(x: tf.Tensor, n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return x[:n], x[n:]


def _rows(logits: list[tf.Tensor], start: tf.Tensor | int, stop: tf.Tensor | None = None) -> list[tf.Tensor]:
    """Rows start:stop of every scale's logits."""
    return [x[start:stop] for x in logits]


def _downsample(x: tf.Tensor) -> tf.Tensor:
    """The next discriminator scale's input: 3x3 average pooling, stride 2 (padding excluded from the mean)."""
    return tf.nn.avg_pool2d(x, 3, 2, "SAME")


@keras.saving.register_keras_serializable(PACKAGE)
class UNIT(MultiWorkerFit, keras.Model):
    """Six networks (E1, E2, G1, G2, D1, D2) as three `CoupledNetwork`s, trained by `fit`.

    `call({"x_a", "x_b"})` translates with the latent means: {"a_to_b", "b_to_a"}.
    """

    def __init__(self, config: UNITConfig | dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit_config = config if isinstance(config, UNITConfig) else UNITConfig.from_dict(config)
        cfg = self.unit_config
        nets = build_networks(cfg.model)
        self.encoder = nets["encoder"]
        self.generator = nets["generator"]
        self.discriminator = nets["discriminator"]
        self.coarse_discriminators = nets["coarse_discriminators"]  # multi-scale D: scales 1, 2, ...
        self.classifier_head = build_classifier_head(cfg.model)
        self.coordinates = CoordinateChannels(name="coordinates") if cfg.model.coord_channels else None
        self.seed_generator = keras.random.SeedGenerator(cfg.train.seed, name="latent_noise")
        self.metric_names = metric_names(cfg)
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
        return tf.reshape(self.discriminator(x, domain=domain, training=training), [tf.shape(x)[0], -1])

    def translate(self, x: tf.Tensor, source: str, target: str, training: bool = False) -> tf.Tensor:
        """Deterministic translation (or reconstruction if source == target) through the latent mean."""
        return self.decode(self.encode(x, source, training), target, training)

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

    def discriminate_pair(self, x_a: tf.Tensor, x_b: tf.Tensor, training: bool,
                          with_features: bool = False) -> tuple[Any, ...]:
        """Real/fake logits of D_a(x_a) and D_b(x_b): lists with one [N, patches] tensor per scale. With
        with_features also the finest scale's trunk outputs under the head (the highest D features: official
        h3), which the classifier and the feature loss use."""
        logits_a, logits_b, feat_a, feat_b = self._discriminate_scale(self.discriminator, x_a, x_b, training)
        logits_a, logits_b = [logits_a], [logits_b]
        for disc in self.coarse_discriminators:
            x_a, x_b = _downsample(x_a), _downsample(x_b)
            coarse_a, coarse_b, _, _ = self._discriminate_scale(disc, x_a, x_b, training)
            logits_a.append(coarse_a)
            logits_b.append(coarse_b)
        return (logits_a, logits_b, feat_a, feat_b) if with_features else (logits_a, logits_b)

    def _discriminate_scale(self, disc: Any, x_a: tf.Tensor, x_b: tf.Tensor,
                            training: bool) -> tuple[tf.Tensor, ...]:
        """One scale's D_a(x_a), D_b(x_b): logits [N, patches] and the trunk outputs under the head."""
        n = tf.shape(x_a)[0]
        flat = lambda x: tf.reshape(x, [tf.shape(x)[0], -1])  # noqa: E731
        if disc.shared:  # private layers per domain, the shared trunk and head once on the joint batch
            h = tf.concat([disc.run_private(x_a, "a", training), disc.run_private(x_b, "b", training)], 0)
            for layer in disc.shared[:-1]:
                h = layer(h, training=training)
            logits = flat(disc.shared[-1](h, training=training))
            (logits_a, logits_b), (feat_a, feat_b) = _split(logits, n), _split(h, n)
        else:
            feat_a, feat_b = (self._trunk(disc, x, d, training) for x, d in ((x_a, "a"), (x_b, "b")))
            logits_a, logits_b = (flat(disc.private_layers(d)[-1](f, training=training))
                                  for d, f in (("a", feat_a), ("b", feat_b)))
        return logits_a, logits_b, feat_a, feat_b

    @staticmethod
    def _trunk(disc: Any, x: tf.Tensor, domain: str, training: bool) -> tf.Tensor:
        for layer in (disc.private_layers(domain) + disc.shared)[:-1]:
            x = layer(x, training=training)
        return x

    def d_features(self, x: tf.Tensor, domain: str, training: bool = False) -> tf.Tensor:
        """Output of D_domain's layers below its real/fake head."""
        return self._trunk(self.discriminator, x, domain, training)

    def classify_features(self, features: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.reshape(self.classifier_head(features, training=training), [tf.shape(features)[0], -1])

    def classify(self, x: tf.Tensor, domain: str, training: bool = False) -> tf.Tensor:
        """Digit logits [N, num_classes] of the classifier head on D_domain's shared trunk."""
        if self.classifier_head is None:
            raise ValueError("this model has no classifier head (model.num_classes = 0)")
        return self.classify_features(self.d_features(x, domain, training), training)

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
    # Building, compiling, training
    # ----------------------------------------------------------------------------------------------
    def build(self, input_shape: Any = None) -> None:
        """Create every variable by tracing both domains through all six networks once."""
        cfg = self.unit_config.model
        size = cfg.image_size
        x_a = tf.zeros([2, size, size, cfg.channels_a])
        x_b = tf.zeros([2, size, size, cfg.channels_b])
        mean_a, mean_b = self.encode_pair(x_a, x_b, False)
        self.decode_both(tf.concat([mean_a, mean_b], 0), False)
        _, _, feat_a, _ = self.discriminate_pair(x_a, x_b, False, with_features=True)  # every scale
        if self.classifier_head is not None:
            self.classify_features(feat_a)
        self.built = True

    @property
    def d_variables(self) -> list:
        head = self.classifier_head.trainable_variables if self.classifier_head is not None else []
        coarse = [v for disc in self.coarse_discriminators for v in disc.trainable_variables]
        return self.discriminator.trainable_variables + coarse + head

    @property
    def g_variables(self) -> list:
        return self.encoder.trainable_variables + self.generator.trainable_variables

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

    def _apply(self, optimizer: keras.optimizers.Optimizer, tape: tf.GradientTape, loss: tf.Tensor,
               variables: list) -> None:
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def weight_penalty(self, variables: list) -> tf.Tensor | float:
        """The L2 weight-decay term (official code: Adam weight_decay, an L2 added to the loss) for `variables`;
        0 when the config decays decoupled (AdamW) or not at all."""
        opt = self.unit_config.optimizer
        if opt.weight_decay > 0 and opt.weight_decay_mode == "l2":
            return opt.weight_decay * losses.l2_penalty(variables)
        return 0.0

    def train_step(self, data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One alternating update: D1, D2 first, then E1, E2, G1, G2 (paper Sec. 3, Algorithm in App.).

        With a classifier head (domain adaptation, official cocogan_trainer_da.py) the D update also
        trains the classifier on labelled source images `data["y_a"]` and pulls the highest D features of
        each translation towards those of the reconstruction from the same latent code.
        """
        w = self.unit_config.loss
        x_a, x_b = data["x_a"], data["x_b"]
        n = tf.shape(x_a)[0]
        # Per-replica losses are means over the replica's shard; the optimizer SUMS gradients over
        # replicas, so dividing by the replica count gives the update of one device at the global batch.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        values: dict[str, tf.Tensor] = {}

        # One forward pass of E and G serves both updates (the D update sees its outputs as constants).
        with tf.GradientTape() as g_tape:
            mean_a, mean_b = self.encode_pair(x_a, x_b, training=True)
            z = self._sample(tf.concat([mean_a, mean_b], 0))
            if w.recon_stream:
                out_a, out_b = self.decode_both(z, training=True)  # out_a = [x_aa; x_ba], out_b = [x_ab; x_bb]
                x_aa, x_ba = _split(out_a, n)  # float32 images under every precision policy
                x_ab, x_bb = _split(out_b, n)
            else:  # ablation: translation (and cycle) streams only
                z_a, z_b = _split(z, n)
                x_ba, x_ab = self.decode_pair(z_b, z_a, training=True)
                x_aa = x_bb = None

        # --- Step 1: D1, D2 on real images vs. translations (and reconstructions if gan_recon_stream).
        fakes_a, fakes_b = [x_ba], [x_ab]
        if w.gan_recon_stream:
            fakes_a.append(x_aa)
            fakes_b.append(x_bb)
        # Rows of the D pass: [real; fakes...] and, for a feature term read from this pass, the reconstructions.
        end = n * (1 + len(fakes_a))
        shared_features = w.feature > 0 and w.feature_from_gan_pass  # (feature > 0 implies the head)
        extra_a, extra_b = ([x_aa], [x_bb]) if shared_features and not w.gan_recon_stream else ([], [])
        with tf.GradientTape() as d_tape:
            logits_a, logits_b, feat_a, feat_b = self.discriminate_pair(
                tf.concat([x_a] + [tf.stop_gradient(f) for f in fakes_a + extra_a], 0),
                tf.concat([x_b] + [tf.stop_gradient(f) for f in fakes_b + extra_b], 0),
                training=True, with_features=True,
            )
            d_gan = (losses.discriminator_gan_loss(_rows(logits_a, 0, n), _rows(logits_a, n, end), w.gan_type)
                     + losses.discriminator_gan_loss(_rows(logits_b, 0, n), _rows(logits_b, n, end), w.gan_type))
            d_gan = self._maybe_inject_nan(d_gan)
            d_loss = w.gan * d_gan + self.weight_penalty(self.d_variables)
            if self.classifier_head is not None:
                d_loss += self._adaptation_losses(data, feat_a, feat_b, x_aa, x_ba, x_ab, x_bb, values)
            # scale_loss: identity for plain optimizers; the LossScaleOptimizer (see make_optimizer) multiplies
            # by its scale, unscales the gradients and SKIPS the update when any gradient is non-finite.
            d_scaled = self.d_optimizer.scale_loss(d_loss / tf.cast(replicas, d_loss.dtype))
        self._apply(self.d_optimizer, d_tape, d_scaled, self.d_variables)

        # --- Step 2: E1, E2, G1, G2 against the UPDATED discriminators, plus VAE and cycle losses.
        with g_tape:
            fake_a, fake_b, _, fake_feat_b = self.discriminate_pair(
                tf.concat(fakes_a, 0), tf.concat(fakes_b, 0), training=True, with_features=True)
            # Each stream's GAN term is a mean over its own images (official: trans + recon).
            g_gan = tf.add_n([losses.generator_gan_loss(_rows(logits, i * n, (i + 1) * n), w.gan_type)
                              for logits in (fake_a, fake_b) for i in range(len(fakes_a))])
            g_gan = self._maybe_inject_nan(g_gan)
            kl = losses.kl_loss(mean_a, w.kl_reduction) + losses.kl_loss(mean_b, w.kl_reduction)
            g_loss = w.gan * g_gan + w.kl * kl + self.weight_penalty(self.g_variables)
            values.update({"g_gan": g_gan, "kl": kl})
            if w.recon_stream:
                recon = (losses.recon_loss(x_a, x_aa, w.recon_distance)
                         + losses.recon_loss(x_b, x_bb, w.recon_distance))
                g_loss += w.recon * recon
                values[f"recon_{w.recon_distance}"] = recon
            if w.semantic > 0:
                # Translations keep their digit: D_b's classifier must read x_ab as the source label.
                values["semantic"] = losses.classifier_loss(
                    data["y_a"], self.classify_features(fake_feat_b[:n], training=True))
                g_loss += w.semantic * values["semantic"]
            if _has_cycle(self.unit_config):
                # Cycle: re-encode the translations with the OTHER domain's encoder and decode back.
                mean_ba, mean_ab = self.encode_pair(x_ba, x_ab, training=True)  # E_a(x_ba), E_b(x_ab)
                x_aba, x_bab = self.decode_pair(self._sample(mean_ab), self._sample(mean_ba), training=True)
                cycle_kl = losses.kl_loss(mean_ab, w.kl_reduction) + losses.kl_loss(mean_ba, w.kl_reduction)
                cycle = (losses.recon_loss(x_a, x_aba, w.recon_distance)
                         + losses.recon_loss(x_b, x_bab, w.recon_distance))
                g_loss += w.cycle_kl * cycle_kl + w.cycle_recon * cycle
                values.update({"cycle_kl": cycle_kl, f"cycle_{w.recon_distance}": cycle})
            g_scaled = self.g_optimizer.scale_loss(g_loss / tf.cast(replicas, g_loss.dtype))
        self._apply(self.g_optimizer, g_tape, g_scaled, self.g_variables)

        values.update({"d_gan": d_gan, "d_loss": d_loss, "g_loss": g_loss})
        if self.unit_config.train.on_nan == "skip-step":
            # The optimizers skipped this step's update if it was non-finite; keep it out of the means too.
            finite = tf.math.is_finite(d_loss) & tf.math.is_finite(g_loss)
            weight = tf.cast(finite, tf.float32)
            for name, tracker in self.trackers.items():
                tracker.update_state(tf.where(finite, values[name], 0.0), sample_weight=weight)
        else:
            for name, tracker in self.trackers.items():  # a non-finite value shows in the mean: the guard stops
                tracker.update_state(values[name])
        return fit_outputs({name: tracker.result() for name, tracker in self.trackers.items()})

    def _translated_ramp(self) -> tf.Tensor:
        """0 -> 1 over loss.translated_rampup_steps: D_b learns labels from translations once they are digits."""
        ramp = self.unit_config.loss.translated_rampup_steps
        if ramp <= 0:
            return tf.constant(1.0)
        step = tf.cast(self.g_optimizer.iterations, tf.float32)
        return tf.minimum(step / float(ramp), 1.0)

    def _adaptation_losses(self, data: dict[str, tf.Tensor], feat_a: tf.Tensor, feat_b: tf.Tensor,
                           x_aa: tf.Tensor, x_ba: tf.Tensor, x_ab: tf.Tensor, x_bb: tf.Tensor,
                           values: dict[str, tf.Tensor]) -> tf.Tensor:
        """Weighted DA terms of the D update. feat_a/feat_b: D_a/D_b trunk outputs of [real; fakes...].

        Only SOURCE labels (domain A) are read; target images enter through the GAN and feature terms.
        """
        w = self.unit_config.loss
        n = tf.shape(x_aa)[0]
        total = tf.constant(0.0)
        if w.classifier > 0:
            logits = self.classify_features(feat_a[:n], training=True)  # D_a trunk (with dropout) on x_a
            values["classifier"] = losses.classifier_loss(data["y_a"], logits)
            hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(data["y_a"], tf.int32))
            values["source_batch_accuracy"] = tf.reduce_mean(tf.cast(hits, tf.float32))
            total += w.classifier * values["classifier"]
        if w.classifier_translated > 0:
            # Source images translated to B keep their labels: train the classifier through D_b on them.
            logits = self.classify_features(feat_b[n:2 * n], training=True)
            values["classifier_translated"] = losses.classifier_loss(data["y_a"], logits)
            total += w.classifier_translated * self._translated_ramp() * values["classifier_translated"]
        if w.feature > 0:
            # D_b(x_ab) ~ D_a(x_aa) and D_a(x_ba) ~ D_b(x_bb) — same latent code, other domain — on the highest
            # D features: from the D update's pass (rows [x; x_ba or x_ab; x_aa or x_bb], with dropout), or
            # without dropout from a second, deterministic pass (the official code).
            if w.feature_from_gan_pass:
                f_ba, f_aa = feat_a[n:2 * n], feat_a[2 * n:3 * n]
                f_ab, f_bb = feat_b[n:2 * n], feat_b[2 * n:3 * n]
            else:
                # Features only: the finest scale's trunk (coarser scales would add logits nobody reads).
                _, _, f_a, f_b = self._discriminate_scale(
                    self.discriminator, tf.stop_gradient(tf.concat([x_aa, x_ba], 0)),
                    tf.stop_gradient(tf.concat([x_bb, x_ab], 0)), training=False,
                )
                (f_aa, f_ba), (f_bb, f_ab) = _split(f_a, n), _split(f_b, n)
            values["feature"] = (losses.feature_loss(f_ab, f_aa, w.feature_distance)
                                 + losses.feature_loss(f_ba, f_bb, w.feature_distance))
            total += w.feature * values["feature"]
        return total

    def _maybe_inject_nan(self, loss: tf.Tensor) -> tf.Tensor:
        """Testing hook (`train.inject_nan_step`): the GAN losses become NaN at that global step."""
        step = self.unit_config.train.inject_nan_step
        if not step:
            return loss
        hit = tf.equal(self.g_optimizer.iterations + 1, step)
        # Once: a skipped step halves the loss scale of the LossScaleOptimizer, and the step is retried.
        scale = getattr(self.g_optimizer, "dynamic_scale", None)
        if scale is not None:
            hit = hit & tf.equal(scale, 1.0)
        return loss * tf.where(hit, float("nan"), 1.0)

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
    # Layers take the global dtype policy when they are created (float32 weights in every policy).
    keras.mixed_precision.set_global_policy(PRECISIONS[config.train.precision])
    with strategy.scope():
        model = UNIT(config, name="unit")
        model.build()
        model.compile(
            d_optimizer=make_optimizer(config.optimizer, "d_optimizer", config.train.precision,
                                       config.model.fast_paths),
            g_optimizer=make_optimizer(config.optimizer, "g_optimizer", config.train.precision,
                                       config.model.fast_paths),
        )
    return model
