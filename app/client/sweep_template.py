"""The starter sweep `nnforge template --sweep` prints: YAML with its comments, since they are the guide.

A Python string rather than a .yaml file beside it, so that it ships with the package like the code does.
"""

SWEEP_TEMPLATE = """\
# nnforge template --sweep > sweep.yaml ; nnforge sweep submit sweep.yaml
name: digits-search
base:                        # a job spec; every trial starts from it
  dataset: {name: digits}
  model: {arch: mlp}
  training: {epochs: 20, batch_size: 64}
space:                       # dotted paths into the spec -> a distribution
  optimizer.name: {choices: [sgd, momentum, rmsprop, adam]}
  optimizer.lr: {low: 1.0e-4, high: 0.3, log: true}
  model.hidden_sizes: {choices: [[64], [128, 64], [256, 128], [256, 128, 64]]}
  model.activation: {choices: [relu, tanh, sigmoid]}
  model.dropout: {low: 0.0, high: 0.5}
objective: {metric: val_accuracy, direction: maximize}
trials: 24
parallel: 2                  # at most this many trial jobs queued or running at once
sampler: tpe                 # tpe | random | grid (grid: choices only)
seed: 0
pruner: asha                 # none | median | asha  (reported every epoch)
"""
