"""D1 and D2 as one coupled discriminator: trunk, real/fake head and classifier head, at every scale.

The trunk is every layer of D_domain under its real/fake head; its output at the finest scale is the highest
D feature map (official h3), which the domain-adaptation classifier head and the feature loss read. A pass
takes named groups of images (`real`, `translated`, ...) stacked along the batch axis, so one pass serves
several streams, and its outputs are read back by group name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import keras
import tensorflow as tf

from unit_tf.networks import CoupledNetwork


def _flat(x: tf.Tensor) -> tf.Tensor:
    """Logits [N, h, w, 1] -> [N, h * w]: one real/fake logit per patch."""
    return tf.reshape(x, [tf.shape(x)[0], -1])


def _split(x: tf.Tensor, n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return x[:n], x[n:]


def downsample(x: tf.Tensor) -> tf.Tensor:
    """The next discriminator scale's input: 3x3 average pooling, stride 2 (padding excluded from the mean)."""
    return tf.nn.avg_pool2d(x, 3, 2, "SAME")


class RowGroups:
    """Named groups of images stacked along the batch axis; outputs of a pass over `stacked` are read back by
    group name (adjacent groups together), never by offset."""

    def __init__(self, groups: dict[str, tf.Tensor]) -> None:
        self.names = tuple(groups)
        self.stacked = tf.concat(list(groups.values()), 0)
        self._bounds: dict[str, tuple[tf.Tensor | int, tf.Tensor]] = {}
        start: tf.Tensor | int = 0
        for name, images in groups.items():
            stop = start + tf.shape(images)[0]
            self._bounds[name] = (start, stop)
            start = stop

    def take(self, x: tf.Tensor, *names: str) -> tf.Tensor:
        """The rows of `x` that belong to the groups `names` (adjacent, in stacking order)."""
        first = self.names.index(names[0])
        if self.names[first:first + len(names)] != names:
            raise ValueError(f"groups {names} are not adjacent in the stacking order {self.names}")
        return x[self._bounds[names[0]][0]:self._bounds[names[-1]][1]]


class Discriminated(NamedTuple):
    """One domain's discriminator outputs for a stack of row groups."""

    rows: RowGroups
    scale_logits: list[tf.Tensor]  # real/fake logits [N, patches], one tensor per scale, finest first
    trunk_features: tf.Tensor  # the finest scale's trunk output (the highest D features)

    def logits(self, *names: str) -> list[tf.Tensor]:
        """Real/fake logits of the named groups, one tensor per scale."""
        return [self.rows.take(x, *names) for x in self.scale_logits]

    def features(self, *names: str) -> tf.Tensor:
        """Highest D features of the named groups."""
        return self.rows.take(self.trunk_features, *names)


class CoupledDiscriminator:
    """D1/D2 at every scale (a `CoupledNetwork` per scale, finest first) and the classifier head.

    A plain object over layers the model owns (and tracks): it adds no variables and no checkpoint keys.
    """

    def __init__(self, scales: Sequence[CoupledNetwork], classifier_head: keras.layers.Layer | None) -> None:
        self.scales = list(scales)
        self.classifier_head = classifier_head

    def _layers(self, domain: str, scale: int) -> list[keras.layers.Layer]:
        net = self.scales[scale]
        return net.private_layers(domain) + net.shared

    def trunk_layers(self, domain: str, scale: int = 0) -> list[keras.layers.Layer]:
        """D_domain's layers under its real/fake head."""
        return self._layers(domain, scale)[:-1]

    def head(self, domain: str, scale: int = 0) -> keras.layers.Layer:
        """D_domain's real/fake head (its last layer; one object for both domains when it is shared)."""
        return self._layers(domain, scale)[-1]

    def trunk(self, x: tf.Tensor, domain: str, training: bool = False, scale: int = 0) -> tf.Tensor:
        for layer in self.trunk_layers(domain, scale):
            x = layer(x, training=training)
        return x

    def real_fake(self, x: tf.Tensor, domain: str, training: bool = False) -> tf.Tensor:
        """Real/fake logits [N, patches] of D_domain's finest scale."""
        return _flat(self.head(domain)(self.trunk(x, domain, training), training=training))

    def classify(self, features: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Class logits [N, num_classes] of the classifier head on trunk features (either domain's)."""
        if self.classifier_head is None:
            raise ValueError("this model has no classifier head (model.num_classes = 0)")
        return _flat(self.classifier_head(features, training=training))

    def classifier_layers(self, domain: str) -> list[keras.layers.Layer]:
        """What classifies a domain's images: D_domain's finest trunk and the classifier head."""
        return self.trunk_layers(domain) + [self.classifier_head]

    @property
    def trainable_variables(self) -> list:
        """Every scale's D1/D2 variables, then the classifier head's."""
        head = self.classifier_head.trainable_variables if self.classifier_head is not None else []
        return [v for net in self.scales for v in net.trainable_variables] + head

    def _scale_pair(self, scale: int, x_a: tf.Tensor, x_b: tf.Tensor,
                    training: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """One scale's logits [N, patches] and trunk outputs of D_a(x_a) and D_b(x_b)."""
        net = self.scales[scale]
        if net.shared:
            # Private layers per domain, the shared trunk and head ONCE on the joint batch (as the official
            # code does): larger matmuls, and one dropout mask over both domains' rows.
            n = tf.shape(x_a)[0]
            h = tf.concat([net.run_private(x_a, "a", training), net.run_private(x_b, "b", training)], 0)
            for layer in net.shared[:-1]:
                h = layer(h, training=training)
            logits = _flat(net.shared[-1](h, training=training))
            (logits_a, logits_b), (features_a, features_b) = _split(logits, n), _split(h, n)
            return logits_a, logits_b, features_a, features_b
        features_a, features_b = self.trunk(x_a, "a", training, scale), self.trunk(x_b, "b", training, scale)
        logits_a = _flat(self.head("a", scale)(features_a, training=training))
        logits_b = _flat(self.head("b", scale)(features_b, training=training))
        return logits_a, logits_b, features_a, features_b

    def pass_rows(self, rows_a: dict[str, tf.Tensor], rows_b: dict[str, tf.Tensor], training: bool,
                  finest_only: bool = False) -> tuple[Discriminated, Discriminated]:
        """D_a over the stacked groups `rows_a` and D_b over `rows_b`, every scale (or the finest only)."""
        groups_a, groups_b = RowGroups(rows_a), RowGroups(rows_b)
        x_a, x_b = groups_a.stacked, groups_b.stacked
        logits_a, logits_b, features_a, features_b = self._scale_pair(0, x_a, x_b, training)
        logits_a, logits_b = [logits_a], [logits_b]
        for scale in range(1, 1 if finest_only else len(self.scales)):
            x_a, x_b = downsample(x_a), downsample(x_b)
            coarse_a, coarse_b, _, _ = self._scale_pair(scale, x_a, x_b, training)
            logits_a.append(coarse_a)
            logits_b.append(coarse_b)
        return Discriminated(groups_a, logits_a, features_a), Discriminated(groups_b, logits_b, features_b)
