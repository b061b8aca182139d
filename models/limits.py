"""Every limit a job spec or a dataset must respect, in one place (the README's limits table lists them).

Sized for a 2-core CPU worker: a job at the limits still trains at a few hundred samples per second.
"""

from typing import Final

MAX_EPOCHS: Final = 1_000
MAX_BATCH_SIZE: Final = 4_096
MAX_LAYERS: Final = 8  # hidden layers of an MLP body, conv blocks of a CNN, FC layers after them
MAX_WIDTH: Final = 4_096  # units in one fully connected layer
MAX_CHANNELS: Final = 512
MAX_KERNEL_SIZE: Final = 11
MAX_RNN_HIDDEN: Final = 1_024
MAX_RNN_LAYERS: Final = 4
MAX_LATENT_DIM: Final = 512
MAX_D_STEPS: Final = 10  # discriminator updates per generator update
MAX_PARAMETERS: Final = 20_000_000  # counted from the spec before anything is allocated
MAX_LEARNING_RATE: Final = 10.0
MAX_SEED: Final = 2**32 - 1
MAX_KEPT_CHECKPOINTS: Final = 100  # training.checkpoint.keep_last / keep_best
MAX_NONFINITE_STEPS: Final = 10_000  # training.max_nonfinite_steps: how long a run may stay non-finite

MAX_SAMPLES: Final = 1_000_000
MAX_DATASET_ELEMENTS: Final = 32_000_000  # x plus y; 128 MB as float32
MAX_SAMPLE_RANK: Final = 3  # per-sample rank: features (1), H×W or T×F (2), C×H×W (3)
MAX_CLASSES: Final = 1_000
MAX_INTEGER_LABEL: Final = 2**53 - 1  # larger integer labels JSON clients (JavaScript) cannot read exactly
MAX_UPLOAD_BYTES: Final = 64 * 1024 * 1024
MAX_CSV_COLUMNS: Final = 10_000
