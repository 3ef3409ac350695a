"""Text standardizers a model can name by ``model.standardize`` besides Keras' own.

Each is a Keras-registered function of a string tensor, so a saved ``.keras`` file refers to it
by name and loads with ``safe_mode=True`` once ``attnlab.layers`` is imported.
"""

import keras
import tensorflow as tf

# Kim (2014)'s clean_str (github.com/yoonkim/CNN_sentence, process_data.py), in order: keep
# letters, digits and ( ) , ! ? ' `; split the clitics 's 've n't 're 'd 'll off their word;
# put spaces around , ! ( ) ?; squeeze runs of spaces. (His replacements " \( " write a
# backslash too, which is dropped here.)
_KIM_RULES = (
    (r"[^A-Za-z0-9(),!?'`]", " "),
    (r"'s", " 's"),
    (r"'ve", " 've"),
    (r"n't", " n't"),
    (r"'re", " 're"),
    (r"'d", " 'd"),
    (r"'ll", " 'll"),
    (r",", " , "),
    (r"!", " ! "),
    (r"\(", " ( "),
    (r"\)", " ) "),
    (r"\?", " ? "),
    (r"\s{2,}", " "),
)


@keras.saving.register_keras_serializable(package="attnlab")
def kim_clean_str(text):
    """Kim (2014)'s ``clean_str``, then strip and lower-case (his MR path; on TREC he kept the
    case, which attnlab's ``data.lowercase=true`` removes anyway)."""
    for pattern, replacement in _KIM_RULES:
        text = tf.strings.regex_replace(text, pattern, replacement)
    return tf.strings.lower(tf.strings.strip(text))


# ``model.standardize`` value -> the function (Keras' own values are passed as strings).
STANDARDIZERS = {"kim_clean_str": kim_clean_str}
