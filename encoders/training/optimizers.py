"""Adam that touches only the embedding rows a batch used.

Keras's Adam applies a sparse (IndexedSlices) gradient by first decaying the whole first and
second moments (`m.assign_add(-m * (1 - beta_1))`) and then updating the whole variable: with a
table of 1.5 million ids that is five passes over every row on every step, whatever the batch,
and it made id training far slower than Adagrad at that size. Here a sparse gradient
updates the moments and the variable of its rows only (as TensorFlow Addons' LazyAdam did): rows
not in the batch keep their moments until they next appear. Dense variables (projections, text
and audio towers) get Keras's own Adam update.
"""

from __future__ import annotations

from typing import Any

from jointspace.encoders.base import tf


class LazyAdam(tf.keras.optimizers.Adam):
    def update_step(self, gradient: Any, variable: tf.Variable) -> Any:
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        # Keras deduplicates sparse gradients before this point (one slice per row).
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
        alpha = tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        epsilon = self.epsilon * tf.sqrt(1 - beta_2_power) if getattr(self, "adaptive_epsilon", False) \
            else self.epsilon
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows, values = gradient.indices, gradient.values
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        return variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))
