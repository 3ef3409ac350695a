"""Sequence encoders built from stock Keras layers, as config components.

Each is a function returning a Keras layer that maps `(batch, T, d_in)` plus the padding
mask to `(batch, T, d_out)` and passes the mask on, so the saved model holds only stock
Keras layers (`Bidirectional`, `LSTM`, `Identity`) and loads without attnlab's code.
"""

import keras

from attnlab import checks


def bilstm(units, dropout=0.0, name=None):
    """Bidirectional LSTM returning sequences: `(batch, T, d_in) -> (batch, T, 2 * units)`.

    Args:
        units: Positive integer, LSTM units per direction.
        dropout: Float in `[0, 1)`, input dropout of the LSTM (training only).
        name: Layer name.
    """
    checks.check_bilstm(units=units, dropout=dropout)
    lstm = keras.layers.LSTM(int(units), return_sequences=True, dropout=float(dropout))
    return keras.layers.Bidirectional(lstm, name=name)


def identity(name=None):
    """No encoder: the embeddings pass through unchanged (mask included)."""
    return keras.layers.Identity(name=name)
